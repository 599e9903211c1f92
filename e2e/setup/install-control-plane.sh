#!/usr/bin/env bash
# Install Kubernetes into a prefix, using only Debian packages: a control
# plane (etcd + kube-apiserver; the same shape as controller-runtime's
# envtest, what start-control-plane.sh runs) and the binaries a node adds
# (kubelet, kube-scheduler, kube-controller-manager; start-cluster.sh):
#   - etcd:           binary package etcd-server from Debian bookworm (3.4.x),
#                     unpacked with dpkg -x (no service is installed/started)
#   - kube-apiserver, kubelet, kube-scheduler, kube-controller-manager:
#                     built in one `go build` from Debian bookworm's *source*
#                     package `kubernetes` (1.20.5+really1.20.2-...: full
#                     upstream 1.20.2 tree incl. vendor/) with Debian's Go
#
# Usage: install-control-plane.sh
#   then: start-control-plane.sh DIR / stop-control-plane.sh DIR, or
#         start-cluster.sh DIR / stop-cluster.sh DIR (with install-node.sh)
#   (the three build fixes are explained inline below)
#
# Env:
#   CONTROL_PLANE_PREFIX  install prefix (default /var/tmp/ocisync/control-plane);
#                         binaries go to $CONTROL_PLANE_PREFIX/bin
#   CONTROL_PLANE_WORK    scratch dir (default /var/tmp/ocisync/control-plane-build);
#                         holds the private apt config and the build tree
#   K8S_DEB_VERSION       Debian version of source package `kubernetes`
#                         (default 1.20.5+really1.20.2-1.1+deb12u1)
#   ETCD_DEB_VERSION      Debian version of etcd-server (default: the
#                         candidate in bookworm)
#   KEEP_BUILD_DIR=1      keep the unpacked source + Go cache after building
#
# Idempotent: the four are only built when one is missing or they were built
# from a different K8S_DEB_VERSION/RECIPE (stamp file), etcd is only fetched
# when missing/different. A second run takes ~0.3 s. A full build: ~7 min
# wall on 2 cores (429 s measured, 2026-12-03), peak RSS ~1.7 GB.
#
# System changes: at most `apt-get install golang-go` when no `go` is on PATH.
# The system apt sources are never touched: package indexes are fetched with
# a private apt config under $CONTROL_PLANE_WORK/apt.
# Needs: apt-get, dpkg, tar, flock (util-linux), ~3 GB free under
# $CONTROL_PLANE_WORK while building.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

PREFIX=${CONTROL_PLANE_PREFIX:-/var/tmp/ocisync/control-plane}
WORK=${CONTROL_PLANE_WORK:-/var/tmp/ocisync/control-plane-build}
K8S_DEB_VERSION=${K8S_DEB_VERSION:-1.20.5+really1.20.2-1.1+deb12u1}
ETCD_DEB_VERSION=${ETCD_DEB_VERSION:-}

mkdir -p "$PREFIX/bin" "$WORK"
PREFIX=$(cd "$PREFIX" && pwd)
WORK=$(cd "$WORK" && pwd)

# Serialise concurrent runs on the same machine (flock is in util-linux).
exec 9>"$PREFIX/.install.lock"
flock 9

log() { echo "[install-control-plane] $*" >&2; }

# ---------------------------------------------------------------------------
# Private apt config (bookworm deb + deb-src); never alters /etc/apt.
# ---------------------------------------------------------------------------
APTDIR=$WORK/apt
APTQ=(-o "Dir::Etc::sourcelist=$APTDIR/sources.list" -o "Dir::Etc::sourceparts=-"
      -o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache"
      -o "APT::Sandbox::User=root" -o "Acquire::Languages=none")
apt_ready=0
private_apt() {
  if [[ $apt_ready == 0 ]]; then
    mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial"
    local archive
    archive=${CONTROL_PLANE_ARCHIVE:-$("$HERE/debian-archive-uri.sh")}
    printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s bookworm main\ndeb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s bookworm main\n' "$archive" "$archive" > "$APTDIR/sources.list"
    log "apt-get update (private lists in $APTDIR)"
    apt-get "${APTQ[@]}" -qq update
    apt_ready=1
  fi
}

# ---------------------------------------------------------------------------
# etcd (Debian etcd-server, unpacked; no maintainer scripts run)
# ---------------------------------------------------------------------------
etcd_stamp=$PREFIX/bin/.etcd.debver
if [[ -x $PREFIX/bin/etcd && -f $etcd_stamp && ( -z $ETCD_DEB_VERSION || "$(cat "$etcd_stamp")" == "$ETCD_DEB_VERSION" ) ]]; then
  log "etcd already installed ($(cat "$etcd_stamp")), skipping"
else
  private_apt
  if [[ -z $ETCD_DEB_VERSION ]]; then
    ETCD_DEB_VERSION=$(apt-cache "${APTQ[@]}" policy etcd-server | awk '/Candidate:/ {print $2}')
  fi
  d=$WORK/etcd-deb
  rm -rf "$d" && mkdir -p "$d"
  (cd "$d" && apt-get "${APTQ[@]}" -qq download "etcd-server=$ETCD_DEB_VERSION" "etcd-client=$ETCD_DEB_VERSION")
  for deb in "$d"/*.deb; do dpkg -x "$deb" "$d/root"; done
  install -m 0755 "$d/root/usr/bin/etcd" "$d/root/usr/bin/etcdctl" "$PREFIX/bin/"
  echo "$ETCD_DEB_VERSION" > "$etcd_stamp"
  rm -rf "$d"
fi

# ---------------------------------------------------------------------------
# kube-apiserver from Debian's kubernetes source package
# ---------------------------------------------------------------------------
# Bump RECIPE when the build steps below change, to force a rebuild.
# Recipe 3 adds the node's binaries (kubelet, kube-scheduler,
# kube-controller-manager) to the same build: one tree, one Go cache.
RECIPE=3
K8S_BINARIES="kube-apiserver kubelet kube-scheduler kube-controller-manager"
api_stamp=$PREFIX/bin/.kube-apiserver.debver
all_built() { local b; for b in $K8S_BINARIES; do [[ -x $PREFIX/bin/$b ]] || return 1; done; }
if all_built && [[ -f $api_stamp && "$(cat "$api_stamp")" == "$K8S_DEB_VERSION recipe=$RECIPE" ]]; then
  log "$K8S_BINARIES already built from kubernetes $K8S_DEB_VERSION, skipping"
else
  # Go toolchain: any Go >= 1.15 that still supports GOPATH mode works;
  # bookworm's golang-go (1.19) is the default. (1.22/1.23 from
  # bookworm-backports also work: put them first in PATH.)
  if ! command -v go >/dev/null; then
    log "installing golang-go via apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends golang-go >/dev/null ||
      { apt-get -qq update && apt-get install -y -qq --no-install-recommends golang-go >/dev/null; }
  fi
  private_apt
  src=$WORK/src
  rm -rf "$src" && mkdir -p "$src"
  (cd "$src" && apt-get "${APTQ[@]}" -qq source --download-only "kubernetes=$K8S_DEB_VERSION")
  orig=$(ls "$src"/kubernetes_*.orig.tar.gz)
  log "unpacking $(basename "$orig")"
  tar -C "$src" -xzf "$orig"
  tree=$(ls -d "$src"/kubernetes-*/)
  tree=${tree%/}
  K8S_VERSION=v${tree##*/kubernetes-}          # e.g. v1.20.2
  # Debian's patches (debian/patches) only touch kubectl/cli-runtime
  # printing code, so the pristine orig tree is used for kube-apiserver.

  # Fix 1 (Go >= 1.18): the vendored github.com/modern-go/reflect2 v1.0.1
  # links against the pre-1.18 reflect.mapiterinit signature; kube-apiserver
  # then dies with "fatal error: fault" (json-iterator map encoding) on the
  # first custom-resource write. Replace it with reflect2 1.0.2 (the upstream
  # fix) taken from Debian's golang-github-modern-go-reflect2-dev (unpacked,
  # not installed).
  r2=$WORK/reflect2-deb
  rm -rf "$r2" && mkdir -p "$r2"
  (cd "$r2" && apt-get "${APTQ[@]}" -qq download golang-github-modern-go-reflect2-dev)
  dpkg -x "$r2"/golang-github-modern-go-reflect2-dev_*.deb "$r2/root"
  v=$tree/vendor/github.com/modern-go/reflect2
  rm -f "$v"/*.go "$v"/*.s
  cp "$r2"/root/usr/share/gocode/src/github.com/modern-go/reflect2/*.{go,s} "$v/"
  rm -rf "$r2"

  # Kubernetes <= 1.24 is built in GOPATH mode (upstream hack/lib/init.sh sets
  # GO111MODULE=off); `go build -mod=vendor` in module mode fails with
  # "updates to go.mod needed, disabled by -mod=vendor". Mimic upstream:
  # $GOPATH/src/k8s.io/kubernetes -> source tree (as debian/rules does).
  export GOPATH=$WORK/gopath GOCACHE=$WORK/gocache GO111MODULE=off GOFLAGS= \
         CGO_ENABLED=0 GOTOOLCHAIN=local GOPROXY=off
  mkdir -p "$GOPATH/src/k8s.io"
  ln -sfn "$tree" "$GOPATH/src/k8s.io/kubernetes"
  cd "$GOPATH/src/k8s.io/kubernetes"

  # Fix 2: pkg/generated/openapi/zz_generated.openapi.go is not in the
  # release tarball (upstream's `make` generates it, see
  # Makefile.generated_files gen_openapi). Generate it the same way: run the
  # vendored openapi-gen over every dir with a +k8s:openapi-gen= tag, minus
  # code-generator and sample-apiserver.
  log "generating pkg/generated/openapi with the vendored openapi-gen"
  go build -o "$WORK/openapi-gen" k8s.io/kubernetes/vendor/k8s.io/kube-openapi/cmd/openapi-gen
  dirs=$(set +o pipefail; find -H . \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune -o -type f -name '*.go' -print0 |
           xargs -0 grep -l --color=never '^// *+k8s:' | xargs grep -l --color=never '+k8s:openapi-gen=' |
           sed -e 's|^\./||' -e 's|/[^/]*$||' -e 's|^staging/src/|vendor/|' |
           grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' |
           LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
  "$WORK/openapi-gen" --logtostderr -i "$dirs" -p k8s.io/kubernetes/pkg/generated/openapi \
    -O zz_generated.openapi -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
    -r "$WORK/openapi-violations.report" 2> "$WORK/openapi-gen.log"
  # same input set as upstream <=> same API-rule violation report
  cmp -s "$WORK/openapi-violations.report" api/api-rules/violation_exceptions.list ||
    log "WARNING: openapi-gen violation report differs from api/api-rules/violation_exceptions.list"

  # Version info normally injected by hack/lib/version.sh (both packages,
  # otherwise /version reports major "" / minor "" / v0.0.0-master).
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  ldflags="-s -w"
  for V in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
    ldflags+=" -X $V.gitVersion=$K8S_VERSION -X $V.gitMajor=1 -X $V.gitMinor=$minor -X $V.gitTreeState=clean"
    ldflags+=" -X $V.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  log "building $K8S_BINARIES $K8S_VERSION with $(go version) (~15-20 min on 2 cores, ~1.7 GB RAM)"
  start=$(date +%s)
  out=$PREFIX/bin/.build
  rm -rf "$out" && mkdir -p "$out"
  # Static (CGO_ENABLED=0) like the rest: the kubelet's cgo parts in 1.20
  # are only the optional journald and CPU-manager helpers.
  go build -trimpath -ldflags "$ldflags" -o "$out/" $(printf 'k8s.io/kubernetes/cmd/%s ' $K8S_BINARIES)
  cd /
  for b in $K8S_BINARIES; do mv -f "$out/$b" "$PREFIX/bin/$b"; done
  rmdir "$out"
  echo "$K8S_DEB_VERSION recipe=$RECIPE" > "$api_stamp"
  log "build took $(( $(date +%s) - start )) s"
  if [[ ${KEEP_BUILD_DIR:-0} != 1 ]]; then
    chmod -R u+w "$WORK/gopath" "$WORK/gocache" 2>/dev/null || true
    rm -rf "$src" "$WORK/gopath" "$WORK/gocache" "$WORK/openapi-gen"
  fi
fi

echo "prefix:         $PREFIX"
echo "etcd:           $("$PREFIX/bin/etcd" --version | head -1) (Debian $(cat "$etcd_stamp"))"
for b in $K8S_BINARIES; do
  printf "%-25s%s (Debian kubernetes %s)\n" "$b:" "$("$PREFIX/bin/$b" --version)" "$(cat "$api_stamp")"
done
