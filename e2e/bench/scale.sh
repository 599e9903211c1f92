#!/usr/bin/env bash
# Scale benchmark of the operator on a real control plane: N Artifacts
# (default 1000) following TAGS tags (default 10) of one artifact in a local
# distribution 2.8 registry, spread over NAMESPACES namespaces (default 1),
# every namespace following every tag, each Artifact into its own ConfigMap.
#
#   e2e/bench/scale.sh           # prints a markdown table (README "Performance")
#
# Measures: time from `kubectl create` until every Artifact is Ready; the
# operator's peak RSS (VmHWM); CPU seconds per steady-state reconcile and
# registry HEADs per interval, over a window of WINDOW intervals after all are
# Ready (from /proc and the operator's /metrics).
#
# Env: N, TAGS, NAMESPACES, INTERVAL (default 30s), WINDOW (default 3), CARGO_TARGET_DIR,
# OCISYNC_TOOLS, CONTROL_PLANE_PREFIX.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
N=${N:-1000} TAGS=${TAGS:-10} NAMESPACES=${NAMESPACES:-1} INTERVAL=${INTERVAL:-30} WINDOW=${WINDOW:-3}
log() { echo "[scale] $*" >&2; }
. "$HERE/prepare.sh" scale
OP_PID=
trap stop_all EXIT

log "pushing $TAGS tags"
mkdir -p "$WORK/src"
for t in $(seq "$TAGS"); do
  printf 'tag: %s\nreplicas: 3\n' "$t" > "$WORK/src/app.yaml"
  (cd "$WORK/src" && oras push --plain-http "$REG/scale/app:t$t" app.yaml >/dev/null)
done

KUBECONFIG=$("$ROOT/e2e/setup/start-control-plane.sh" "$WORK/cp") # fails the script, unlike `export X=$(…)`
export KUBECONFIG
"$ROOT/e2e/setup/operator-access.sh" "$WORK/operator.kubeconfig"
for n in $(seq "$NAMESPACES"); do kubectl create namespace "scale-$n" >/dev/null; done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
KUBECONFIG="$WORK/operator.kubeconfig" OCISYNC_LOG=warn "$OCISYNC" operator --work-dir "$WORK/work" \
  --metrics-addr "127.0.0.1:$port" 2>"$WORK/operator.log" &
OP_PID=$!
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.2; done

for i in $(seq "$N"); do
  cat <<YAML
---
apiVersion: ocisync.dev/v1alpha1
kind: Artifact
metadata: {name: a$i, namespace: scale-$(( (i / TAGS) % NAMESPACES + 1 ))}
spec: {url: "oci://$REG/scale/app", ref: {tag: "t$(( (i % TAGS) + 1 ))"}, insecure: true, interval: ${INTERVAL}s}
YAML
done > "$WORK/artifacts.yaml"

log "creating $N Artifacts"
t0=$(date +%s.%N)
kubectl create -f "$WORK/artifacts.yaml" >/dev/null
ready() { kubectl get artifacts -A -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true; }
while (( $(ready) < N )); do
  kill -0 "$OP_PID" || { tail -20 "$WORK/operator.log" >&2; exit 1; }
  sleep 1
done
t1=$(date +%s.%N)
all_ready=$(echo "$t1 - $t0" | bc)
log "all $N Ready in ${all_ready}s; steady state for $WINDOW intervals of ${INTERVAL}s"

metric() { curl -sf "http://127.0.0.1:$port/metrics" | awk -v p="$1" 'index($0, p) == 1 {s += $NF} END {print s + 0}'; }
cpu() { awk '{print $14 + $15}' "/proc/$OP_PID/stat"; }
# let the burst of creation settle into the steady rhythm first
sleep "$INTERVAL"
r0=$(metric 'ocisync_reconciles_total'); h0=$(metric 'ocisync_registry_requests_total{method="HEAD"'); g0=$(metric 'ocisync_registry_requests_total{method="GET"'); c0=$(cpu)
sleep $(( INTERVAL * WINDOW ))
r1=$(metric 'ocisync_reconciles_total'); h1=$(metric 'ocisync_registry_requests_total{method="HEAD"'); g1=$(metric 'ocisync_registry_requests_total{method="GET"'); c1=$(cpu)
ticks=$(getconf CLK_TCK)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$OP_PID/status")
reconciles=$(echo "$r1 - $r0" | bc)
cpu_per=$(echo "scale=6; ($c1 - $c0) / $ticks / $reconciles" | bc)
heads_per=$(echo "scale=1; ($h1 - $h0) / $WINDOW" | bc)
gets=$(echo "$g1 - $g0" | bc)

echo "| measure | result | target |"
echo "| --- | --- | --- |"
printf '| %s Artifacts, %s tags, %s namespace(s): created → all Ready | %.1f s | ≤ 120 s |\n' "$N" "$TAGS" "$NAMESPACES" "$all_ready"
echo "| operator peak RSS | $(( rss / 1024 )) MiB | < 64 MiB |"
printf '| CPU per steady-state reconcile | %.2f ms (%s reconciles in %s intervals) | |\n' "$(echo "$cpu_per * 1000" | bc)" "$reconciles" "$WINDOW"
echo "| registry HEADs per ${INTERVAL}s interval | $heads_per ($TAGS distinct tags) | ≤ $TAGS |"
echo "| registry GETs in the steady window | $gets | 0 |"
echo
echo "ocisync $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), kube-apiserver 1.20.2, $(nproc) cores"
