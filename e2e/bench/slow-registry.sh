#!/usr/bin/env bash
# Fairness benchmark: do Artifacts on a drip-feeding registry (one byte every
# 5 s, never done) delay the others? On a real control plane, HEALTHY
# Artifacts (default 100) on a local distribution 2.8 registry are created
# and timed to all Ready: once alone, once while SLOW Artifacts (default 8,
# spec.timeout 60s) hang on the drip registry, and once more with the
# per-registry cap lifted (--max-per-registry = --concurrency), as before it
# existed.
#
#   e2e/bench/slow-registry.sh     # prints a markdown table (docs/src/operations/security.md)
#
# Env: HEALTHY, SLOW, CARGO_TARGET_DIR, OCISYNC_TOOLS, CONTROL_PLANE_PREFIX.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
HEALTHY=${HEALTHY:-100} SLOW=${SLOW:-8}
log() { echo "[slow] $*" >&2; }
. "$HERE/prepare.sh" slow
OP_PID= DRIP_PID=
cleanup() { [[ -n $DRIP_PID ]] && kill "$DRIP_PID" 2>/dev/null; stop_all; }
trap cleanup EXIT
drip=$(free_port)
python3 "$HERE/drip-registry.py" "$drip" 5 &
DRIP_PID=$!

printf 'replicas: 3\n' > "$WORK/app.yaml"
(cd "$WORK" && oras push --plain-http "$REG/fair/app:v1" app.yaml >/dev/null)
KUBECONFIG=$("$ROOT/e2e/setup/start-control-plane.sh" "$WORK/cp") # fails the script, unlike `export X=$(…)`
export KUBECONFIG
"$ROOT/e2e/setup/operator-access.sh" "$WORK/operator.kubeconfig"

artifacts() { # NAMESPACE PREFIX COUNT URL TIMEOUT
  for i in $(seq "$3"); do
    printf -- '---\napiVersion: ocisync.dev/v1alpha1\nkind: Artifact\nmetadata: {name: %s%s, namespace: %s, labels: {round: %s}}\n' "$2" "$i" "$1" "$1"
    printf 'spec: {url: "oci://%s", ref: {tag: v1}, insecure: true, interval: 10m, timeout: %s}\n' "$4" "$5"
  done
}

round() { # NAME SLOW-COUNT OPERATOR-ARGS...
  local name=$1 slow=$2; shift 2
  local port; port=$(free_port)
  kubectl create namespace "$name" >/dev/null
  KUBECONFIG="$WORK/operator.kubeconfig" OCISYNC_LOG=warn "$OCISYNC" operator --work-dir "$WORK/work-$name" \
    --leader-elect=false --watch-label-selector "round=$name" --metrics-addr "127.0.0.1:$port" "$@" \
    2>"$WORK/operator-$name.log" &
  OP_PID=$!
  local deadline=$(( $(date +%s) + 300 ))
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
    (( $(date +%s) < deadline )) || { tail -20 "$WORK/operator-$name.log" >&2; exit 1; }
    sleep 0.2
  done
  if (( slow > 0 )); then
    artifacts "$name" slow- "$slow" "127.0.0.1:$drip/fair/app" 60s | kubectl create -f - >/dev/null
  fi
  # the same start for every round: the operator's watches settled, and
  # the hanging syncs (if any) holding their slots
  sleep 3
  local t0 t1
  t0=$(date +%s.%N)
  artifacts "$name" app- "$HEALTHY" "$REG/fair/app" 2m | kubectl create -f - >/dev/null
  while (( $(ready_count "$name") < HEALTHY )); do
    (( $(date +%s) < deadline )) || { log "not all Ready within 300 s"; exit 1; }
    sleep 0.2
  done
  t1=$(date +%s.%N)
  kill "$OP_PID"; wait "$OP_PID" 2>/dev/null || true; OP_PID=
  echo "$t1 - $t0" | bc
}

log "healthy alone"
alone=$(round alone 0)
log "with $SLOW on the drip registry"
shared=$(round shared "$SLOW")
log "with $SLOW on the drip registry, no per-registry cap"
uncapped=$(round uncapped "$SLOW" --max-per-registry 8)

echo "| $HEALTHY healthy Artifacts: created → all Ready | seconds |"
echo "| --- | --- |"
printf '| alone | %.1f |\n' "$alone"
printf '| while %s Artifacts hang on a drip-feeding registry | %.1f |\n' "$SLOW" "$shared"
printf '| the same, per-registry cap lifted (--max-per-registry 8) | %.1f |\n' "$uncapped"
echo
echo "ocisync $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), --concurrency 8, kube-apiserver 1.20.2, $(nproc) cores"
