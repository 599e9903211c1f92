#!/usr/bin/env bash
# Prepare a control plane for the operator, as a cluster admin would: the
# CRDs, the ocisync-system namespace, and the ServiceAccount and RBAC that
# the Helm chart renders (with the real Helm engine, release "ocisync");
# then write a kubeconfig with the token of that ServiceAccount (not admin)
# to OUT.
#
# Usage: KUBECONFIG=admin-kubeconfig operator-access.sh OUT
# Needs kubectl and kustomize on PATH.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:?usage: $0 OUT-KUBECONFIG}
kubectl apply --server-side --force-conflicts -k "$ROOT/crds" >/dev/null
kubectl get namespace ocisync-system >/dev/null 2>&1 || kubectl create namespace ocisync-system >/dev/null
"$ROOT/e2e/setup/install-validators.sh"
"${OCISYNC_VALIDATORS:-/var/tmp/ocisync/validators}/bin/python" "$ROOT/e2e/check-chart.py" render-rbac ocisync-system |
  kubectl apply -f - >/dev/null
kubectl wait --for=condition=Established crd/artifacts.ocisync.dev crd/clusterartifactpolicies.ocisync.dev --timeout=30s >/dev/null
token=$(kubectl create token ocisync -n ocisync-system --duration 2h)
server=$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.server}')
ca=$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
cat > "$OUT" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: cluster
  cluster: {server: "$server", certificate-authority-data: "$ca"}
users:
- name: ocisync
  user: {token: "$token"}
contexts:
- name: ocisync
  context: {cluster: cluster, user: ocisync}
current-context: ocisync
YAML
chmod 600 "$OUT"
