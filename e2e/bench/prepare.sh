# Sourced by the operator benches: the real tools and the control plane
# installed (once), a release build of ocisync in $OCISYNC, and a local
# distribution 2.8 registry in $REG with its work dir $WORK (prefix $1).
# stop_all (set as the EXIT trap by the caller) cleans up.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ocisync-target}
export OCISYNC_TOOLS=${OCISYNC_TOOLS:-/var/tmp/ocisync/tools}
export PATH=$OCISYNC_TOOLS/bin:$PATH
"$ROOT/e2e/setup/install-tools.sh" >/dev/null
"$ROOT/e2e/setup/install-control-plane.sh" >/dev/null 2>&1
(cd "$ROOT" && cargo build --release -q -p ocisync)
OCISYNC=$CARGO_TARGET_DIR/release/ocisync
WORK=$(mktemp -d "/var/tmp/ocisync-$1.XXXXXX")
. "$ROOT/e2e/setup/registry.sh"
start_registry "$WORK/registry"
