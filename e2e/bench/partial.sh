#!/usr/bin/env bash
# Selective retrieval and delta sync benchmark: layers made by the real
# producers (containerd's estargz library: eStargz and zstd:chunked;
# skopeo: zstd:chunked) from one tree, pushed to a local distribution 2.8
# whose access log gives the bytes each command cost.
#
#   e2e/bench/partial.sh         # prints markdown tables (docs/src/operations/performance.md)
#
#   one file     a tree of FILES files of FILE_KIB KiB of random bytes (1 GiB)
#                and one 4 KiB file; `ocisync pull --select` of the 4 KiB
#                file by ranges, then with --no-partial (the whole layer);
#                `ocisync ls`; the same select through a front that ignores
#                Range (no-range-proxy.py): the fallback to the whole layer.
#   delta        a TREE_FILES-file tree of TREE_FILE_KIB KiB files (200 MiB),
#                then the same with one file changed, into a volume
#                (`ocisync pull --volume`: the code the agent and the
#                operator's volume target run): the second version's bytes.
# Wall time and peak RSS from /usr/bin/time, one run each, outputs on a
# tmpfs.
#
# Env: PARTS ("one delta": which tables), FILES (4000), FILE_KIB (256),
# TREE_FILES (2000), TREE_FILE_KIB (100),
# OCISYNC_TOOLS, CARGO_TARGET_DIR, BENCH_OUT (default /dev/shm).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FILES=${FILES:-4000} FILE_KIB=${FILE_KIB:-256} TREE_FILES=${TREE_FILES:-2000} TREE_FILE_KIB=${TREE_FILE_KIB:-100}
export OCISYNC_TOOLS=${OCISYNC_TOOLS:-/var/tmp/ocisync/tools}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ocisync-target}
export PATH=$OCISYNC_TOOLS/bin:$PATH
log() { echo "[partial] $*" >&2; }

"$ROOT/e2e/setup/install-tools.sh" >/dev/null
"$ROOT/e2e/setup/install-producers.sh" >/dev/null
(cd "$ROOT" && cargo build --release -q -p ocisync)
OCISYNC=$CARGO_TARGET_DIR/release/ocisync
WORK=$(mktemp -d /var/tmp/ocisync-partial.XXXXXX)
OUTS=${BENCH_OUT:-/dev/shm}/ocisync-partial-out.$$
mkdir -p "$OUTS"
. "$ROOT/e2e/setup/registry.sh"
PROXY_PID=
trap 'kill $PROXY_PID 2>/dev/null || true; stop_all' EXIT
REGISTRY_NO_ACCESS_LOG=false start_registry "$WORK/registry"
ACCESS=$WORK/registry/log
PROXY_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 "$HERE/no-range-proxy.py" "$PROXY_PORT" "$REG" &
PROXY_PID=$!
NAMES="estargz estargz-zstd-chunked skopeo-zstd-chunked"

# tree DIR N KIB: N files of KIB KiB of random bytes under DIR/data, and a
# 4 KiB DIR/conf/app.conf.
tree() {
  python3 - "$@" <<'EOF'
import os, sys
d, n, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(f"{d}/data", exist_ok=True)
os.makedirs(f"{d}/conf", exist_ok=True)
for i in range(n):
    with open(f"{d}/data/{i:05}.bin", "wb") as f:
        f.write(os.urandom(kib << 10))
with open(f"{d}/conf/app.conf", "wb") as f:
    f.write(b"# 4 KiB of settings\n".ljust(4096, b"#"))
EOF
}

# push NAME LAYERS-DIR TAG: the producer's layer, its descriptor as written
# (annotations and all), under an OCI 1.1 manifest with the empty config.
push() {
  local name=$1 dir=$2 tag=$3 m
  oras blob push --plain-http "$REG/bench/$name" "$dir/$name.blob" >/dev/null
  printf '{}' > "$WORK/empty.json"
  oras blob push --plain-http "$REG/bench/$name" "$WORK/empty.json" >/dev/null
  m=$WORK/manifest-$name-$tag.json
  jq -n --slurpfile l "$dir/$name.json" '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    artifactType: "application/vnd.example.bench", config: {mediaType: "application/vnd.oci.empty.v1+json",
    digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", size: 2}, layers: [$l[0]]}' > "$m"
  oras manifest push --plain-http "$REG/bench/$name:$tag" "$m" >/dev/null
}

# The bytes of the layer blob GETs in the access log since line $1.
blob_bytes() {
  tail -n +"$(($1 + 1))" "$ACCESS" | awk -v d="$2" '$0 ~ "GET /v2/[^ ]*/blobs/" d " " { for (i = 1; i < NF; i++) if ($i ~ /^(200|206)$/) { n += $(i + 1); break } } END { print n + 0 }'
}
requests() {
  tail -n +"$(($1 + 1))" "$ACCESS" | grep -c "GET /v2/[^ ]*/blobs/$2 " || true
}
lines() { wc -l < "$ACCESS"; }
mib() { echo "scale=1; $1 / 1048576" | bc; }
kib() { echo "scale=1; $1 / 1024" | bc; }

# timed LABEL CMD…: runs CMD; sets T (s) and RSS (MiB)
timed() {
  /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" > "$WORK/out.json" 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
  read -r T RSS_KB < "$WORK/time"
  RSS=$((RSS_KB / 1024))
}

# the TOC's bytes in a layer, from its descriptor and blob
toc_bytes() {
  python3 - "$1.json" "$1.blob" <<'EOF'
import json, os, sys
a = json.load(open(sys.argv[1])).get("annotations", {})
pos = a.get("io.github.containers.zstd-chunked.manifest-position") or a.get("io.containers.zstd-chunked.manifest-position")
if pos:
    print(int(pos.split(":")[1]))
else:
    f = open(sys.argv[2], "rb"); f.seek(-51, 2); footer = f.read()
    at = footer.find(b"STARGZ")
    print(os.path.getsize(sys.argv[2]) - 51 - int(footer[at - 16:at], 16))
EOF
}

if [[ " ${PARTS:-one delta} " == *" one "* ]]; then
log "a $FILES-file tree of $FILE_KIB KiB files, and its layers"
tree "$WORK/big" "$FILES" "$FILE_KIB"
MAKE_ONLY=$NAMES "$ROOT/e2e/layers/make.sh" "$WORK/big" "$WORK/big-layers" >/dev/null
rm -rf "$WORK/big" "$WORK/big-layers/source.tar"
for n in $NAMES; do push "$n" "$WORK/big-layers" v1; done

echo "| one 4 KiB file of a $(mib "$(stat -c %s "$WORK/big-layers/estargz.blob")") MiB layer, $((FILES + 1)) files | TOC | from the registry (access log) | requests | wall | peak RSS |"
echo "| --- | --- | --- | --- | --- | --- |"
for n in $NAMES; do
  layer=sha256:$(sha256sum "$WORK/big-layers/$n.blob" | cut -d' ' -f1)
  toc=$(toc_bytes "$WORK/big-layers/$n")
  row() {
    local label=$1 ref=$2; shift 2
    rm -rf "$OUTS/out"
    local at; at=$(lines)
    timed "$OCISYNC" "$@"
    printf '| %s | %s KiB | %s KiB | %s | %.2f s | %s MiB |\n' "$label" "$(kib "$toc")" "$(kib "$(blob_bytes "$at" "$layer")")" \
      "$(requests "$at" "$layer")" "$T" "$RSS"
  }
  ref=oci://$REG/bench/$n:v1
  row "$n: \`pull --select conf/app.conf\`" "$ref" pull "$ref" --insecure --out "$OUTS/out" --select conf/app.conf --no-progress
  row "$n: the same, \`--no-partial\`" "$ref" pull "$ref" --insecure --out "$OUTS/out" --select conf/app.conf --no-progress --no-partial
  row "$n: \`ls\`" "$ref" ls "$ref" --insecure --output json
  proxied=oci://127.0.0.1:$PROXY_PORT/bench/$n:v1
  row "$n: \`pull --select\` from a registry that ignores Range" "$proxied" pull "$proxied" --insecure --out "$OUTS/out" --select conf/app.conf --no-progress
done
rm -rf "$WORK/big-layers"
fi
[[ " ${PARTS:-one delta} " == *" delta "* ]] || exit 0

log "a $TREE_FILES-file tree of $TREE_FILE_KIB KiB files, two versions"
tree "$WORK/tree" "$TREE_FILES" "$TREE_FILE_KIB"
MAKE_ONLY=$NAMES "$ROOT/e2e/layers/make.sh" "$WORK/tree" "$WORK/v1" >/dev/null
python3 -c 'import os,sys; open(sys.argv[1], "wb").write(os.urandom(int(sys.argv[2]) << 10))' "$WORK/tree/data/00042.bin" "$TREE_FILE_KIB"
MAKE_ONLY=$NAMES "$ROOT/e2e/layers/make.sh" "$WORK/tree" "$WORK/v2" >/dev/null
echo
echo "| a new version of a $TREE_FILES-file, $(mib "$(stat -c %s "$WORK/v1/estargz.blob")") MiB tree, one file changed, into a volume | TOC | from the registry (access log) | files reused | wall | peak RSS |"
echo "| --- | --- | --- | --- | --- | --- |"
for n in $NAMES; do
  push "$n" "$WORK/v1" v1
  push "$n" "$WORK/v2" v2
  vol=$OUTS/vol-$n
  "$OCISYNC" pull "oci://$REG/bench/$n:v1" --insecure --out "$vol" --volume --no-progress >/dev/null
  layer=sha256:$(sha256sum "$WORK/v2/$n.blob" | cut -d' ' -f1)
  at=$(lines)
  timed "$OCISYNC" pull "oci://$REG/bench/$n:v2" --insecure --out "$vol" --volume --no-progress --output json
  reused=$(jq -r .filesReused "$WORK/out.json")
  printf '| %s | %s KiB | %s KiB | %s | %.2f s | %s MiB |\n' "$n" "$(kib "$(toc_bytes "$WORK/v2/$n")")" \
    "$(kib "$(blob_bytes "$at" "$layer")")" "${reused:-?}" "$T" "$RSS"
  # the whole layer into a volume that holds v1 too, for comparison
  whole=$OUTS/whole-$n
  "$OCISYNC" pull "oci://$REG/bench/$n:v1" --insecure --out "$whole" --volume --no-progress --no-partial >/dev/null
  timed "$OCISYNC" pull "oci://$REG/bench/$n:v2" --insecure --out "$whole" --volume --no-progress --no-partial
  printf '| %s, `--no-partial` | | %s MiB | 0 | %.2f s | %s MiB |\n' "$n" "$(mib "$(stat -c %s "$WORK/v2/$n.blob")")" "$T" "$RSS"
  rm -rf "$vol" "$whole"
done
