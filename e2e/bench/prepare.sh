# Sourced by the operator benches: the real tools and the control plane
# installed (once), a release build of ocisync in $OCISYNC, and a local
# distribution 2.8 registry in $REG with its work dir $WORK (prefix $1).
# stop_all (set as the EXIT trap by the caller) cleans up.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ocisync-target}
export OCISYNC_TOOLS=${OCISYNC_TOOLS:-/var/tmp/ocisync/tools}
export PATH=$OCISYNC_TOOLS/bin:$PATH
"$ROOT/e2e/setup/install-tools.sh" >/dev/null
"$ROOT/e2e/setup/install-control-plane.sh" >/dev/null 2>&1
(cd "$ROOT" && cargo build --release -q -p ocisync)
OCISYNC=$CARGO_TARGET_DIR/release/ocisync
WORK=$(mktemp -d "/var/tmp/ocisync-$1.XXXXXX")
. "$ROOT/e2e/setup/registry.sh"
start_registry "$WORK/registry"

# A free loopback port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Wait until an operator's /readyz on PORT answers.
wait_readyz() { until curl -sf "http://127.0.0.1:$1/readyz" >/dev/null; do sleep 0.2; done; }
# How many Artifacts are Ready: in namespace $1, or everywhere with -A.
ready_count() {
  local where=(-n "$1"); [[ $1 == -A ]] && where=(-A)
  kubectl get artifacts "${where[@]}" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true
}
