#!/usr/bin/env bash
# Mirror benchmark: 20 Artifacts of one 50 MiB digest (volume targets), the
# origin and a mirror two local distribution 2.8 registries, the mirror
# given operator-wide (--mirror ORIGIN=oci://MIRROR/cache). Bytes by source
# come from the operator's ocisync_synced_layer_bytes_total{source}, which
# counts what was downloaded from each (cache reads are not downloads).
#
#   e2e/bench/mirror.sh          # prints a markdown table (README "Performance")
#
# Env: N (default 20), OCISYNC_TOOLS, CARGO_TARGET_DIR.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
N=${N:-20}
log() { echo "[mirror] $*" >&2; }
. "$HERE/prepare.sh" mirror
OP_PID= MIRROR_PID=
trap 'kill $OP_PID $MIRROR_PID 2>/dev/null || true; stop_all' EXIT
ORIGIN=$REG ORIGIN_PID=$REG_PID
start_registry "$WORK/mirror"
MIRROR=$REG MIRROR_PID=$REG_PID
REG=$ORIGIN REG_PID=$ORIGIN_PID

mkdir -p "$WORK/src"
head -c $((50 << 20)) /dev/urandom > "$WORK/src/data.bin"
(cd "$WORK/src" && oras push --plain-http "$ORIGIN/bench/shared:v1" data.bin >/dev/null)
crane copy --insecure "$ORIGIN/bench/shared:v1" "$MIRROR/cache/bench/shared:copied" 2>/dev/null
(cd "$WORK/src" && oras push --plain-http "$ORIGIN/bench/other:v1" data.bin --annotation x=only-at-origin >/dev/null)
KUBECONFIG=$("$ROOT/e2e/setup/start-control-plane.sh" "$WORK/cp") # fails the script, unlike `export X=$(…)`
export KUBECONFIG
"$ROOT/e2e/setup/operator-access.sh" "$WORK/operator.kubeconfig"

# run NAME REPO CACHE: one operator with the mirror, N Artifacts of REPO in
# namespace NAME; prints "seconds mirror-bytes origin-bytes"
run() {
  local ns=$1 port t0 t1 m
  kubectl create namespace "$ns" >/dev/null
  port=$(free_port)
  KUBECONFIG="$WORK/operator.kubeconfig" OCISYNC_LOG=warn "$OCISYNC" operator --work-dir "$WORK/work-$ns" \
    --volume-root "$WORK/volume" --blob-cache-size "$3" --leader-elect=false \
    --mirror "$ORIGIN=oci://$MIRROR/cache" --mirror-insecure \
    --metrics-addr "127.0.0.1:$port" 2>"$WORK/operator-$ns.log" &
  OP_PID=$!
  wait_readyz "$port"
  for i in $(seq "$N"); do
    printf -- '---\napiVersion: ocisync.dev/v1alpha1\nkind: Artifact\nmetadata: {name: a%s, namespace: %s}\nspec: {url: "oci://%s/bench/%s", ref: {tag: v1}, insecure: true, target: {volume: {path: a%s}}}\n' "$i" "$ns" "$ORIGIN" "$2" "$i"
  done > "$WORK/$ns.yaml"
  t0=$(date +%s.%N)
  kubectl create -f "$WORK/$ns.yaml" >/dev/null
  until [[ $(ready_count "$ns") == "$N" ]]; do
    kill -0 "$OP_PID" || { tail -20 "$WORK/operator-$ns.log" >&2; exit 1; }
    sleep 0.5
  done
  t1=$(date +%s.%N)
  m=$(curl -sf "http://127.0.0.1:$port/metrics")
  kill "$OP_PID"; wait "$OP_PID" 2>/dev/null || true
  echo "$(echo "$t1 - $t0" | bc) $(awk '/^ocisync_synced_layer_bytes_total\{source="mirror"\}/ {print $NF}' <<<"$m" | grep . || echo 0) $(awk '/^ocisync_synced_layer_bytes_total\{source="origin"\}/ {print $NF}' <<<"$m" | grep . || echo 0)"
}
read -r t1 m1 o1 < <(run cached shared 512MiB)
read -r t2 m2 o2 < <(run uncached shared 0)
read -r t3 m3 o3 < <(run lacking other 512MiB)
mib() { echo "scale=1; $1 / 1048576" | bc; }
echo "| $N Artifacts of one 50 MiB digest, \`--mirror\` | from the mirror | from the origin | all Ready |"
echo "| --- | --- | --- | --- |"
printf '| mirror has the digest, blob cache on (default) | %s MiB | %s MiB | %.1f s |\n' "$(mib "$m1")" "$(mib "$o1")" "$t1"
printf '| mirror has the digest, `--blob-cache-size 0` | %s MiB | %s MiB | %.1f s |\n' "$(mib "$m2")" "$(mib "$o2")" "$t2"
printf '| mirror lacks the digest, blob cache on | %s MiB | %s MiB | %.1f s |\n' "$(mib "$m3")" "$(mib "$o3")" "$t3"
echo
echo "ocisync $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), distribution 2.8 (origin and mirror), $(nproc) cores"
