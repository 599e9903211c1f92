#!/usr/bin/env bash
# Every test ocisync has: formatting, lints, unit tests, the integration
# tests against the real registry (distribution 2.8), ferro-oci-server, oras,
# crane and a real kube-apiserver, then the chart installed on a real node
# (kubelet, containerd) with pods reading what ocisync publishes, and the
# demo. Installs what it needs on first run, then reuses it.
#
# Env: CARGO_TARGET_DIR (default /var/tmp/ocisync-target),
#      OCISYNC_TOOLS (default /var/tmp/ocisync/tools),
#      CONTROL_PLANE_PREFIX (default /var/tmp/ocisync/control-plane).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ocisync-target}
export OCISYNC_TOOLS=${OCISYNC_TOOLS:-/var/tmp/ocisync/tools}
[[ -f $HOME/.cargo/env ]] && . "$HOME/.cargo/env"
step() { printf '\n== %s\n' "$*" >&2; }
before=$(mktemp)
e2e/leftovers.sh snapshot "$before"

step "real tools (oras, crane, cosign, docker-registry, kustomize, kubectl, notation) in $OCISYNC_TOOLS"
e2e/setup/install-tools.sh >/dev/null
cat "$OCISYNC_TOOLS/VERSIONS" >&2

step "Kubernetes 1.20 (etcd; kube-apiserver, kubelet, scheduler, controller-manager built from Debian's source package; ~8 min the first time)"
e2e/setup/install-control-plane.sh

step "a node's runtime (containerd 1.6, runc, CNI plugins, busybox from Debian bookworm's packages; a static pause) in ${OCISYNC_NODE:-/var/tmp/ocisync/node}"
e2e/setup/install-node.sh

step "layer producers (skopeo 1.9 and containerd's estargz library, from Debian bookworm's packages) in ${OCISYNC_PRODUCERS:-/var/tmp/ocisync/producers}"
e2e/setup/install-producers.sh

step "mdBook (from crates.io, once) in $OCISYNC_TOOLS"
e2e/setup/install-book.sh >/dev/null

step "admission policy (Kubernetes 1.30+, which the test control plane is not): schemas and CEL"
e2e/setup/install-validators.sh
"${OCISYNC_VALIDATORS:-/var/tmp/ocisync/validators}/bin/python" e2e/check-admission.py

step "Helm chart: lint and render with Helm v4's engine, kubernetes-validate every object, config/rbac in step"
"${OCISYNC_VALIDATORS:-/var/tmp/ocisync/validators}/bin/python" e2e/check-chart.py

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
# The integration tests spend their time waiting on the operator, the API
# server and the registries, not on the CPU: six at once share the one
# control plane and finish in about half the time two would take.
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-6}
cargo test --workspace --all-targets --locked

step "the book: mdbook build docs (its reference pages and Artifacts were checked against the code by cargo test), every internal link and anchor, man pages, its runnable examples (e2e/book-examples.py)"
rm -rf docs/book
RUST_LOG=warn "$OCISYNC_TOOLS/bin/mdbook" build docs
python3 e2e/check-book.py docs/book README.md
"$CARGO_TARGET_DIR/debug/ocisync" docs --man docs/book/man
OCISYNC_BIN=$CARGO_TARGET_DIR/debug/ocisync python3 e2e/book-examples.py
ls docs/book/man | grep -qx 'ocisync-pull.1' || { echo "no man page for ocisync pull" >&2; exit 1; }

step "the Sigstore conformance suite's 140 offline verification cases, through e2e/sigstore-conformance-client"
CONFORMANCE=${OCISYNC_CONFORMANCE:-$ROOT/../shared/conformance}
if [[ -x $CONFORMANCE/run-offline.sh ]]; then
  OCISYNC_BIN=$CARGO_TARGET_DIR/debug/ocisync "$CONFORMANCE/run-offline.sh" e2e/sigstore-conformance-client | tail -3
else
  echo "skipped: no conformance snapshot at $CONFORMANCE (set OCISYNC_CONFORMANCE to one)" >&2
fi

step "the real node: helm install, upgrade, test and uninstall; pods reading ConfigMaps, the agent's emptyDir and the shared volume (e2e/node/test_node.py)"
OCISYNC_BIN=$CARGO_TARGET_DIR/debug/ocisync "${OCISYNC_VALIDATORS:-/var/tmp/ocisync/validators}/bin/python" e2e/node/test_node.py

step "faults on the real node: kills mid-write, a full share, the work dir's limit, a 1 GiB layer under the memory limit, the registry gone, the API server and etcd paused and restarted, a trickling registry, 200 Artifacts through kills, containerd restarted, SIGTERM to the agent (e2e/node/test_faults.py)"
OCISYNC_BIN=$CARGO_TARGET_DIR/debug/ocisync "${OCISYNC_VALIDATORS:-/var/tmp/ocisync/validators}/bin/python" e2e/node/test_faults.py

step "the demo (with the debug build just tested), to completion"
demo_log=$(mktemp)
OCISYNC_BIN=$CARGO_TARGET_DIR/debug/ocisync e2e/demo.sh >"$demo_log" 2>&1 || { tail -40 "$demo_log"; exit 1; }
rm -f "$demo_log"

step "no process left behind by the tests (e2e/leftovers.sh)"
for _ in $(seq 20); do e2e/leftovers.sh check "$before" 2>/dev/null && break; sleep 0.5; done
e2e/leftovers.sh check "$before"
rm -f "$before"
