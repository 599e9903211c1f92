#!/usr/bin/env bash
# Every test ocisync has: formatting, lints, unit tests, and the integration
# tests against the real registry (distribution 2.8), ferro-oci-server, oras
# and crane. Installs what it needs on first run, then reuses it.
#
# Env: CARGO_TARGET_DIR (default /var/tmp/ocisync-target),
#      OCISYNC_TOOLS (default /var/tmp/ocisync/tools).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ocisync-target}
export OCISYNC_TOOLS=${OCISYNC_TOOLS:-/var/tmp/ocisync/tools}
[[ -f $HOME/.cargo/env ]] && . "$HOME/.cargo/env"
step() { printf '\n== %s\n' "$*" >&2; }

step "real tools (oras, crane, cosign, docker-registry, kustomize) in $OCISYNC_TOOLS"
e2e/setup/install-tools.sh >/dev/null
cat "$OCISYNC_TOOLS/VERSIONS" >&2

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --all-targets --locked
