#!/usr/bin/env bash
# Start a one-node Kubernetes 1.20 cluster on this machine: the control plane
# of start-control-plane.sh plus kube-controller-manager (garbage collector,
# service-account tokens, Deployments), kube-scheduler, containerd 1.6 + runc
# and a kubelet, with a distribution registry the node pulls its images from
# over plain HTTP (the pause image included: nothing is pre-loaded).
#
# Usage: start-cluster.sh DIR      prints DIR/kubeconfig once the node is Ready
#        stop-cluster.sh DIR       stops all of it and puts the machine back
#
# Network: everything lives on one bridge, $BRIDGE, with no uplink: the host
# holds 10.217.0.1 on it, pods get 10.217.1.x from the CNI bridge plugin
# (isGateway off, no routes, no masquerade: a pod reaches only that subnet,
# and this script never turns on forwarding). The API server, the kubelet and
# the registry listen on 10.217.0.1, which is also the `kubernetes` Service's
# address (the first of the Service range 10.217.0.0/24, on port 443): pods
# find the API server there with no kube-proxy.
#
#   DIR/kubeconfig   admin kubeconfig (a link into DIR/cp)
#   DIR/registry     host:port of the node's registry (HTTP)
#   DIR/logs/        registry, controller-manager, scheduler, containerd, kubelet
#   DIR/pids         "name pid starttime" of every process started here
#   DIR/restore      the sysctls the kubelet changes, as found
#
# Env:
#   CONTROL_PLANE_PREFIX  kubelet & co. (default /var/tmp/ocisync/control-plane)
#   OCISYNC_NODE          containerd, runc, CNI, pause (default /var/tmp/ocisync/node)
#   OCISYNC_TOOLS         docker-registry, crane (default /var/tmp/ocisync/tools)
#   KUBELET_SYNC_FREQUENCY  the kubelet's syncFrequency (default 1m, its own)
#   READY_TIMEOUT         seconds for the node to be Ready (default 180)
set -euo pipefail
[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
CP_PREFIX=${CONTROL_PLANE_PREFIX:-/var/tmp/ocisync/control-plane}
NODE_PREFIX=${OCISYNC_NODE:-/var/tmp/ocisync/node}
TOOLS=${OCISYNC_TOOLS:-/var/tmp/ocisync/tools}
READY_TIMEOUT=${READY_TIMEOUT:-180}
BRIDGE=ocisync0
HOST_IP=10.217.0.1
NODE=ocisync-node
t0=$(date +%s)
log() { echo "[start-cluster] $*" >&2; }

for b in "$CP_PREFIX"/bin/{kubelet,kube-scheduler,kube-controller-manager} \
         "$NODE_PREFIX"/bin/{containerd,runc} "$NODE_PREFIX"/images/{pause,busybox} "$TOOLS"/bin/{docker-registry,crane,kubectl}; do
  [[ -x $b ]] || { log "missing $b (run install-control-plane.sh, install-node.sh, install-tools.sh)"; exit 1; }
done
[[ $(id -u) == 0 ]] || { log "must run as root (a kubelet and containerd)"; exit 1; }

alive() { [[ -r /proc/$1/stat && $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }
if [[ -s $DIR/pids ]]; then
  running=1
  while read -r _ pid _; do alive "$pid" || running=0; done <"$DIR/pids"
  if [[ $running == 1 ]]; then log "already running"; echo "$DIR/kubeconfig"; exit 0; fi
  log "stale $DIR/pids: stopping leftovers"
  "$HERE/stop-cluster.sh" "$DIR" >&2 || true
fi
if ip link show "$BRIDGE" >/dev/null 2>&1; then
  log "bridge $BRIDGE exists: another cluster runs (stop it with stop-cluster.sh)"; exit 1
fi
rm -rf "$DIR/containerd" "$DIR/kubelet" "$DIR/cni" "$DIR/registry-data"
mkdir -p "$DIR/logs" "$DIR/pki"
: >"$DIR/pids"

# What the kubelet changes (it sets these for its OOM and panic policy), and
# the log directories it creates, as found, for stop-cluster.sh.
{
  for s in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
           kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
    echo "sysctl $s $(sysctl -n "$s")"
  done
  for d in /var/log/pods /var/log/containers; do [[ -e $d ]] || echo "rmdir $d"; done
} >"$DIR/restore"

start_daemon() { # name cmd... (output to DIR/logs/name.log)
  local name=$1; shift
  rm -f "$DIR/.$name.pid"
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$DIR/.$name.pid" "$@" >"$DIR/logs/$name.log" 2>&1 </dev/null &
  local pid
  for _ in $(seq 50); do [[ -s $DIR/.$name.pid ]] && break; sleep 0.1; done
  pid=$(cat "$DIR/.$name.pid"); rm -f "$DIR/.$name.pid"
  echo "$name $pid $(awk '{print $22}' "/proc/$pid/stat")" >>"$DIR/pids"
}
pid_of() { awk -v n="$1" '$1 == n {print $2}' "$DIR/pids"; }
fail() {
  log "$1"; [[ -n ${2:-} ]] && { log "--- last lines of $2:"; tail -n 30 "$2" >&2 || true; }
  "$HERE/stop-cluster.sh" "$DIR" >&2 || true
  exit 1
}
wait_for() { # what daemon-name command...: until the command succeeds
  local what=$1 name=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    alive "$(pid_of "$name")" || fail "$name exited" "$DIR/logs/$name.log"
    (( $(date +%s) - t0 < READY_TIMEOUT )) || fail "$what not ready in ${READY_TIMEOUT}s" "$DIR/logs/$name.log"
    sleep 0.3
  done
}

# --- the bridge: the host's one address on it, no uplink ---------------------
ip link add "$BRIDGE" type bridge
echo "bridge $BRIDGE" >>"$DIR/restore"
ip addr add "$HOST_IP/16" dev "$BRIDGE"
ip link set "$BRIDGE" up

# --- the registry the node pulls from ---------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("10.217.0.1",0)); print(s.getsockname()[1])')
REG=$HOST_IP:$port
cat >"$DIR/registry.yml" <<YAML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $DIR/registry-data}, delete: {enabled: true}}
http: {addr: $REG}
YAML
start_daemon registry "$TOOLS/bin/docker-registry" serve "$DIR/registry.yml"
wait_for registry registry curl -sf "http://$REG/v2/"
echo "$REG" >"$DIR/registry"

# The pod sandbox image: one static binary (e2e/node/pause.c).
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root"; cp "$NODE_PREFIX/images/pause" "$work/root/pause"
tar -C "$work/root" --owner=0 --group=0 -cf "$work/pause.tar" pause
"$TOOLS/bin/crane" append --insecure --oci-empty-base -f "$work/pause.tar" -t "$REG/pause:3.5" >/dev/null 2>&1 ||
  fail "could not push the pause image" "$DIR/logs/registry.log"
"$TOOLS/bin/crane" mutate --insecure "$REG/pause:3.5" -t "$REG/pause:3.5" --set-platform linux/amd64 \
  --entrypoint /pause --user 65535:65535 >/dev/null 2>&1

# --- the control plane: API server on the bridge address, Service range with it
APISERVER_ADDRESS=$HOST_IP APISERVER_PORT=443 SERVICE_CIDR=10.217.0.0/24 DISABLE_ADMISSION= \
AUTHZ_MODE=Node,RBAC READY_TIMEOUT=$READY_TIMEOUT \
APISERVER_EXTRA_ARGS="--kubelet-client-certificate=$DIR/cp/pki/admin.crt --kubelet-client-key=$DIR/cp/pki/admin.key --kubelet-preferred-address-types=InternalIP --enable-admission-plugins=NodeRestriction" \
  "$HERE/start-control-plane.sh" "$DIR/cp" >/dev/null || fail "control plane did not start"
ln -sfn cp/kubeconfig "$DIR/kubeconfig"
KC=$DIR/cp/kubeconfig
CA=$DIR/cp/pki

# The kubelet's identity: system:node:NAME in system:nodes (the Node authorizer).
if [[ ! -f $DIR/pki/kubelet.crt ]]; then
  openssl req -new -newkey rsa:2048 -nodes -keyout "$DIR/pki/kubelet.key" \
    -subj "/O=system:nodes/CN=system:node:$NODE" 2>/dev/null |
    openssl x509 -req -CA "$CA/ca.crt" -CAkey "$CA/ca.key" -CAcreateserial -days 3650 -sha256 \
      -out "$DIR/pki/kubelet.crt" -extfile <(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n') 2>/dev/null
fi
b64() { base64 -w0 <"$1"; }
cat >"$DIR/pki/kubelet.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://$HOST_IP:443", certificate-authority-data: $(b64 "$CA/ca.crt")}}]
users: [{name: u, user: {client-certificate-data: $(b64 "$DIR/pki/kubelet.crt"), client-key-data: $(b64 "$DIR/pki/kubelet.key")}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
EOF

# --- controllers and scheduler ----------------------------------------------
# Garbage collector, service-account token controller (pods get a token and
# the cluster CA), Deployments, ReplicaSets, PersistentVolume binding.
start_daemon kube-controller-manager "$CP_PREFIX/bin/kube-controller-manager" \
  --kubeconfig="$KC" --leader-elect=false --port=0 --secure-port=0 \
  --service-account-private-key-file="$CA/sa.key" --root-ca-file="$CA/ca.crt" \
  --use-service-account-credentials=true --controllers='*' \
  --node-monitor-grace-period=20s --pod-eviction-timeout=30s
start_daemon kube-scheduler "$CP_PREFIX/bin/kube-scheduler" \
  --kubeconfig="$KC" --leader-elect=false --port=0 --secure-port=0

# --- containerd: its own config, root, state and socket ---------------------
C=$DIR/containerd
mkdir -p "$C/certs.d/$REG" "$DIR/cni/conf" "$DIR/cni/ipam"
cat >"$C/certs.d/$REG/hosts.toml" <<EOF
server = "http://$REG"
[host."http://$REG"]
  capabilities = ["pull", "resolve"]
EOF
cat >"$C/config.toml" <<EOF
version = 2
root = "$C/root"
state = "$C/state"
# The /opt plugin installs into /opt; the other snapshotters are not used.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$C/containerd.sock"
[ttrpc]
  address = "$C/containerd.sock.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$REG/pause:3.5"
  # This machine drops CAP_SYS_RESOURCE even for root: a negative
  # oom_score_adj (the kubelet asks -998 for guaranteed pods) would fail
  # every sandbox; restrict it to what the process may set.
  restrict_oom_score_adj = true
  disable_apparmor = true
  # The pods' network namespaces under the state dir, not /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$NODE_PREFIX/bin/runc"
        Root = "$C/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$NODE_PREFIX/cni"
    conf_dir = "$DIR/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$C/certs.d"
EOF
cat >"$DIR/cni/conf/10-ocisync.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "ocisync",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": false, "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "dataDir": "$DIR/cni/ipam",
               "ranges": [[{"subnet": "10.217.0.0/16", "rangeStart": "10.217.1.2", "rangeEnd": "10.217.1.254"}]]}
    },
    {"type": "loopback"}
  ]
}
EOF
PATH=$NODE_PREFIX/bin:$PATH start_daemon containerd "$NODE_PREFIX/bin/containerd" --config "$C/config.toml"
wait_for containerd containerd "$NODE_PREFIX/bin/ctr" --address "$C/containerd.sock" version

# --- the kubelet ---------------------------------------------------------------
K=$DIR/kubelet
mkdir -p "$K"
cat >"$DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $HOST_IP
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$CA/ca.crt"}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failSwapOn: false
# No negative OOM score for itself either (see containerd's config).
oomScoreAdj: 0
makeIPTablesUtilChains: false
serializeImagePulls: false
syncFrequency: ${KUBELET_SYNC_FREQUENCY:-1m}
clusterDomain: cluster.local
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
start_daemon kubelet "$CP_PREFIX/bin/kubelet" \
  --config="$DIR/kubelet.yaml" --kubeconfig="$DIR/pki/kubelet.kubeconfig" \
  --root-dir="$K" --cert-dir="$K/pki" \
  --container-runtime=remote --container-runtime-endpoint="unix://$C/containerd.sock" \
  --hostname-override="$NODE" --node-ip="$HOST_IP" --v=1
ready() {
  [[ $("$TOOLS/bin/kubectl" --kubeconfig "$KC" get node "$NODE" \
        -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
wait_for "node $NODE" kubelet ready
log "node $NODE Ready in $(( $(date +%s) - t0 )) s; registry http://$REG"
echo "$DIR/kubeconfig"
