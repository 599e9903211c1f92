#!/usr/bin/env bash
# Start a loopback-only Kubernetes control plane (etcd + kube-apiserver, no
# kubelet/controller-manager/scheduler; like controller-runtime's envtest),
# using the binaries that install-control-plane.sh put in a prefix.
#
# Usage: start-control-plane.sh DIR
#
#   DIR/pki/         CA, apiserver serving cert, admin client cert
#                    (CN=admin, O=system:masters), service-account key pair,
#                    static token file (created once, reused on restarts)
#   DIR/etcd/        etcd data (wiped on every start: each start = fresh cluster)
#   DIR/logs/        etcd.log, kube-apiserver.log
#   DIR/kubeconfig   admin kubeconfig (client cert; CA embedded, TLS verified)
#   DIR/token        bearer token of the same admin user (alternative auth)
#   DIR/env          ETCD_PORT, APISERVER_PORT, APISERVER_URL, KUBECONFIG
#   DIR/pids         "name pid starttime" lines for stop-control-plane.sh
#
# Env:
#   CONTROL_PLANE_PREFIX   where install-control-plane.sh put bin/ (default
#                          /var/tmp/ocisync/control-plane); ETCD_BIN / KUBE_APISERVER_BIN
#                          override the binaries
#   AUTHZ_MODE             --authorization-mode (default RBAC; AlwaysAllow ok)
#   APISERVER_EXTRA_ARGS   extra kube-apiserver flags (word-split)
#   READY_TIMEOUT          seconds to wait for /readyz (default 120)
#   APISERVER_ADDRESS      address it binds and advertises (default 127.0.0.1)
#   APISERVER_PORT         its port (default: a free one)
#   SERVICE_CIDR           --service-cluster-ip-range (default 10.0.0.0/24)
#   DISABLE_ADMISSION      --disable-admission-plugins (default ServiceAccount:
#                          without kube-controller-manager no pod has a token)
#   (start-cluster.sh sets these four for a node whose pods reach the API
#   server at its Service address)
#
# Ports are picked at random among free loopback ports, so several instances
# can run side by side. Prints the kubeconfig path on stdout; if the control
# plane recorded in DIR/pids is still running it only prints the path again.
# Stop with: stop-control-plane.sh DIR
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=${CONTROL_PLANE_PREFIX:-/var/tmp/ocisync/control-plane}
ETCD_BIN=${ETCD_BIN:-$PREFIX/bin/etcd}
KUBE_APISERVER_BIN=${KUBE_APISERVER_BIN:-$PREFIX/bin/kube-apiserver}
AUTHZ_MODE=${AUTHZ_MODE:-RBAC}
READY_TIMEOUT=${READY_TIMEOUT:-120}
PKI=$DIR/pki
ADDRESS=${APISERVER_ADDRESS:-127.0.0.1}
SERVICE_CIDR=${SERVICE_CIDR:-10.0.0.0/24}
DISABLE_ADMISSION=${DISABLE_ADMISSION-ServiceAccount}
t0=$(date +%s%N)

log() { echo "[start-control-plane] $*" >&2; }
for b in "$ETCD_BIN" "$KUBE_APISERVER_BIN"; do
  [[ -x $b ]] || { log "missing $b (run install-control-plane.sh)"; exit 1; }
done

# --- already running? -------------------------------------------------------
alive() { # pid -> true if running (and not a zombie)
  [[ -n ${1:-} && -r /proc/$1/stat ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]
}
if [[ -f $DIR/pids ]]; then
  running=1
  while read -r _ pid _; do alive "$pid" || running=0; done < "$DIR/pids"
  if [[ $running == 1 && -s $DIR/pids ]]; then
    log "already running (pids: $(awk '{print $2}' "$DIR/pids" | xargs))"
    echo "$DIR/kubeconfig"
    exit 0
  fi
  log "stale $DIR/pids found; stopping leftovers"
  "$HERE/stop-control-plane.sh" "$DIR" >&2 || true
fi

# --- certificates & keys (openssl; created once, reused) --------------------
mkdir -p "$PKI" "$DIR/logs"
if [[ ! -f $PKI/.done ]]; then
  log "generating certificates in $PKI"
  (
    cd "$PKI"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
      -keyout ca.key -out ca.crt -subj "/CN=control-plane-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    # sign NAME SUBJECT EXTENSIONS  (v3 certs; rustls/webpki is strict)
    sign() {
      openssl req -new -newkey rsa:2048 -nodes -keyout "$1.key" -subj "$2" 2>/dev/null |
        openssl x509 -req -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
          -out "$1.crt" -extfile <(printf '%s\n' "$3") 2>/dev/null
    }
    sign apiserver "/CN=kube-apiserver" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,IP:$ADDRESS,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    sign admin "/O=system:masters/CN=admin" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    # service-account token signing key pair
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    openssl pkey -in sa.key -pubout -out sa.pub
    # static token for the same admin identity: token,user,uid,"groups"
    tok=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    echo "$tok,admin,admin,\"system:masters\"" > tokens.csv
    echo "$tok" > "$DIR/token"
    touch .done
  )
fi

# --- free loopback ports ----------------------------------------------------
used_ports=" "
port_free() { # port -> true if nothing listens on / uses 127.0.0.1:port
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null &&
    ! ss -Htan 2>/dev/null | awk '{print $4}' | grep -qE "[:.]$1\$"
}
pick_port() { # runs in $(...): the caller records the result in used_ports
  local p
  while :; do
    p=$(( 20000 + RANDOM % 30000 ))
    [[ $used_ports == *" $p "* ]] && continue
    if port_free "$p"; then echo "$p"; return; fi
  done
}
ETCD_PORT=$(pick_port); used_ports+="$ETCD_PORT "
ETCD_PEER_PORT=$(pick_port); used_ports+="$ETCD_PEER_PORT "
API_PORT=${APISERVER_PORT:-$(pick_port)}

# --- start a daemon in its own session; the pid file gets the exec'd pid ----
start_daemon() { # name logfile cmd...
  local name=$1 logf=$2; shift 2
  rm -f "$DIR/.$name.pid"
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$DIR/.$name.pid" "$@" \
    > "$logf" 2>&1 < /dev/null &
  local i pid
  for i in $(seq 50); do [[ -s $DIR/.$name.pid ]] && break; sleep 0.1; done
  pid=$(cat "$DIR/.$name.pid")
  # start time (field 22 of /proc/PID/stat) guards against pid reuse on stop
  echo "$name $pid $(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null)" >> "$DIR/pids"
  rm -f "$DIR/.$name.pid"
}
fail() {
  log "$1"; log "--- last lines of $2:"; tail -n 30 "$2" >&2 || true
  "$HERE/stop-control-plane.sh" "$DIR" >&2 || true
  exit 1
}
deadline=$(( $(date +%s) + READY_TIMEOUT ))
pid_of() { awk -v n="$1" '$1 == n {print $2}' "$DIR/pids"; }

: > "$DIR/pids"
rm -rf "$DIR/etcd"
start_daemon etcd "$DIR/logs/etcd.log" "$ETCD_BIN" \
  --name=control-plane --data-dir="$DIR/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="control-plane=http://127.0.0.1:$ETCD_PEER_PORT" \
  --logger=zap --log-level=warn
until curl -sf "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"'; do
  alive "$(pid_of etcd)" || fail "etcd exited" "$DIR/logs/etcd.log"
  (( $(date +%s) < deadline )) || fail "etcd not healthy in time" "$DIR/logs/etcd.log"
  sleep 0.2
done

# Flags as envtest uses them, plus a static token file and
# --endpoint-reconciler-type=none (the "kubernetes" Endpoints would be
# rejected for a loopback address anyway). No insecure port: 1.20 already
# refuses any --insecure-port other than 0. ServiceAccount admission is
# disabled: without kube-controller-manager there are no service-account
# token secrets, so pods would be rejected.
# shellcheck disable=SC2086
start_daemon kube-apiserver "$DIR/logs/kube-apiserver.log" "$KUBE_APISERVER_BIN" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address="$ADDRESS" --advertise-address="$ADDRESS" \
  --secure-port="$API_PORT" \
  --cert-dir="$PKI" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" --token-auth-file="$PKI/tokens.csv" \
  --authorization-mode="$AUTHZ_MODE" \
  --service-cluster-ip-range="$SERVICE_CIDR" --endpoint-reconciler-type=none \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" \
  --service-account-signing-key-file="$PKI/sa.key" \
  --disable-admission-plugins="$DISABLE_ADMISSION" \
  --allow-privileged=true --profiling=false \
  ${APISERVER_EXTRA_ARGS:-}

b64() { base64 -w0 < "$1"; }
cat > "$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: control-plane
  cluster:
    server: https://$ADDRESS:$API_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(b64 "$PKI/admin.crt")
    client-key-data: $(b64 "$PKI/admin.key")
contexts:
- name: control-plane
  context:
    cluster: control-plane
    user: admin
    namespace: default
current-context: control-plane
EOF
chmod 600 "$DIR/kubeconfig"
cat > "$DIR/env" <<EOF
ETCD_PORT=$ETCD_PORT
APISERVER_PORT=$API_PORT
APISERVER_URL=https://$ADDRESS:$API_PORT
KUBECONFIG=$DIR/kubeconfig
EOF

until [[ $(curl -s --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
            "https://$ADDRESS:$API_PORT/readyz" 2>/dev/null) == ok ]]; do
  alive "$(pid_of kube-apiserver)" || fail "kube-apiserver exited" "$DIR/logs/kube-apiserver.log"
  (( $(date +%s) < deadline )) || fail "kube-apiserver not ready within ${READY_TIMEOUT}s" "$DIR/logs/kube-apiserver.log"
  sleep 0.3
done
log "ready in $(( ($(date +%s%N) - t0) / 1000000 )) ms: https://$ADDRESS:$API_PORT (etcd 127.0.0.1:$ETCD_PORT)"
echo "$DIR/kubeconfig"
