#!/usr/bin/env bash
# What a zstd window costs a pull: the same 256 MiB tar (one text file) as
# zstd layers whose frames declare 2 MiB (`zstd -3`), 32 MiB
# (`zstd --long=25`, skopeo's zstd:chunked window) and 128 MiB
# (`zstd --long=27`, the largest ocisync reads), and as skopeo 1.9's
# zstd:chunked; each pulled RUNS times by the release build.
#
#   e2e/bench/zstd-window.sh     # prints a markdown table (docs/src/operations/performance.md)
#
# Env: RUNS (default 3), OCISYNC_TOOLS, OCISYNC_PRODUCERS, CARGO_TARGET_DIR,
# BENCH_OUT (outputs; default /dev/shm).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUNS=${RUNS:-3}
log() { echo "[bench] $*" >&2; }
. "$HERE/prepare.sh" zstd-window
trap stop_all EXIT
BIN=$OCISYNC_TOOLS/bin
"$ROOT/e2e/setup/install-producers.sh"
[[ -x /usr/bin/time ]] || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
OUTS=${BENCH_OUT:-/dev/shm}/ocisync-bench-out.$$
mkdir -p "$OUTS"

# push NAME FILE MEDIA_TYPE ANNOTATIONS_JSON: one layer, no title, the empty config
push() {
  local dir=$WORK/push/$1
  mkdir -p "$dir"
  printf '{}' >"$dir/config"
  "$BIN/oras" blob push --plain-http "$REG/bench/$1" "$2" >/dev/null
  "$BIN/oras" blob push --plain-http "$REG/bench/$1" "$dir/config" >/dev/null
  python3 - "$2" "$3" "$4" >"$dir/manifest.json" <<'EOF'
import hashlib, json, os, sys
path, media_type, annotations = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
h = hashlib.sha256()
with open(path, "rb") as f:
    for b in iter(lambda: f.read(1 << 20), b""):
        h.update(b)
layer = {"mediaType": media_type, "digest": "sha256:" + h.hexdigest(), "size": os.path.getsize(path)}
if annotations:
    layer["annotations"] = annotations
print(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(), "size": 2},
    "layers": [layer]}))
EOF
  "$BIN/oras" manifest push --plain-http "$REG/bench/$1:v1" "$dir/manifest.json" >/dev/null
}

log "making layers in $WORK"
mkdir -p "$WORK/src"
head -c $((192 << 20)) /dev/urandom | base64 -w 76 >"$WORK/src/data.txt"
ZST=application/vnd.oci.image.layer.v1.tar+zstd
for w in 21:-3 25:--long=25 27:--long=27; do
  log=${w%%:*} flag=${w#*:}
  # streamed, so the frame header declares the window whatever the size
  tar -C "$WORK/src" -b1 -cf - data.txt | zstd -q -3 $flag -T1 -c >"$WORK/w$log.tar.zst"
  push "window$log" "$WORK/w$log.tar.zst" "$ZST" '{}'
done
"$ROOT/e2e/layers/make.sh" "$WORK/src" "$WORK/made"
push skopeo-chunked "$WORK/made/skopeo-zstd-chunked.blob" "$ZST" \
  "$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["annotations"]))' "$WORK/made/skopeo-zstd-chunked.json")"

echo "| layer (256 MiB tar) | window | compressed | wall (median of $RUNS) | peak RSS |"
echo "| --- | --- | --- | --- | --- |"
row() {
  local name=$1 what=$2 window=$3 size=$4 r secs kib times="" max=0
  for r in $(seq "$RUNS"); do
    rm -rf "$OUTS/run"
    /usr/bin/time -f '%e %M' -o "$WORK/time" "$OCISYNC" pull --insecure --no-progress "$REG/bench/$name:v1" \
      --out "$OUTS/run" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
    read -r secs kib <"$WORK/time"
    times+="$secs "
    (( kib > max )) && max=$kib
  done
  printf '| %s | %s | %s MiB | %s s | %s MiB |\n' "$what" "$window" "$((size >> 20))" \
    "$(tr ' ' '\n' <<<"$times" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')" "$((max / 1024))"
}
row window21 '`zstd -3`' "2 MiB" "$(stat -c %s "$WORK/w21.tar.zst")"
row window25 '`zstd -3 --long=25`' "32 MiB" "$(stat -c %s "$WORK/w25.tar.zst")"
row window27 '`zstd -3 --long=27`' "128 MiB" "$(stat -c %s "$WORK/w27.tar.zst")"
row skopeo-chunked 'skopeo 1.9 `zstd:chunked`' "as it declares" "$(stat -c %s "$WORK/made/skopeo-zstd-chunked.blob")"
rm -rf "$OUTS/run"
echo
echo "ocisync $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), zstd $(zstd -V | grep -o 'v[0-9.]*'), $(nproc) cores"
