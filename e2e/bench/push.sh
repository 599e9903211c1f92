#!/usr/bin/env bash
# Push → ConfigMap latency: distribution 2.8 notifies the operator's
# webhook (an Artifact with a 1h interval), against polling at 30 s (no
# webhook). Each round pushes a new version with oras and waits until the
# ConfigMap's digest annotation names it.
#
#   e2e/bench/push.sh            # prints a markdown table (docs/src/operations/performance.md)
#
# Each polled push lands just after a poll (the previous round ended on
# one), so it waits about a whole interval: the worst case, not the mean.
#
# Env: PUSHES (default 20, with notifications), POLLED (default 6, polling).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PUSHES=${PUSHES:-20} POLLED=${POLLED:-6}
log() { echo "[push] $*" >&2; }
. "$HERE/prepare.sh" push
OP_PID=
NREG_PID=
trap '{ kill $NREG_PID; stop_all; } 2>/dev/null || true' EXIT
HOOK_PORT=$(free_port)
TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
echo "$TOKEN" > "$WORK/token"
# a second registry with notifications to the operator
NREG_PORT=$(free_port)
mkdir -p "$WORK/nreg"
cat > "$WORK/nreg/config.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/nreg/data}}
http: {addr: 127.0.0.1:$NREG_PORT}
notifications:
  endpoints:
  - name: ocisync
    url: http://127.0.0.1:$HOOK_PORT/v1/notify
    headers: {Authorization: ["Bearer $TOKEN"]}
    timeout: 2s
    threshold: 10
    backoff: 1s
YAML
"$OCISYNC_TOOLS/bin/docker-registry" serve "$WORK/nreg/config.yml" >"$WORK/nreg/log" 2>&1 &
NREG_PID=$!
NREG=127.0.0.1:$NREG_PORT
KUBECONFIG=$("$ROOT/e2e/setup/start-control-plane.sh" "$WORK/cp") # fails the script, unlike `export X=$(…)`
export KUBECONFIG
"$ROOT/e2e/setup/operator-access.sh" "$WORK/operator.kubeconfig"
kubectl create namespace push >/dev/null
mport=$(free_port)
KUBECONFIG="$WORK/operator.kubeconfig" OCISYNC_LOG=warn "$OCISYNC" operator --work-dir "$WORK/work" \
  --metrics-addr "127.0.0.1:$mport" --leader-elect=false --webhook-addr "127.0.0.1:$HOOK_PORT" \
  --webhook-token-file "$WORK/token" 2>"$WORK/operator.log" &
OP_PID=$!
wait_readyz "$mport"

# round REG NAME I: push version I, print seconds until the ConfigMap has it
round() {
  local dir=$WORK/src/$2 digest t0
  mkdir -p "$dir"
  echo "version: $3" > "$dir/app.yaml"
  t0=$(date +%s.%N)
  digest=$(cd "$dir" && oras push --plain-http "$1/push/$2:live" app.yaml 2>&1 | awk '/^Digest:/ {print $2}')
  until [[ $(kubectl get configmap "$2" -n push -o jsonpath='{.metadata.annotations.ocisync\.dev/digest}' 2>/dev/null) == "$digest" ]]; do
    sleep 0.05
  done
  echo "$(date +%s.%N) - $t0" | bc
}
artifact() { # NAME REG INTERVAL
  printf 'apiVersion: ocisync.dev/v1alpha1\nkind: Artifact\nmetadata: {name: %s, namespace: push}\nspec: {url: "oci://%s/push/%s", ref: {tag: live}, insecure: true, interval: %s}\n' "$1" "$2" "$1" "$3" | kubectl apply -f - >/dev/null
}
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p/100+0.999); if (i<1) i=1; printf "%.2f", a[i]}'; }
mkdir -p "$WORK/src/hooked" && echo "version: 0" > "$WORK/src/hooked/app.yaml"
(cd "$WORK/src/hooked" && oras push --plain-http "$NREG/push/hooked:live" app.yaml >/dev/null)
artifact hooked "$NREG" 1h
until kubectl get configmap hooked -n push >/dev/null 2>&1; do sleep 0.2; done
round "$NREG" hooked 1 >/dev/null
: > "$WORK/hooked.txt"
# Pushes a little over a second apart, as a team's are: closer ones are
# paced (one look per repository per second), which is not latency.
for i in $(seq 2 $((PUSHES + 1))); do sleep 1.2; round "$NREG" hooked "$i" >> "$WORK/hooked.txt"; done
log "notifications: $(pct 50 < "$WORK/hooked.txt") s p50"
(cd "$WORK/src" && mkdir -p polled && echo "version: 0" > polled/app.yaml && cd polled && oras push --plain-http "$REG/push/polled:live" app.yaml >/dev/null)
artifact polled "$REG" 30s
until kubectl get configmap polled -n push >/dev/null 2>&1; do sleep 0.2; done
: > "$WORK/polled.txt"
for i in $(seq 1 "$POLLED"); do round "$REG" polled "$i" >> "$WORK/polled.txt"; done
kill "$NREG_PID" 2>/dev/null || true
echo "| push → ConfigMap | p50 | p95 | max | pushes |"
echo "| --- | --- | --- | --- | --- |"
echo "| distribution notifies \`/v1/notify\` (interval 1h) | $(pct 50 < "$WORK/hooked.txt") s | $(pct 95 < "$WORK/hooked.txt") s | $(sort -n "$WORK/hooked.txt" | tail -1) s | $PUSHES |"
echo "| polling, interval 30s | $(pct 50 < "$WORK/polled.txt") s | $(pct 95 < "$WORK/polled.txt") s | $(sort -n "$WORK/polled.txt" | tail -1) s | $POLLED |"
