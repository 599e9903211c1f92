#!/usr/bin/env bash
# Stop the cluster start-cluster.sh DIR started and put the machine back as
# it was: the kubelet first (so it restarts nothing), then every pod's
# processes through containerd, containerd and its shims, the controllers,
# the control plane and the registry; then the mounts under DIR, the
# kubepods cgroups, the bridge, the sysctls the kubelet changed and the log
# directories it created. Only pids recorded in DIR/pids are signalled (and
# only while their start time matches), plus the shims of this containerd
# (found by its socket) and the processes in this kubelet's cgroups.
#
# Usage: stop-cluster.sh DIR       (keeps DIR/logs; rm -rf DIR for the rest)
set -uo pipefail
[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$(cd "$1" 2>/dev/null && pwd) || { echo "[stop-cluster] no $1" >&2; exit 0; }
HERE=$(cd "$(dirname "$0")" && pwd)
NODE_PREFIX=${OCISYNC_NODE:-/var/tmp/ocisync/node}
log() { echo "[stop-cluster] $*" >&2; }

stop_pid() { # name pid starttime
  local name=$1 pid=$2 start=$3
  [[ $(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null) == "$start" ]] || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 100); do
    [[ -e /proc/$pid && $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || break
    sleep 0.1
  done
  if [[ -e /proc/$pid && $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
    kill -KILL "$pid" 2>/dev/null; log "$name ($pid) ignored SIGTERM: killed"
  else
    log "stopped $name ($pid)"
  fi
}
stop_named() { # name
  [[ -f $DIR/pids ]] || return 0
  local line; line=$(awk -v n="$1" '$1 == n' "$DIR/pids")
  [[ -n $line ]] && stop_pid $line
  return 0
}

stop_named kubelet

# Every container's process, then containerd, then the shims it left (a
# shim outlives containerd by design); found by this containerd's socket.
SOCK=$DIR/containerd/containerd.sock
if [[ -S $SOCK ]]; then
  ctr=("$NODE_PREFIX/bin/ctr" --address "$SOCK" -n k8s.io)
  for t in $("${ctr[@]}" tasks ls -q 2>/dev/null); do "${ctr[@]}" tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
  sleep 0.5
  for t in $("${ctr[@]}" tasks ls -q 2>/dev/null); do "${ctr[@]}" tasks rm -f "$t" >/dev/null 2>&1; done
fi
stop_named containerd
for p in /proc/[0-9]*; do
  tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "-address $SOCK " || continue
  [[ $(readlink "$p/exe" 2>/dev/null) == */containerd-shim-runc-v2 ]] || continue
  kill -KILL "${p#/proc/}" 2>/dev/null && log "killed shim ${p#/proc/}"
done
# Whatever still runs in the kubelet's cgroups was a pod's.
for cg in /sys/fs/cgroup/*/kubepods; do
  [[ -d $cg ]] || continue
  find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | while read -r p; do
    kill -KILL "$p" 2>/dev/null && log "killed pod process $p"
  done
done

stop_named kube-scheduler
stop_named kube-controller-manager
[[ -d $DIR/cp ]] && "$HERE/stop-control-plane.sh" "$DIR/cp" 2>/dev/null
stop_named registry
rm -f "$DIR/pids"

# Mounts under DIR (rootfs overlays, shm, netns, volumes), deepest first.
for _ in 1 2 3; do
  m=$(awk -v d="$DIR/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-)
  [[ -n $m ]] || break
  while read -r mp; do umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null; done <<<"$m"
done
# The kubepods cgroups, deepest first (a cgroup goes when its tasks have).
for _ in 1 2 3 4 5; do
  left=$(find /sys/fs/cgroup/*/kubepods -depth -type d 2>/dev/null)
  [[ -n $left ]] || break
  while read -r d; do rmdir "$d" 2>/dev/null; done <<<"$left"
  sleep 0.2
done
find /sys/fs/cgroup/*/kubepods -maxdepth 0 2>/dev/null | grep -q . && log "kubepods cgroups left behind"

if [[ -f $DIR/restore ]]; then
  while read -r what a b; do
    case $what in
      sysctl) sysctl -q -w "$a=$b" >/dev/null || log "could not restore $a=$b" ;;
      rmdir) rm -rf "$a" ;;
      bridge) ip link del "$a" 2>/dev/null && log "removed bridge $a" ;;
    esac
  done <"$DIR/restore"
  rm -f "$DIR/restore"
fi
exit 0
