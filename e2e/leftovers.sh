#!/usr/bin/env bash
# Processes the tests left behind: `leftovers.sh snapshot FILE` records
# every pid running now; `leftovers.sh check FILE` then lists each process
# started since that still runs and belongs to the tests: its executable or
# an argument under the repository, the target dir, /var/tmp/ocisync or the
# temporary directory, or its working directory under one of the first
# three (a plugin's `sleep` through a wrapper, a registry, a kubelet, a
# container's process). Exit 1 if any.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-/var/tmp/ocisync-target}
case ${1:-} in
  snapshot) ls /proc | grep -E '^[0-9]+$' | sort >"$2"; exit 0 ;;
  check) ;;
  *) echo "usage: $0 snapshot|check FILE" >&2; exit 2 ;;
esac
# ourselves and our ancestors (the test script, CI's runner) are not leftovers
mine=" $$ "; p=$$
while [[ $p -gt 1 ]]; do p=$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null) || break; mine+="$p "; done
left=0
for pid in $(ls /proc | grep -E '^[0-9]+$' | sort | comm -13 "$2" -); do
  [[ $mine == *" $pid "* ]] && continue
  # gone already, a kernel thread, or a command of this very check
  [[ -n $( { tr -d '\0' <"/proc/$pid/cmdline"; } 2>/dev/null) ]] || continue
  [[ $(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null) == "$$" ]] && continue
  ran=$({ readlink "/proc/$pid/exe"; tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | tr '\n' ' ')
  cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null)
  # the temporary directory by what runs (a plugin the tests wrote there),
  # not by a working directory anyone may have
  for prefix in "$ROOT" "$TARGET" /var/tmp/ocisync "${TMPDIR:-/tmp}"; do
    if [[ " $ran" == *" $prefix"* || ( $prefix != "${TMPDIR:-/tmp}" && $cwd == "$prefix"* ) ]]; then
      echo "left running: pid $pid: $( { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | cut -c1-200)" >&2
      left=1
      break
    fi
  done
done
exit $left
