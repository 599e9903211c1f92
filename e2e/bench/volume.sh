#!/usr/bin/env bash
# Volume publish benchmark: `ocisync pull --volume` (the code the operator's
# volume target and the agent run) of a 2,000-file, 200 MiB revision.
#
#   e2e/bench/volume.sh          # prints a markdown table (docs/src/operations/performance.md)
#
# Two artifacts of one tar+gzip layer each, 2,000 files of 100 KiB (base64 of
# random bytes), pushed once by oras to a local distribution 2.8 registry.
# The output is on disk (BENCH_OUT, default under /var/tmp), not a tmpfs:
# every file is fsynced before the switch, and that is part of the cost.
# Rows: the first publish; a second version over it; switching back to the
# kept first one (no download: the switch, the links and a HEAD); the same
# digest again (nothing to do but the HEAD). Wall time and peak RSS from
# /usr/bin/time, median of RUNS.
#
# Env: RUNS (default 3), OCISYNC_TOOLS, CARGO_TARGET_DIR, BENCH_DIR, BENCH_OUT.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUNS=${RUNS:-3}
export OCISYNC_TOOLS=${OCISYNC_TOOLS:-/var/tmp/ocisync/tools}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ocisync-target}
BIN=$OCISYNC_TOOLS/bin
WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/ocisync-bench-volume.XXXXXX)}
log() { echo "[bench] $*" >&2; }

"$ROOT/e2e/setup/install-tools.sh" >/dev/null
[[ -x /usr/bin/time ]] || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
(cd "$ROOT" && cargo build --release -q -p ocisync)
OCISYNC=$CARGO_TARGET_DIR/release/ocisync
. "$ROOT/e2e/setup/registry.sh"
start_registry "$WORK/registry"
OUTS=${BENCH_OUT:-$WORK/out}
mkdir -p "$OUTS"
trap stop_all EXIT

for v in a b; do
  d=$WORK/src/$v/files
  mkdir -p "$d"
  for f in $(seq 2000); do head -c 76800 /dev/urandom | base64 -w 100 > "$d/f$f.txt"; done
  (cd "$WORK/src/$v" && "$BIN/oras" push --plain-http "$REG/bench/vol:$v" files/ >/dev/null)
done
log "artifacts: $(du -sh "$WORK/src/a" | cut -f1) each, $(ls "$WORK/src/a/files" | wc -l) files"

# measure TAG: one pull into $OUT, "seconds MiB" on stdout
measure() {
  local t
  t=$( { /usr/bin/time -f '%e %M' "$OCISYNC" pull --insecure --no-progress --volume --keep 2 --grace 0s \
          "$REG/bench/vol:$1" --out "$OUT" >/dev/null; } 2>&1 | tail -1)
  echo "${t% *} $(( ${t#* } / 1024 ))"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A wall rss
for run in $(seq "$RUNS"); do
  OUT=$OUTS/run$run
  rm -rf "$OUT"
  for step in first:a second:b back:a same:a; do
    read -r s m < <(measure "${step#*:}")
    wall[${step%%:*}]+="$s "
    rss[${step%%:*}]+="$m "
  done
  rm -rf "$OUT"
done
row() { printf '| %s | %s s | %s MiB |\n' "$2" "$(tr ' ' '\n' <<<"${wall[$1]}" | grep . | median)" "$(tr ' ' '\n' <<<"${rss[$1]}" | grep . | sort -n | tail -1)"; }
echo "| \`ocisync pull --volume\`, 2,000 files, 200 MiB | wall (median of $RUNS) | peak RSS (max) |"
echo "| --- | --- | --- |"
row first "first revision (download, unpack, fsync, switch)"
row second "a new version over it"
row back "back to the kept revision (no download)"
row same "the same digest again (nothing to do)"
