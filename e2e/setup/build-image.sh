#!/usr/bin/env bash
# Assemble the operator's runtime image without a container engine and push
# it to REF. The Dockerfile's base images (rust:bookworm, distroless/cc) are
# out of reach from this machine, so the same runtime filesystem is put
# together here: the binary at the Dockerfile's path, the shared libraries
# `ldd` says it loads (distroless/cc's glibc and libgcc), the CA bundle, and
# passwd/group naming 65532 `nonroot`, no shell; user 65532:65532,
# entrypoint /usr/local/bin/ocisync, command `operator`, as the Dockerfile
# says (tests/it/image.rs checks this layout against the Dockerfile).
#
# Usage: build-image.sh REF        e.g. 10.217.0.1:5000/ocisync:dev
# Env:   OCISYNC_BIN  the binary (default: a release build, made here);
#                     a debug build is stripped of its debug info first
#        OCISYNC_TOOLS  crane (default /var/tmp/ocisync/tools)
#        INSECURE=1   the registry speaks plain HTTP (default: yes for
#                     loopback and 10.217.0.1, start-cluster.sh's registry)
# Prints the pushed image's digest reference.
set -euo pipefail
[[ $# -eq 1 ]] || { echo "usage: $0 REF" >&2; exit 2; }
REF=$1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CRANE=${OCISYNC_TOOLS:-/var/tmp/ocisync/tools}/bin/crane
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ocisync-target}
if [[ -z ${OCISYNC_BIN:-} ]]; then
  (cd "$ROOT" && cargo build --release --locked -q -p ocisync)
  OCISYNC_BIN=$CARGO_TARGET_DIR/release/ocisync
fi
case ${INSECURE:-} in
  1) insecure=(--insecure) ;;
  0) insecure=() ;;
  *) case $REF in localhost*|127.*|10.217.0.1*) insecure=(--insecure) ;; *) insecure=() ;; esac ;;
esac

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
root=$work/root
install -D -m 0755 "$OCISYNC_BIN" "$root/usr/local/bin/ocisync"
strip --strip-debug "$root/usr/local/bin/ocisync"
ldd "$OCISYNC_BIN" | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i}' | while read -r lib; do
  install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
install -d -m 1777 "$root/tmp"
# Same bytes for the same binary: fixed times and owners, sorted entries.
tar -C "$root" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$work/layer.tar" .
"$CRANE" append "${insecure[@]}" --oci-empty-base -f "$work/layer.tar" -t "$REF" >/dev/null 2>&1
digest=$("$CRANE" mutate "${insecure[@]}" "$REF" -t "$REF" --set-platform linux/amd64 \
  --entrypoint /usr/local/bin/ocisync --cmd operator --user 65532:65532 --workdir / 2>/dev/null)
echo "$digest"
