#!/usr/bin/env bash
# Pull benchmark: ocisync against oras and crane, same registry, same run.
#
#   e2e/bench/pull.sh            # prints a markdown table (docs/src/operations/performance.md)
#
# Artifacts, pushed once by oras to a local distribution 2.8 registry:
#   big    4 directory layers (tar+gzip) of 64 MiB each, 256 MiB in all
#   small  one directory layer with 2,000 files of 1-4 KiB
#   blobs  the bytes of big as four single-file layers (oras files): nothing
#          to unpack, so every tool only moves and checks bytes
#   huge   like big with 256 MiB layers, 1 GiB in all (ocisync only: memory)
# Each tool pulls each artifact RUNS times into a fresh directory on a tmpfs;
# the table shows the median wall time and the largest peak RSS
# (/usr/bin/time).
# crane has no unpacking pull: `crane export` (flatten to a tar) is the
# closest, `crane pull` (save the compressed layers) the cheapest.
#
# Env: RUNS (default 5), OCISYNC_TOOLS, CARGO_TARGET_DIR, BENCH_DIR (sources,
# registry), BENCH_OUT (outputs; default /dev/shm).
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
# Outputs go to a tmpfs and are removed after each run: the table compares
# the tools, not the disk. (On a journal-less ext4, file creation crawls for
# minutes after thousands of deletions, which taxes whichever tool runs next.)
OUTS=${BENCH_OUT:-/dev/shm}/ocisync-bench-out.$$
mkdir -p "$OUTS"
trap stop_all EXIT

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
# blobs: the same 256 MiB as four single-file layers, nothing to decompress
mkdir -p "$WORK/src/blobs"
for f in 1 2 3 4; do cat "$WORK"/src/big/layer$f/*.txt > "$WORK/src/blobs/part$f.txt"; done
(cd "$WORK/src/blobs" && "$BIN/oras" push --plain-http "$REG/bench/blobs:v1" part1.txt part2.txt part3.txt part4.txt >/dev/null)
mkdir -p "$WORK/src/small/files"
for i in $(seq 2000); do head -c $((1024 + RANDOM % 3072)) /dev/urandom | base64 -w 76 > "$WORK/src/small/files/$i.yaml"; done
(cd "$WORK/src/small" && "$BIN/oras" push --plain-http "$REG/bench/small:v1" files/ >/dev/null)


# bench ARTIFACT "NAME|CMD"...: RUNS rounds, each tool once per round (so a
# slow moment hits every tool alike), each run into a fresh $OUT.
bench() {
  local art=$1; shift
  local -A times=() rss=()
  local r t name cmd secs kib
  for r in $(seq "$RUNS"); do
    for t in "$@"; do
      name=${t%%|*} cmd=${t#*|}
      OUT=$OUTS/run
      rm -rf "$OUT"; mkdir -p "$OUT"
      OUT=$OUT /usr/bin/time -f '%e %M' -o "$WORK/time" bash -c "$cmd" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; log "$name failed"; exit 1; }
      read -r secs kib < "$WORK/time"
      times[$name]+="$secs "
      (( kib > ${rss[$name]:-0} )) && rss[$name]=$kib
    done
  done
  for t in "$@"; do
    name=${t%%|*}
    printf '| %s | %s | %s s | %s MiB |\n' "$art" "$name" \
      "$(tr ' ' '\n' <<<"${times[$name]}" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')" \
      "$(( ${rss[$name]} / 1024 ))"
  done
  rm -rf "$OUTS/run"
}

echo "| artifact | tool | wall (median of $RUNS) | peak RSS |"
echo "| --- | --- | --- | --- |"
ocisync_cmd() { echo "ocisync pull|$OCISYNC pull --insecure --no-progress $REG/bench/$1:v1 --out \$OUT/files"; }
oras_cmd() { echo "oras pull|cd \$OUT && $BIN/oras pull --plain-http --no-tty $REG/bench/$1:v1 -o \$OUT"; }
crane_export_cmd() { echo "crane export|$BIN/crane export --insecure $REG/bench/$1:v1 \$OUT/fs.tar"; }
crane_pull_cmd() { echo "crane pull|$BIN/crane pull --insecure $REG/bench/$1:v1 \$OUT/image.tar"; }
for art in big small; do
  bench "$art" "$(ocisync_cmd $art)" "$(oras_cmd $art)" "$(crane_export_cmd $art)" "$(crane_pull_cmd $art)"
done
# crane export flattens tar layers only; single-file layers are not tars
bench blobs "$(ocisync_cmd blobs)" "$(oras_cmd blobs)" "$(crane_pull_cmd blobs)"
# Four times the bytes, same memory: ocisync's peak RSS does not follow size.
bench huge "$(ocisync_cmd huge)"
echo
echo "ocisync $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(cat "$OCISYNC_TOOLS/VERSIONS" | tr '\n' ',' | sed 's/,$//'), $(nproc) cores"
