#!/usr/bin/env bash
# Python checkers for manifests the test control plane (Kubernetes 1.20)
# cannot serve: kubernetes-validate (the API's OpenAPI schemas, 1.25 to
# 1.37), cel-python (to evaluate a ValidatingAdmissionPolicy's CEL on sample
# objects), and helm-python-sdk (Helm v4's engine, to lint and render the
# chart, whose RBAC the e2e suite runs the operator under), and
# sigstore-python (the independent verifier that cross-checks every bundle
# e2e/virtual-sigstore.py makes). Installed from PyPI into a private venv,
# pinned; skipped when already there.
#
# Env: OCISYNC_VALIDATORS (default /var/tmp/ocisync/validators)
set -euo pipefail
PREFIX=${OCISYNC_VALIDATORS:-/var/tmp/ocisync/validators}
PINS=(kubernetes-validate==1.37.0 cel-python==0.5.0 helm-python-sdk==0.2.2 sigstore==4.5.1)
if [[ -f $PREFIX/PINS ]] && [[ "$(cat "$PREFIX/PINS")" == "${PINS[*]}" ]]; then
  exit 0
fi
rm -rf "$PREFIX"
python3 -m venv "$PREFIX"
"$PREFIX/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}"
echo "${PINS[*]}" > "$PREFIX/PINS"
