#!/usr/bin/env bash
# Push benchmark: a 2,000-file, 200 MiB tree pushed by `ocisync push`
# (eStargz, zstd:chunked, and plain tar+gzip), `oras push` (the directory as one tar+gzip
# layer) and `crane append` (GNU tar's tarball of the tree as a new layer on
# no base), each to its own repository of a local distribution 2.8, one run
# side by side. Wall time and peak RSS from /usr/bin/time; the bytes
# uploaded are the layer's size in the manifest each tool wrote.
#
#   e2e/bench/upload.sh          # prints a markdown table (docs/src/operations/performance.md)
#
# Env: FILES (2000), FILE_KIB (100), OCISYNC_TOOLS, CARGO_TARGET_DIR.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FILES=${FILES:-2000} FILE_KIB=${FILE_KIB:-100}
export OCISYNC_TOOLS=${OCISYNC_TOOLS:-/var/tmp/ocisync/tools}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ocisync-target}
export PATH=$OCISYNC_TOOLS/bin:$PATH
log() { echo "[upload] $*" >&2; }

"$ROOT/e2e/setup/install-tools.sh" >/dev/null
(cd "$ROOT" && cargo build --release -q -p ocisync)
OCISYNC=$CARGO_TARGET_DIR/release/ocisync
WORK=$(mktemp -d /var/tmp/ocisync-upload.XXXXXX)
. "$ROOT/e2e/setup/registry.sh"
trap stop_all EXIT
start_registry "$WORK/registry"

log "a $FILES-file tree of $FILE_KIB KiB files (half random, half text)"
python3 - "$WORK/tree" "$FILES" "$FILE_KIB" <<'EOF'
import base64, os, sys
d, n, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    sub = f"{d}/dir{i % 20:02}"
    os.makedirs(sub, exist_ok=True)
    raw = os.urandom(kib << 10)
    # half the files compress (text), half do not: a config or site tree
    data = base64.b64encode(raw)[: kib << 10] if i % 2 else raw
    open(f"{sub}/f{i:05}.dat", "wb").write(data)
EOF

# timed CMD…: sets T (s) and RSS (MiB)
timed() {
  /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" > "$WORK/out" 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
  read -r T RSS_KB < "$WORK/time"
  RSS=$((RSS_KB / 1024))
}
layer_mib() {
  crane manifest --insecure "$REG/$1" | jq '[.layers[].size] | add / 1048576 * 10 | round / 10'
}

echo "| push of a $FILES-file, $(du -sm "$WORK/tree" | cut -f1) MiB tree | wall | peak RSS | uploaded (layer) | each file fetchable alone |"
echo "| --- | --- | --- | --- | --- |"
timed "$OCISYNC" push "oci://$REG/bench/ocisync:v1" "$WORK/tree" --insecure
printf '| **ocisync push** (eStargz) | %.2f s | %s MiB | %s MiB | yes |\n' "$T" "$RSS" "$(layer_mib bench/ocisync:v1)"
timed "$OCISYNC" push "oci://$REG/bench/zstd:v1" "$WORK/tree" --insecure --format zstd-chunked
printf '| ocisync push --format zstd-chunked | %.2f s | %s MiB | %s MiB | yes |\n' "$T" "$RSS" "$(layer_mib bench/zstd:v1)"
timed "$OCISYNC" push "oci://$REG/bench/plain:v1" "$WORK/tree" --insecure --format tar+gzip
printf '| ocisync push --format tar+gzip | %.2f s | %s MiB | %s MiB | no |\n' "$T" "$RSS" "$(layer_mib bench/plain:v1)"
pushd "$WORK" >/dev/null
timed oras push --plain-http "$REG/bench/oras:v1" tree/
popd >/dev/null
printf '| oras push dir/ | %.2f s | %s MiB | %s MiB | no |\n' "$T" "$RSS" "$(layer_mib bench/oras:v1)"
# crane appends a tarball: GNU tar makes it first (counted apart)
t0=$(date +%s.%N)
tar -C "$WORK/tree" -cf "$WORK/tree.tar" .
t1=$(date +%s.%N)
timed crane append --insecure -f "$WORK/tree.tar" -t "$REG/bench/crane:v1"
printf '| tar -c, then crane append | %.2f s + %.2f s | %s MiB | %s MiB | no |\n' "$(echo "$t1 - $t0" | bc)" "$T" "$RSS" "$(layer_mib bench/crane:v1)"
