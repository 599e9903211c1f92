#!/usr/bin/env bash
# The local demo: a real registry on loopback, an artifact pushed with oras
# and signed with cosign (a key pair made here, no transparency log: the
# demo is offline), `ocisync verify` and `ocisync pull` on the command line,
# then a real control plane (etcd + kube-apiserver) with the operator running
# under its RBAC, a verified Artifact applied with kubectl, its evidence,
# and the ConfigMap it produces. Run from a fresh clone:
#
#   e2e/demo.sh          # stops everything it started at the end
#   e2e/demo.sh --keep   # leaves the registry, control plane and operator running, and says how to reach them
#
# The first run builds kube-apiserver from Debian's source package (~12 min).
# Everything it starts is stopped when it ends. Env: CARGO_TARGET_DIR,
# OCISYNC_TOOLS, CONTROL_PLANE_PREFIX (see e2e/test.sh); OCISYNC_BIN runs
# that binary instead of building a release one (e2e/test.sh uses its debug build).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ocisync-target}
export OCISYNC_TOOLS=${OCISYNC_TOOLS:-/var/tmp/ocisync/tools}
[[ -f $HOME/.cargo/env ]] && . "$HOME/.cargo/env"
BIN=$OCISYNC_TOOLS/bin
say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }

say "installing the real tools and building ocisync (first run only takes a while)"
"$ROOT/e2e/setup/install-tools.sh" >/dev/null
"$ROOT/e2e/setup/install-control-plane.sh"
"$ROOT/e2e/setup/install-validators.sh"   # Helm's engine, to render the chart
if [[ -z ${OCISYNC_BIN:-} ]]; then
  (cd "$ROOT" && cargo build --release -q -p ocisync)
fi
export PATH=$BIN:$PATH
OCISYNC=${OCISYNC_BIN:-$CARGO_TARGET_DIR/release/ocisync}
PY=${OCISYNC_VALIDATORS:-/var/tmp/ocisync/validators}/bin/python

WORK=$(mktemp -d /tmp/ocisync-demo.XXXXXX)
. "$ROOT/e2e/setup/registry.sh"
start_registry "$WORK/registry"
OP_PID=
KEEP=false
[[ ${1:-} == --keep ]] && KEEP=true
$KEEP || trap stop_all EXIT
REF=$REG/platform/app-config
say "registry (distribution 2.8) on $REG"

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

say "a control plane: etcd + kube-apiserver 1.20 on loopback"
# (not `export KUBECONFIG=$(…)`: export would hide the script's failure).
# Its ports are picked free and then bound, which another process can race:
# a failed start says why and is tried once more, on new ports.
start_cp() { "$ROOT/e2e/setup/start-control-plane.sh" "$WORK/cp" 2>"$WORK/control-plane.err"; }
KUBECONFIG=$(start_cp) || {
  echo "the control plane did not start; once more:" >&2
  cat "$WORK/control-plane.err" >&2
  KUBECONFIG=$(start_cp) || { cat "$WORK/control-plane.err" >&2; exit 1; }
}
export KUBECONFIG
"$ROOT/e2e/setup/operator-access.sh" "$WORK/operator.kubeconfig"

say "ocisync operator with the chart's arguments (helm template charts/ocisync), under the chart's RBAC (not admin)"
ARGS=()
while read -r a; do
  case $a in
    --work-dir=*) ARGS+=("--work-dir=$WORK/work") ;;        # the pod's emptyDir
    --metrics-addr=*) ARGS+=("--metrics-addr=127.0.0.1:0") ;; # any free port here
    *) ARGS+=("$a") ;;
  esac
done < <("$PY" "$ROOT/e2e/check-chart.py" render-args ocisync-system)
echo "ocisync ${ARGS[*]}"
KUBECONFIG="$WORK/operator.kubeconfig" POD_NAME=ocisync-demo POD_NAMESPACE=ocisync-system \
  "$OCISYNC" "${ARGS[@]}" 2>"$WORK/operator.log" &
OP_PID=$!

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
  interval: 1m
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
kubectl wait --for=condition=Ready artifact/app-config --timeout=60s || { tail -20 "$WORK/operator.log"; exit 1; }

say "kubectl get artifact"
kubectl get artifact -o wide
say "the evidence: kubectl get artifact app-config -o jsonpath='{.status.verification}'"
kubectl get artifact app-config -o jsonpath='{.status.verification}' | python3 -m json.tool
say "the ConfigMap"
kubectl get configmap app-config -o yaml

if $KEEP; then
  say "left running (--keep)"
  echo "export KUBECONFIG=$KUBECONFIG     # admin; the operator's log: $WORK/operator.log"
  echo "registry: $REG; stop everything: kill $OP_PID $REG_PID; e2e/setup/stop-control-plane.sh $WORK/cp"
fi
