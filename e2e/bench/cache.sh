#!/usr/bin/env bash
# Blob cache benchmark: 20 Artifacts of one 50 MiB digest, each into its own
# directory of the operator's volume (spec.target.volume), created at once,
# with the blob cache (the default) and without (--blob-cache-size 0). The
# bytes the operator downloaded come from its ocisync_blob_bytes_total
# (bytes read from registries only; cache reads are not counted).
#
#   e2e/bench/cache.sh           # prints a markdown table (docs/src/operations/performance.md)
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

# run NAME CACHE: prints "seconds bytes-from-the-registry"
run() {
  local t
  t=$(sync_volumes "$1" "oci://$REG/bench/shared" --blob-cache-size "$2")
  echo "$t $(awk '/^ocisync_blob_bytes_total/ {print $NF}' "$WORK/$1.metrics")"
}
read -r t_on b_on < <(run with-cache 512MiB)
read -r t_off b_off < <(run without 0)
mib() { echo "scale=1; $1 / 1048576" | bc; }
echo "| $N Artifacts of one 50 MiB digest, volume targets | downloaded from the registry | all Ready |"
echo "| --- | --- | --- |"
printf '| blob cache on (default) | %s MiB | %.1f s |\n' "$(mib "$b_on")" "$t_on"
printf '| `--blob-cache-size 0` | %s MiB | %.1f s |\n' "$(mib "$b_off")" "$t_off"
