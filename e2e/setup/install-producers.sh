#!/usr/bin/env bash
# Install the layer producers ocisync's layer-format tests read from, into a
# private prefix, from Debian bookworm's packages (unpacked, never installed
# into the system), through install-tools.sh's private apt configuration:
#
#   skopeo 1.9.3      gzip, zstd and zstd:chunked layers (containers/storage)
#   estargz-write     e2e/estargz/: containerd's stargz-snapshotter `estargz`
#                     library (Debian's golang-github-containerd-stargz-
#                     snapshotter-dev) writing eStargz and its zstd:chunked
#                     variant; built offline in GOPATH mode with Debian's Go
#
#   docker-credential-pass 0.6.4 (golang-docker-credential-helpers), with
#                     pass and tree: the credential helper the CLI tests read
#                     a password from
#   tinyproxy 1.11    (tinyproxy-bin) the HTTP proxy the proxy tests go through
#
# Result: $OCISYNC_PRODUCERS/bin/{skopeo,docker-credential-pass,pass,tree,tinyproxy},
#         $OCISYNC_PRODUCERS/gobin/estargz-write
# Env:    OCISYNC_PRODUCERS (default /var/tmp/ocisync/producers)
# Needs:  `go` on PATH (install-control-plane.sh installs golang-go).
# System changes: at most `apt-get install zstd libcap2-bin` where missing.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=${OCISYNC_PRODUCERS:-/var/tmp/ocisync/producers}

# The tests also run GNU tar, zstd, setcap, gpg and openssl (the Notation
# tests' PKI and timestamp authority), which Debian's base images carry; a
# machine without them gets them from its own apt sources.
for pair in zstd:zstd setcap:libcap2-bin gpg:gpg openssl:openssl; do
  command -v "${pair%%:*}" >/dev/null ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pair#*:}" >/dev/null
done

# Libraries first: skopeo's wrapper finds libgpgme11 among them.
GO_DEPS="golang-github-containerd-stargz-snapshotter-dev golang-github-klauspost-compress-dev
  golang-github-opencontainers-go-digest-dev golang-github-vbatts-tar-split-dev golang-github-pkg-errors-dev
  golang-golang-x-sync-dev golang-github-cespare-xxhash-dev"
OCISYNC_TOOLS=$PREFIX REALTOOLS_SUITE=bookworm REALTOOLS_APT_DIR=$PREFIX/apt \
  REALTOOLS_PACKAGES="libgpgme11 skopeo golang-docker-credential-helpers pass tree tinyproxy-bin $(echo $GO_DEPS)" "$HERE/install-tools.sh" >/dev/null

src=$HERE/../estargz/main.go
stamp=$PREFIX/gobin/.estargz-write.sha256
want=$(sha256sum "$src" | cut -d' ' -f1)
if [[ -x $PREFIX/gobin/estargz-write && -f $stamp && $(cat "$stamp") == "$want" ]]; then
  exit 0
fi
command -v go >/dev/null || { echo "install-producers: no go on PATH (run install-control-plane.sh)" >&2; exit 1; }
gopath=""
for p in $GO_DEPS; do gopath+="$PREFIX/pkgs/$p/usr/share/gocode:"; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/estargz-write" "$PREFIX/gobin"
cp "$src" "$work/src/estargz-write/"
(cd "$work/src/estargz-write" &&
  GO111MODULE=off GOPATH="$work:${gopath%:}" GOCACHE=$work/cache GOPROXY=off \
    go build -o "$PREFIX/gobin/estargz-write" .)
echo "$want" >"$stamp"
