#!/usr/bin/env bash
# Install what a node runs besides the kubelet (which install-control-plane.sh
# builds with kube-apiserver), into a private prefix, from Debian bookworm's
# packages (unpacked, never installed into the system), through
# install-tools.sh's private apt configuration:
#
#   containerd 1.6        CRI runtime (containerd, containerd-shim-runc-v2, ctr)
#   runc 1.1              OCI runtime
#   containernetworking-plugins 1.1   CNI bridge, host-local, loopback
#   busybox-static        the consumer pods' shell, cat and sha256sum
#   pause                 e2e/node/pause.c, built static with gcc: the pod
#                         sandbox image's one file
#
# Result: $OCISYNC_NODE/bin/{containerd,containerd-shim-runc-v2,ctr,runc},
#         $OCISYNC_NODE/cni/ (the plugins), $OCISYNC_NODE/images/{pause,busybox}
#         (the files of the images start-cluster.sh pushes)
# Env:    OCISYNC_NODE (default /var/tmp/ocisync/node)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=${OCISYNC_NODE:-/var/tmp/ocisync/node}

OCISYNC_TOOLS=$PREFIX REALTOOLS_SUITE=bookworm REALTOOLS_APT_DIR=$PREFIX/apt \
  REALTOOLS_PACKAGES="containerd runc containernetworking-plugins busybox-static" "$HERE/install-tools.sh" >/dev/null
ln -sfn pkgs/containernetworking-plugins/usr/lib/cni "$PREFIX/cni"
mkdir -p "$PREFIX/images"
ln -sfn ../pkgs/busybox-static/bin/busybox "$PREFIX/images/busybox"

src=$HERE/../node/pause.c
stamp=$PREFIX/images/.pause.sha256
want=$(sha256sum "$src" | cut -d' ' -f1)
if [[ ! -x $PREFIX/images/pause || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  gcc -Os -static -o "$PREFIX/images/pause" "$src"
  echo "$want" >"$stamp"
fi
