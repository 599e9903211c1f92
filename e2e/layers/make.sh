#!/usr/bin/env bash
# Layers as real producers write them, from one source tree, for ocisync's
# layer-format tests:
#
#   make.sh SRC_DIR OUT_DIR
#
# GNU tar packs SRC_DIR (512-byte records: skopeo 1.9 drops what follows the
# end-of-archive marker, and its diffID would then be wrong), then:
#   skopeo-gzip, skopeo-zstd, skopeo-zstd-chunked  skopeo copy --dest-compress-format
#   estargz, estargz-zstd-chunked                  containerd's estargz library
#                                                  (e2e/estargz, -prioritize etc/app.yaml
#                                                  when the tree has it)
# For each: OUT_DIR/NAME.blob (the layer) and OUT_DIR/NAME.json (its
# descriptor as the producer wrote it: mediaType, digest, size,
# annotations), and OUT_DIR/source.tar.
#
# Env: CHUNK_SIZE (estargz chunk size; default the library's 4 MiB),
#      MAKE_ONLY (space-separated names: make only these; default all),
#      OCISYNC_PRODUCERS (default /var/tmp/ocisync/producers), as installed
# by e2e/setup/install-producers.sh.
set -euo pipefail
SRC=$1
OUT=$2
P=${OCISYNC_PRODUCERS:-/var/tmp/ocisync/producers}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Sorted, owned by root, fixed times: the same tree makes the same layers.
tar -C "$SRC" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=gnu -b1 -cf "$OUT/source.tar" .

prioritize=""
[[ -f $SRC/etc/app.yaml ]] && prioritize="-prioritize etc/app.yaml"
[[ -n ${CHUNK_SIZE:-} ]] && prioritize+=" -chunk-size $CHUNK_SIZE"
wanted() { [[ -z ${MAKE_ONLY:-} || " $MAKE_ONLY " == *" $1 "* ]]; }
if wanted estargz; then
  # shellcheck disable=SC2086
  "$P/gobin/estargz-write" $prioritize "$OUT/source.tar" "$OUT/estargz.blob" >"$OUT/estargz.json"
fi
if wanted estargz-zstd-chunked; then
  # shellcheck disable=SC2086
  "$P/gobin/estargz-write" -zstdchunked $prioritize "$OUT/source.tar" "$OUT/estargz-zstd-chunked.blob" \
    >"$OUT/estargz-zstd-chunked.json"
fi

# An OCI layout holding the tar as its one layer, for skopeo to recompress.
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
src=$work/src
mkdir -p "$src/blobs/sha256"
cp "$OUT/source.tar" "$src/blobs/sha256/$(sha "$OUT/source.tar")"
layer=$(sha "$OUT/source.tar")
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"config":{}}' \
  "$layer" >"$work/config"
config=$(sha "$work/config")
cp "$work/config" "$src/blobs/sha256/$config"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
  "$config" "$(size "$work/config")" "$layer" "$(size "$OUT/source.tar")" >"$work/manifest"
manifest=$(sha "$work/manifest")
cp "$work/manifest" "$src/blobs/sha256/$manifest"
printf '{"imageLayoutVersion":"1.0.0"}' >"$src/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' \
  "$manifest" "$(size "$work/manifest")" >"$src/index.json"
printf '{"default":[{"type":"insecureAcceptAnything"}]}' >"$work/policy.json"

for format in gzip zstd zstd:chunked; do
  name=skopeo-${format/:/-}
  wanted "$name" || continue
  dst=$work/$name
  "$P/bin/skopeo" --policy "$work/policy.json" copy -q --dest-compress --dest-compress-format "$format" \
    "oci:$src:v1" "oci:$dst:v1"
  m=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"].split(":")[1])' "$dst/index.json")
  python3 - "$dst/blobs/sha256/$m" "$OUT/$name.json" <<'EOF'
import json, sys
layer = json.load(open(sys.argv[1]))["layers"][0]
layer.setdefault("annotations", {})
json.dump(layer, open(sys.argv[2], "w"))
EOF
  d=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["digest"].split(":")[1])' "$OUT/$name.json")
  cp "$dst/blobs/sha256/$d" "$OUT/$name.blob"
done
