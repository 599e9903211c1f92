#!/usr/bin/env bash
# Mirror benchmark: 20 Artifacts of one 50 MiB digest (volume targets), the
# origin and a mirror two local distribution 2.8 registries, the mirror
# given operator-wide (--mirror ORIGIN=oci://MIRROR/cache). Bytes by source
# come from the operator's ocisync_synced_layer_bytes_total{source}, which
# counts what was downloaded from each (cache reads are not downloads).
#
#   e2e/bench/mirror.sh          # prints a markdown table (docs/src/operations/performance.md)
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

# run NAME REPO CACHE: one operator with the mirror; prints "seconds
# mirror-bytes origin-bytes"
run() {
  local t
  t=$(sync_volumes "$1" "oci://$ORIGIN/bench/$2" --blob-cache-size "$3" --mirror "$ORIGIN=oci://$MIRROR/cache" --mirror-insecure)
  bytes() { awk -v s="$1" 'index($0, "ocisync_synced_layer_bytes_total{source=\"" s "\"}") == 1 {print $NF}' "$WORK/$2.metrics" | grep . || echo 0; }
  echo "$t $(bytes mirror "$1") $(bytes origin "$1")"
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
