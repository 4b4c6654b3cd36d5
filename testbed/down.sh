#!/usr/bin/env bash
# Stop the testbed and discard its cluster state (etcd data), so the next `up` starts
# from an empty cluster. Certificates and logs stay (logs help debugging; certs make
# restarts faster); `clean` removes them too. Safe to run when nothing is up.
#
# Usage: down.sh [--clean]
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

main() {
  [[ -d "$STATE_DIR" ]] || return 0
  if [[ -z "${TESTBED_LOCKED:-}" ]]; then # up.sh already holds the lock when it calls us
    take_lock
  fi

  # Everything but etcd at once (they only need etcd to shut down cleanly), then etcd.
  local c
  for c in "${COMPONENTS[@]}"; do
    [[ "$c" == etcd ]] || stop_component "$c" &
  done
  wait
  stop_component etcd
  rm -rf "$ETCD_DATA_DIR"

  if [[ "${1:-}" == "--clean" ]]; then
    rm -rf "$STATE_DIR"
    log "removed $STATE_DIR"
  fi
}

main "$@"
