#!/usr/bin/env bash
# Blob cache benchmark: 20 Artifacts of one 50 MiB digest, each into its own
# directory of the operator's volume (spec.target.volume), created at once,
# with the blob cache (the default) and without (--blob-cache-size 0). The
# bytes the operator downloaded come from its ocisync_blob_bytes_total
# (bytes read from registries only; cache reads are not counted).
#
#   e2e/bench/cache.sh           # prints a markdown table (README "Performance")
#
# Env: N (default 20), OCISYNC_TOOLS, CARGO_TARGET_DIR.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
N=${N:-20}
log() { echo "[cache] $*" >&2; }
. "$HERE/prepare.sh" cache
OP_PID=
trap 'kill $OP_PID 2>/dev/null || true; stop_all' EXIT

mkdir -p "$WORK/src"
head -c $((50 << 20)) /dev/urandom > "$WORK/src/data.bin"
(cd "$WORK/src" && oras push --plain-http "$REG/bench/shared:v1" data.bin >/dev/null)
KUBECONFIG=$("$ROOT/e2e/setup/start-control-plane.sh" "$WORK/cp") # fails the script, unlike `export X=$(…)`
export KUBECONFIG
"$ROOT/e2e/setup/operator-access.sh" "$WORK/operator.kubeconfig"

# run NAME CACHE: one operator, N Artifacts in namespace NAME; prints "seconds bytes"
run() {
  local ns=$1 port t0 t1
  kubectl create namespace "$ns" >/dev/null
  port=$(free_port)
  KUBECONFIG="$WORK/operator.kubeconfig" OCISYNC_LOG=warn "$OCISYNC" operator --work-dir "$WORK/work-$ns" \
    --volume-root "$WORK/volume" --blob-cache-size "$2" --leader-elect=false \
    --metrics-addr "127.0.0.1:$port" 2>"$WORK/operator-$ns.log" &
  OP_PID=$!
  wait_readyz "$port"
  for i in $(seq "$N"); do
    printf -- '---\napiVersion: ocisync.dev/v1alpha1\nkind: Artifact\nmetadata: {name: a%s, namespace: %s}\nspec: {url: "oci://%s/bench/shared", ref: {tag: v1}, insecure: true, target: {volume: {path: a%s}}}\n' "$i" "$ns" "$REG" "$i"
  done > "$WORK/$ns.yaml"
  t0=$(date +%s.%N)
  kubectl create -f "$WORK/$ns.yaml" >/dev/null
  until [[ $(ready_count "$ns") == "$N" ]]; do
    kill -0 "$OP_PID" || { tail -20 "$WORK/operator-$ns.log" >&2; exit 1; }
    sleep 0.5
  done
  t1=$(date +%s.%N)
  bytes=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^ocisync_blob_bytes_total/ {print $NF}')
  kill "$OP_PID"; wait "$OP_PID" 2>/dev/null || true
  echo "$(echo "$t1 - $t0" | bc) $bytes"
}
read -r t_on b_on < <(run with-cache 512MiB)
read -r t_off b_off < <(run without 0)
mib() { echo "scale=1; $1 / 1048576" | bc; }
echo "| $N Artifacts of one 50 MiB digest, volume targets | downloaded from the registry | all Ready |"
echo "| --- | --- | --- |"
printf '| blob cache on (default) | %s MiB | %.1f s |\n' "$(mib "$b_on")" "$t_on"
printf '| `--blob-cache-size 0` | %s MiB | %.1f s |\n' "$(mib "$b_off")" "$t_off"
