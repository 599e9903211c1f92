#!/usr/bin/env bash
# Scale benchmark of the operator on a real control plane: N Artifacts
# (default 1000) following TAGS tags (default 10) of one artifact in a local
# distribution 2.8 registry, spread over NAMESPACES namespaces (default 1),
# every namespace following every tag, each Artifact into its own ConfigMap.
#
#   e2e/bench/scale.sh           # prints a markdown table (docs/src/operations/performance.md)
#
# Measures: time from the first `kubectl create` (CREATORS clients at once)
# until every Artifact is Ready, by each Ready condition's lastTransitionTime;
# the operator's peak RSS (VmHWM) and its RSS over time; the CPU etcd, the API
# server and the operator used meanwhile; the API server's requests and their
# summed latency by verb and resource (its /metrics); then, over a window of
# WINDOW intervals after all are Ready, CPU per steady-state reconcile,
# registry HEADs per interval and GETs (the operator's /metrics) and API
# writes (the API server's).
#
# Env: N, TAGS, NAMESPACES, INTERVAL (default 30s), WINDOW (default 3),
# CREATORS (default 4), OPERATOR_ARGS (extra operator flags), OPERATOR_WORK
# (its work dir; default under the bench's directory), CARGO_TARGET_DIR,
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
port=$(free_port)
KUBECONFIG="$WORK/operator.kubeconfig" OCISYNC_LOG=warn "$OCISYNC" operator --work-dir "${OPERATOR_WORK:-$WORK/work}" \
  --metrics-addr "127.0.0.1:$port" ${OPERATOR_ARGS:-} 2>"$WORK/operator.log" &
OP_PID=$!
wait_readyz "$port"

CREATORS=${CREATORS:-4}
for i in $(seq "$N"); do
  cat >> "$WORK/part.$(( i % CREATORS ))" <<YAML
---
apiVersion: ocisync.dev/v1alpha1
kind: Artifact
metadata: {name: a$i, namespace: scale-$(( (i / TAGS) % NAMESPACES + 1 ))}
spec: {url: "oci://$REG/scale/app", ref: {tag: "t$(( (i % TAGS) + 1 ))"}, insecure: true, interval: ${INTERVAL}s}
YAML
done

metric() { curl -sf "http://127.0.0.1:$port/metrics" | awk -v p="$1" 'index($0, p) == 1 {s += $NF} END {print s + 0}'; }
# Writes the API server took for the operator's kinds (its own counter).
writes() {
  kubectl get --raw /metrics | awk '/^apiserver_request_total\{/ && /verb="(POST|PUT|PATCH|DELETE|APPLY)"/ &&
    /resource="(artifacts|configmaps|events)"/ {s += $NF} END {print s + 0}'
}
# Time the API server spent on each kind of request (its own histogram sums),
# by verb and resource, for the kinds the Artifacts and the operator touch.
api_time() {
  kubectl get --raw /metrics | awk '/^apiserver_request_duration_seconds_(sum|count)\{/ &&
    /resource="(artifacts|configmaps|events)"/ {
      match($0, /verb="[A-Z]+"/); v = substr($0, RSTART + 6, RLENGTH - 7)
      match($0, /resource="[a-z]+"/); r = substr($0, RSTART + 10, RLENGTH - 11)
      match($0, /subresource="[a-z]*"/); sr = substr($0, RSTART + 13, RLENGTH - 14)
      k = v " " r (sr != "" ? "/" sr : "")
      if ($0 ~ /_sum\{/) sum[k] += $NF; else cnt[k] += $NF
    } END {for (k in sum) print k, sum[k], cnt[k]}' | sort
}
# The operator's RSS once a second, to see when the peak comes.
( while kill -0 "$OP_PID" 2>/dev/null; do
    echo "$(date +%s.%N) $(awk '/VmRSS/ {print $2}' "/proc/$OP_PID/status" 2>/dev/null)"; sleep 1
  done ) > "$WORK/rss.log" &

# CPU seconds of each process on the machine's two cores, while the Artifacts
# are created and synced: where the time goes.
ticks_of() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
CP_PIDS="etcd:$(pgrep -f "data-dir=$WORK/cp/etcd" | head -1) kube-apiserver:$(pgrep -f "cert-dir=$WORK/cp/pki" | head -1) operator:$OP_PID"
cpu_split() { for p in $CP_PIDS; do echo "${p%%:*} $(ticks_of "${p#*:}")"; done; }
cpu_split > "$WORK/cpu.0"
api_time > "$WORK/api.0"

log "creating $N Artifacts"
t0=$(date +%s.%N)
# Several clients at once, as a GitOps tool applying a large repository would
# be: one sequential kubectl alone takes most of a minute to create 10,000.
creators=()
for f in "$WORK"/part.*; do kubectl create -f "$f" >/dev/null & creators+=($!); done
wait "${creators[@]}"
created=$(echo "$(date +%s.%N) - $t0" | bc)
log "created in ${created}s"
# Listing 10,000 objects costs the shared cores seconds each time: poll the
# operator's counter first, then confirm on the API server, rarely. When each
# became Ready is read from its condition's lastTransitionTime, not from the
# polling.
while (( $(metric 'ocisync_reconciles_total{result="success",reason="Synced"}') < N )) || (( $(ready_count -A) < N )); do
  kill -0 "$OP_PID" || { tail -20 "$WORK/operator.log" >&2; exit 1; }
  sleep 5
done
kubectl get artifacts -A -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].lastTransitionTime}{"\n"}{end}' |
  python3 -c 'import sys, datetime as d; [print(int(d.datetime.fromisoformat(l.strip().replace("Z", "+00:00")).timestamp())) for l in sys.stdin if l.strip()]' |
  sort -n > "$WORK/ready.times"
t1=$(tail -1 "$WORK/ready.times")
all_ready=$(echo "$t1 - $t0" | bc)
log "Ready (of $N) every 10 s from the first create: $(awk -v t0="$t0" '{n[int(($1 - t0) / 10)]++} END {c = 0; for (i = 0; i <= int(('"$t1"' - t0) / 10); i++) {c += n[i]; printf "%d ", c}}' "$WORK/ready.times")"
ready_rss=$(awk '/VmRSS/ {print $2}' "/proc/$OP_PID/status")
cpu_split > "$WORK/cpu.1"
api_time > "$WORK/api.1"
log "API server time by request (count, seconds of latency summed): $(awk 'NR == FNR {s[$1" "$2] = $3; c[$1" "$2] = $4; next}
  {n = $4 - c[$1" "$2]; if (n > 0) printf "%s %s: %d, %.1f s; ", $1, $2, n, $3 - s[$1" "$2]}' "$WORK/api.0" "$WORK/api.1")"
split=$(join "$WORK/cpu.0" "$WORK/cpu.1" | awk -v hz="$(getconf CLK_TCK)" '{printf "%s %.0f s, ", $1, ($3 - $2) / hz}')
log "all $N Ready in ${all_ready}s; steady state for $WINDOW intervals of ${INTERVAL}s"

cpu() { awk '{print $14 + $15}' "/proc/$OP_PID/stat"; }
# let the burst of creation settle into the steady rhythm first
sleep "$INTERVAL"
w0=$(writes); r0=$(metric 'ocisync_reconciles_total'); h0=$(metric 'ocisync_registry_requests_total{method="HEAD"'); g0=$(metric 'ocisync_registry_requests_total{method="GET"'); c0=$(cpu)
sleep $(( INTERVAL * WINDOW ))
w1=$(writes); r1=$(metric 'ocisync_reconciles_total'); h1=$(metric 'ocisync_registry_requests_total{method="HEAD"'); g1=$(metric 'ocisync_registry_requests_total{method="GET"'); c1=$(cpu)
ticks=$(getconf CLK_TCK)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$OP_PID/status")
reconciles=$(echo "$r1 - $r0" | bc)
cpu_per=$(echo "scale=6; ($c1 - $c0) / $ticks / $reconciles" | bc)
heads_per=$(echo "scale=1; ($h1 - $h0) / $WINDOW" | bc)
gets=$(echo "$g1 - $g0" | bc)

peak_at=$(awk -v t0="$t0" 'BEGIN {m = 0} $2 > m {m = $2; at = $1 - t0} END {printf "%.0f", at}' "$WORK/rss.log")
log "RSS (MiB) every 10 s from the first create: $(awk -v t0="$t0" '$1 >= t0 && int($1 - t0) % 10 == 0 && !seen[int($1 - t0)]++ {printf "%d ", $2 / 1024}' "$WORK/rss.log")"

echo "| measure | result | target |"
echo "| --- | --- | --- |"
printf '| %s Artifacts, %s tags, %s namespace(s): created → all Ready | %.1f s (the %s creating clients took %.1f s) | ≤ 60 s |\n' "$N" "$TAGS" "$NAMESPACES" "$all_ready" "$CREATORS" "$created"
echo "| CPU while creating and syncing (2 cores) | ${split%, } | |"
echo "| operator peak RSS | $(( rss / 1024 )) MiB (at ${peak_at} s; $(( ready_rss / 1024 )) MiB when all were Ready) | ≤ 128 MiB |"
printf '| CPU per steady-state reconcile | %.2f ms (%s reconciles in %s intervals) | |\n' "$(echo "$cpu_per * 1000" | bc)" "$reconciles" "$WINDOW"
echo "| registry HEADs per ${INTERVAL}s interval | $heads_per ($TAGS distinct tags) | ≤ $TAGS |"
echo "| registry GETs in the steady window | $gets | 0 |"
echo "| API writes (Artifacts, ConfigMaps, Events) in the steady window | $(( w1 - w0 )) | 0 |"
echo
echo "ocisync $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), kube-apiserver 1.20.2, $(nproc) cores"
