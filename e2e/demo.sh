#!/usr/bin/env bash
# The local demo: a real registry on loopback, an artifact pushed with oras,
# and `ocisync pull` writing its selected files. Run from a fresh clone:
#
#   e2e/demo.sh
#
# Everything it starts is stopped when it ends. Env: CARGO_TARGET_DIR,
# OCISYNC_TOOLS (see e2e/test.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ocisync-target}
export OCISYNC_TOOLS=${OCISYNC_TOOLS:-/var/tmp/ocisync/tools}
[[ -f $HOME/.cargo/env ]] && . "$HOME/.cargo/env"
BIN=$OCISYNC_TOOLS/bin
say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }

say "installing the real tools and building ocisync (first run only takes a while)"
"$ROOT/e2e/setup/install-tools.sh" >/dev/null
(cd "$ROOT" && cargo build --release -q -p ocisync)
OCISYNC=$CARGO_TARGET_DIR/release/ocisync

WORK=$(mktemp -d /tmp/ocisync-demo.XXXXXX)
. "$ROOT/e2e/setup/registry.sh"
start_registry "$WORK/registry"
trap 'kill $REG_PID 2>/dev/null; wait $REG_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
REF=$REG/platform/app-config
say "registry (distribution 2.8) on $REG"

mkdir -p "$WORK/src/conf.d"
cat > "$WORK/src/app.yaml" <<'YAML'
replicas: 3
image: example.com/app:1.4.2
YAML
echo 'log_level = "info"' > "$WORK/src/conf.d/logging.toml"
echo 'timeout_ms = 2500' > "$WORK/src/conf.d/http.toml"
echo '# Notes that should not reach the cluster' > "$WORK/src/README.md"
say "oras push $REF:v1"
(cd "$WORK/src" && "$BIN/oras" push --plain-http "$REF:v1" app.yaml:application/yaml conf.d/ README.md:text/markdown)

say "ocisync resolve $REF:v1   (one HEAD request)"
"$OCISYNC" resolve --insecure "oci://$REF:v1"

say "ocisync pull oci://$REF:v1 --select '*.yaml' --select 'conf.d/**' --out $WORK/out"
"$OCISYNC" pull --insecure "oci://$REF:v1" --select '*.yaml' --select 'conf.d/**' --out "$WORK/out"

say "the files"
(cd "$WORK/out" && for f in $(find . -type f | sort); do echo "--- ${f#./}"; cat "$f"; done)
