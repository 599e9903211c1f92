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
# sync_volumes NS URL OPERATOR-ARGS…: one operator (under $WORK/operator.kubeconfig,
# with a volume root) syncs $N Artifacts of URL's tag v1, volume targets,
# created at once in namespace NS. Prints the seconds until all are Ready;
# the operator's /metrics are left in $WORK/NS.metrics.
sync_volumes() {
  local ns=$1 url=$2 port t0 t1; shift 2
  kubectl create namespace "$ns" >/dev/null
  port=$(free_port)
  KUBECONFIG="$WORK/operator.kubeconfig" OCISYNC_LOG=warn "$OCISYNC" operator --work-dir "$WORK/work-$ns" \
    --volume-root "$WORK/volume" --leader-elect=false --metrics-addr "127.0.0.1:$port" "$@" \
    2>"$WORK/operator-$ns.log" &
  OP_PID=$!
  wait_readyz "$port"
  for i in $(seq "$N"); do
    printf -- '---\napiVersion: ocisync.dev/v1alpha1\nkind: Artifact\nmetadata: {name: a%s, namespace: %s}\nspec: {url: "%s", ref: {tag: v1}, insecure: true, target: {volume: {path: a%s}}}\n' "$i" "$ns" "$url" "$i"
  done > "$WORK/$ns.yaml"
  t0=$(date +%s.%N)
  kubectl create -f "$WORK/$ns.yaml" >/dev/null
  until [[ $(ready_count "$ns") == "$N" ]]; do
    kill -0 "$OP_PID" || { tail -20 "$WORK/operator-$ns.log" >&2; exit 1; }
    sleep 0.5
  done
  t1=$(date +%s.%N)
  curl -sf "http://127.0.0.1:$port/metrics" > "$WORK/$ns.metrics"
  kill "$OP_PID"; wait "$OP_PID" 2>/dev/null || true
  echo "$t1 - $t0" | bc
}
