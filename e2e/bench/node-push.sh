#!/usr/bin/env bash
# Push -> file in a running container on the real node (e2e/node/bench_push.py):
# through a ConfigMap volume with the kubelet's syncFrequency at 1m and 10s,
# and through the agent sidecar. Installs what it needs, like e2e/test.sh.
# Env: PUSHES (default 10), OCISYNC_BIN (default: a release build).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ocisync-target}
[[ -f $HOME/.cargo/env ]] && . "$HOME/.cargo/env"
"$ROOT/e2e/setup/install-tools.sh" >/dev/null
"$ROOT/e2e/setup/install-control-plane.sh" >/dev/null
"$ROOT/e2e/setup/install-node.sh"
"$ROOT/e2e/setup/install-validators.sh"
if [[ -z ${OCISYNC_BIN:-} ]]; then
  (cd "$ROOT" && cargo build --release --locked -q -p ocisync)
  export OCISYNC_BIN=$CARGO_TARGET_DIR/release/ocisync
fi
exec "${OCISYNC_VALIDATORS:-/var/tmp/ocisync/validators}/bin/python" "$ROOT/e2e/node/bench_push.py"
