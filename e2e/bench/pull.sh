#!/usr/bin/env bash
# Pull benchmark: ocisync against oras and crane, same registry, same run.
#
#   e2e/bench/pull.sh            # prints a markdown table (README "Performance")
#
# Artifacts, pushed once by oras to a local distribution 2.8 registry:
#   big    4 directory layers (tar+gzip) of 64 MiB each, 256 MiB in all
#   small  one directory layer with 2,000 files of 1-4 KiB
#   huge   like big with 256 MiB layers, 1 GiB in all (ocisync only: memory)
# Each tool pulls each artifact RUNS times into a fresh directory; the table
# shows the median wall time and the largest peak RSS (/usr/bin/time -v).
# crane has no unpacking pull: `crane export` (flatten to a tar) is the
# closest, `crane pull` (save the compressed layers) the cheapest.
#
# Env: RUNS (default 5), OCISYNC_TOOLS, CARGO_TARGET_DIR, BENCH_DIR.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUNS=${RUNS:-5}
export OCISYNC_TOOLS=${OCISYNC_TOOLS:-/var/tmp/ocisync/tools}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ocisync-target}
BIN=$OCISYNC_TOOLS/bin
WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/ocisync-bench.XXXXXX)}
log() { echo "[bench] $*" >&2; }

"$ROOT/e2e/setup/install-tools.sh" >/dev/null
[[ -x /usr/bin/time ]] || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
(cd "$ROOT" && cargo build --release -q -p ocisync)
OCISYNC=$CARGO_TARGET_DIR/release/ocisync

. "$ROOT/e2e/setup/registry.sh"
start_registry "$WORK/registry"
trap 'kill $REG_PID 2>/dev/null; wait $REG_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT

log "making artifacts in $WORK"
# layers NAME FILES_PER_LAYER: 4 directories of 4 MiB text files, pushed as
# one artifact. base64 of random bytes is text that gzip shrinks by a quarter.
layers() {
  local d
  for l in 1 2 3 4; do
    d=$WORK/src/$1/layer$l
    mkdir -p "$d"
    for f in $(seq "$2"); do head -c $((3 << 20)) /dev/urandom | base64 -w 76 > "$d/f$f.txt"; done
  done
  (cd "$WORK/src/$1" && "$BIN/oras" push --plain-http "$REG/bench/$1:v1" layer1/ layer2/ layer3/ layer4/ >/dev/null)
}
layers big 16
layers huge 64
mkdir -p "$WORK/src/small/files"
for i in $(seq 2000); do head -c $((1024 + RANDOM % 3072)) /dev/urandom | base64 -w 76 > "$WORK/src/small/files/$i.yaml"; done
(cd "$WORK/src/small" && "$BIN/oras" push --plain-http "$REG/bench/small:v1" files/ >/dev/null)

# measure NAME ARTIFACT CMD : RUNS timed runs, each into a fresh $OUT.
# Outputs are deleted only at the end: ext4 makes file creation crawl for a
# while after thousands of deletions (recently_deleted() in its inode
# allocator), which would tax whichever tool ran next.
run_no=0
measure() {
  local name=$1 art=$2 cmd=$3
  local times=() rss=0
  for r in $(seq "$RUNS"); do
    run_no=$((run_no + 1))
    OUT=$WORK/out/$run_no
    mkdir -p "$OUT"
    sync
    OUT=$OUT /usr/bin/time -f '%e %M' -o "$WORK/time" bash -c "$cmd" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; log "$name failed"; exit 1; }
    read -r secs kib < "$WORK/time"
    times+=("$secs"); (( kib > rss )) && rss=$kib
  done
  local median
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '| %s | %s | %s s | %s MiB |\n' "$art" "$name" "$median" "$((rss / 1024))"
}

echo "| artifact | tool | wall (median of $RUNS) | peak RSS |"
echo "| --- | --- | --- | --- |"
for art in big small; do
  ref=$REG/bench/$art:v1
  measure "ocisync pull" "$art" "$OCISYNC pull --insecure --no-progress $ref --out \$OUT/files"
  measure "oras pull" "$art" "cd \$OUT && $BIN/oras pull --plain-http --no-tty $ref -o \$OUT"
  measure "crane export" "$art" "$BIN/crane export --insecure $ref \$OUT/fs.tar"
  measure "crane pull" "$art" "$BIN/crane pull --insecure $ref \$OUT/image.tar"
done
# Four times the bytes, same memory: ocisync's peak RSS does not follow size.
measure "ocisync pull" "huge" "$OCISYNC pull --insecure --no-progress $REG/bench/huge:v1 --out \$OUT/files"
echo
echo "ocisync $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(cat "$OCISYNC_TOOLS/VERSIONS" | tr '\n' ',' | sed 's/,$//'), $(nproc) cores"
