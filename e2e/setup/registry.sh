# Sourced by e2e scripts: start_registry DIR starts Debian's docker-registry
# (distribution 2.8) on a free loopback port with storage in DIR, sets REG
# (host:port) and REG_PID, and waits until it answers (REGISTRY_NO_ACCESS_LOG=false:
# its access log goes to DIR/log). stop_all (for an EXIT
# trap) stops it, an operator in $OP_PID and a control plane in $WORK/cp, and
# removes $WORK.
start_registry() {
  local dir=$1 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$dir"
  cat > "$dir/config.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: ${REGISTRY_NO_ACCESS_LOG:-true}}}
storage: {filesystem: {rootdirectory: $dir/data}}
http: {addr: 127.0.0.1:$port}
YAML
  "$OCISYNC_TOOLS/bin/docker-registry" serve "$dir/config.yml" >"$dir/log" 2>&1 &
  REG_PID=$!
  REG=127.0.0.1:$port
  local i
  for i in $(seq 100); do
    curl -sf "http://$REG/v2/" >/dev/null && return 0
    kill -0 "$REG_PID" 2>/dev/null || { cat "$dir/log" >&2; return 1; }
    sleep 0.1
  done
  echo "registry on $REG did not answer" >&2
  return 1
}

stop_all() {
  # `|| true`: under errexit a failing `wait` (143 for a killed process)
  # would end the trap here and leave the control plane running.
  if [[ -n ${OP_PID:-} ]]; then { kill "$OP_PID" && wait "$OP_PID"; } 2>/dev/null || true; fi
  if [[ -d ${WORK:-}/cp ]]; then "$(dirname "${BASH_SOURCE[0]}")/stop-control-plane.sh" "$WORK/cp" 2>/dev/null || true; fi
  if [[ -n ${REG_PID:-} ]]; then kill "$REG_PID" 2>/dev/null; wait "$REG_PID" 2>/dev/null || true; fi
  if [[ -n ${WORK:-} ]]; then rm -rf "$WORK"; fi
  if [[ -n ${OUTS:-} ]]; then rm -rf "$OUTS"; fi
}
