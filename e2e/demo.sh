#!/usr/bin/env bash
# The local demo, on a real one-node cluster (e2e/setup/start-cluster.sh:
# etcd, kube-apiserver, controller-manager, scheduler, a kubelet on
# containerd, and a registry the node pulls from): an artifact pushed with
# oras and signed with cosign (a key pair made here, no transparency log:
# the demo is offline), `ocisync verify` and `ocisync pull` on the command
# line, then the operator image pushed and `helm install`ed with Helm's own
# engine, a verified Artifact applied with kubectl, its evidence and
# ConfigMap, a pod printing the file, a signed push of a new version, and
# the pod printing that. Run from a fresh clone:
#
#   e2e/demo.sh          # stops everything it started at the end
#   e2e/demo.sh --keep   # leaves the cluster running, and says how to reach it
#
# The first run builds Kubernetes 1.20 from Debian's source package (~8 min)
# and the release binary. Everything it starts is stopped when it ends, and
# the machine is left as found (stop-cluster.sh). Env: CARGO_TARGET_DIR,
# OCISYNC_TOOLS, CONTROL_PLANE_PREFIX (see e2e/test.sh); OCISYNC_BIN runs
# that binary (in the CLI steps and in the image) instead of a release
# build (e2e/test.sh uses its debug build).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ocisync-target}
export OCISYNC_TOOLS=${OCISYNC_TOOLS:-/var/tmp/ocisync/tools}
[[ -f $HOME/.cargo/env ]] && . "$HOME/.cargo/env"
BIN=$OCISYNC_TOOLS/bin
say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }

say "installing the real tools and building ocisync (first run only takes a while)"
"$ROOT/e2e/setup/install-tools.sh" >/dev/null
"$ROOT/e2e/setup/install-control-plane.sh" >/dev/null
"$ROOT/e2e/setup/install-node.sh"
"$ROOT/e2e/setup/install-validators.sh"   # Helm's engine
if [[ -z ${OCISYNC_BIN:-} ]]; then
  (cd "$ROOT" && cargo build --release -q -p ocisync)
  export OCISYNC_BIN=$CARGO_TARGET_DIR/release/ocisync
fi
export PATH=$BIN:$PATH
OCISYNC=$OCISYNC_BIN
PY=${OCISYNC_VALIDATORS:-/var/tmp/ocisync/validators}/bin/python
helm() { "$PY" "$ROOT/e2e/node/helm.py" "$@"; }

WORK=$(mktemp -d /tmp/ocisync-demo.XXXXXX)
KEEP=false
[[ ${1:-} == --keep ]] && KEEP=true
stop_all() { "$ROOT/e2e/setup/stop-cluster.sh" "$WORK/cluster" 2>/dev/null || true; rm -rf "$WORK"; }
$KEEP || trap stop_all EXIT

say "a one-node cluster: Kubernetes 1.20 (kubelet on containerd 1.6 and runc) and a registry, on a bridge of this machine"
KUBECONFIG=$("$ROOT/e2e/setup/start-cluster.sh" "$WORK/cluster")
export KUBECONFIG
REG=$(cat "$WORK/cluster/registry")
kubectl get nodes -o wide
REF=$REG/platform/app-config
say "registry (distribution 2.8) on $REG: the node pulls images from it, the operator artifacts"

mkdir -p "$WORK/src/conf.d"
cat > "$WORK/src/app.yaml" <<'YAML'
replicas: 3
image: example.com/app:1.4.2
YAML
echo 'log_level = "info"' > "$WORK/src/conf.d/logging.toml"
echo 'timeout_ms = 2500' > "$WORK/src/conf.d/http.toml"
echo '# Notes that should not reach the cluster' > "$WORK/src/README.md"
say "oras push $REF:v1"
(cd "$WORK/src" && "$BIN/oras" push --plain-http "$REF:v1" app.yaml:application/yaml conf.d/ README.md:text/markdown)

say "ocisync resolve $REF:v1   (one HEAD request)"
DIGEST=$("$OCISYNC" resolve --insecure "oci://$REF:v1")
echo "$DIGEST"

say "cosign generate-key-pair; cosign sign --key cosign.key $REF@$DIGEST"
(cd "$WORK" && COSIGN_PASSWORD=demo "$BIN/cosign" generate-key-pair >/dev/null 2>&1)
(cd "$WORK" && COSIGN_PASSWORD=demo "$BIN/cosign" sign --key cosign.key --use-signing-config=false \
  --tlog-upload=false --allow-http-registry -y "$REF@$DIGEST" 2>/dev/null)

say "ocisync verify oci://$REF:v1 --key cosign.pub   (reads the signatures only)"
"$OCISYNC" verify --insecure "oci://$REF:v1" --key "$WORK/cosign.pub"

say "ocisync pull oci://$REF:v1 --verify-key cosign.pub --select '*.yaml' --select 'conf.d/**' --out $WORK/out"
"$OCISYNC" pull --insecure "oci://$REF:v1" --verify-key "$WORK/cosign.pub" --select '*.yaml' --select 'conf.d/**' \
  --out "$WORK/out" --no-progress

say "the files"
(cd "$WORK/out" && for f in $(find . -type f | sort); do echo "--- ${f#./}"; cat "$f"; done)

say "the operator's image (e2e/setup/build-image.sh) pushed to $REG/ocisync:demo"
"$ROOT/e2e/setup/build-image.sh" "$REG/ocisync:demo"

say "helm install ocisync charts/ocisync -n ocisync-system --create-namespace --set image.repository=$REG/ocisync,image.tag=demo --wait"
helm install ocisync "$ROOT/charts/ocisync" -n ocisync-system --create-namespace \
  --set "image.repository=$REG/ocisync,image.tag=demo" --wait
kubectl get pods -n ocisync-system -o wide

say "kubectl create secret generic cosign-keys --from-file=cosign.pub"
kubectl create secret generic cosign-keys --namespace default --from-file=cosign.pub="$WORK/cosign.pub"

say "kubectl apply -f artifact.yaml"
cat > "$WORK/artifact.yaml" <<YAML
apiVersion: ocisync.dev/v1alpha1
kind: Artifact
metadata:
  name: app-config
  namespace: default
spec:
  url: oci://$REF
  ref:
    tag: v1
  insecure: true
  interval: 10s
  select:
    include: ["*.yaml", "conf.d/**"]
  verify:
    keys:
      secretRef:
        name: cosign-keys
  target:
    configMap:
      name: app-config
YAML
cat "$WORK/artifact.yaml"
kubectl apply -f "$WORK/artifact.yaml"
kubectl wait --for=condition=Ready artifact/app-config --timeout=60s || {
  kubectl logs -n ocisync-system deployment/ocisync --tail=20; exit 1; }

say "kubectl get artifact"
kubectl get artifact -o wide
say "the evidence: kubectl get artifact app-config -o jsonpath='{.status.verification}'"
kubectl get artifact app-config -o jsonpath='{.status.verification}' | python3 -m json.tool
say "the ConfigMap"
kubectl get configmap app-config -o yaml

say "a pod that mounts the ConfigMap and prints app.yaml every 2 s"
mkdir -p "$WORK/busybox/bin" && cp -L ${OCISYNC_NODE:-/var/tmp/ocisync/node}/images/busybox "$WORK/busybox/bin/"
for a in sh cat sleep date tr; do ln -sf busybox "$WORK/busybox/bin/$a"; done
tar -C "$WORK/busybox" --owner=0 --group=0 -cf "$WORK/busybox.tar" bin
"$BIN/crane" append --insecure --oci-empty-base -f "$WORK/busybox.tar" -t "$REG/busybox:demo" >/dev/null 2>&1
cat > "$WORK/reader.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: reader, namespace: default}
spec:
  containers:
  - name: reader
    image: $REG/busybox:demo
    command: [/bin/sh, -c, 'while :; do echo "\$(date +%T) \$(cat /config/app.yaml | tr "\\n" " ")"; sleep 2; done']
    volumeMounts: [{name: config, mountPath: /config}]
  volumes: [{name: config, configMap: {name: app-config}}]
YAML
kubectl apply -f "$WORK/reader.yaml"
kubectl wait --for=condition=Ready pod/reader --timeout=120s
sleep 2
kubectl logs reader --tail=1

say "a new version: oras push $REF:v1 again, cosign sign it"
sed -i 's/replicas: 3/replicas: 5/' "$WORK/src/app.yaml"
(cd "$WORK/src" && "$BIN/oras" push --plain-http "$REF:v1" app.yaml:application/yaml conf.d/ README.md:text/markdown >/dev/null)
DIGEST2=$("$OCISYNC" resolve --insecure "oci://$REF:v1")
(cd "$WORK" && COSIGN_PASSWORD=demo "$BIN/cosign" sign --key cosign.key --use-signing-config=false \
  --tlog-upload=false --allow-http-registry -y "$REF@$DIGEST2" 2>/dev/null)
echo "$DIGEST2"

say "the pod prints the new file (the operator polls every 10 s; the kubelet refreshes ConfigMap volumes within about a minute)"
for _ in $(seq 120); do
  kubectl logs reader --tail=1 | grep -q 'replicas: 5' && break
  sleep 2
done
kubectl logs reader --tail=1 | grep 'replicas: 5' || { echo "the pod did not see the new version" >&2; exit 1; }
kubectl get artifact app-config -o wide

if $KEEP; then
  say "left running (--keep)"
  echo "export KUBECONFIG=$KUBECONFIG     # admin"
  echo "registry: $REG; stop everything: e2e/setup/stop-cluster.sh $WORK/cluster"
fi
