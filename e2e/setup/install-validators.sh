#!/usr/bin/env bash
# Python checkers for manifests the test control plane (Kubernetes 1.20)
# cannot serve: kubernetes-validate (the API's OpenAPI schemas, up to 1.37)
# and cel-python (to evaluate a ValidatingAdmissionPolicy's CEL on sample
# objects). Installed from PyPI into a private venv, pinned; skipped when
# already there.
#
# Env: OCISYNC_VALIDATORS (default /var/tmp/ocisync/validators)
set -euo pipefail
PREFIX=${OCISYNC_VALIDATORS:-/var/tmp/ocisync/validators}
PINS=(kubernetes-validate==1.37.0 cel-python==0.5.0)
if [[ -f $PREFIX/PINS ]] && [[ "$(cat "$PREFIX/PINS")" == "${PINS[*]}" ]]; then
  exit 0
fi
rm -rf "$PREFIX"
python3 -m venv "$PREFIX"
"$PREFIX/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}"
echo "${PINS[*]}" > "$PREFIX/PINS"
