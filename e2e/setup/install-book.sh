#!/usr/bin/env bash
# mdBook, the Rust ecosystem's book tool, from crates.io (pinned, built
# once with cargo install, without its `serve` and `watch` features), into
# $OCISYNC_TOOLS/bin; skipped when that version is already there.
#
# Env: OCISYNC_TOOLS (default /var/tmp/ocisync/tools)
set -euo pipefail
PREFIX=${OCISYNC_TOOLS:-/var/tmp/ocisync/tools}
VERSION=0.5.4
if [[ -x $PREFIX/bin/mdbook ]] && [[ $("$PREFIX/bin/mdbook" --version) == "mdbook v$VERSION" ]]; then
  exit 0
fi
[[ -f $HOME/.cargo/env ]] && . "$HOME/.cargo/env"
# its own target dir: not the project's, and removed afterwards
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
CARGO_TARGET_DIR=$work cargo install --quiet --locked mdbook --version "$VERSION" \
  --no-default-features --features search --root "$PREFIX"
rm -f "$PREFIX/.crates.toml" "$PREFIX/.crates2.json"
"$PREFIX/bin/mdbook" --version
