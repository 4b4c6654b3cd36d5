#!/usr/bin/env bash
# Restart one component of a running testbed, as a crash and a supervisor's restart would:
# SIGKILL (or SIGTERM with --graceful), down for --down-seconds, started again with the same
# flags; etcd keeps its data. Waits until the component serves again. For the chaos tests.
#
# Usage: restart.sh etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kwok|traefik
#                   [--graceful] [--down-seconds S]
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=components.sh
source "$TESTBED_SRC/components.sh"

usage() { die "usage: restart.sh {${COMPONENTS[*]}} [--graceful] [--down-seconds S]"; }

main() {
  local name="${1:-}" graceful=0 down=0 pid
  [[ " ${COMPONENTS[*]} " == *" $name "* ]] || usage
  shift
  while (($#)); do
    case "$1" in
    --graceful) graceful=1 ;;
    --down-seconds)
      down="${2:-}"
      shift
      ;;
    *) usage ;;
    esac
    shift
  done
  take_lock
  pid="$(component_pid "$name")" || die "$name is not running (testbed/up.sh starts the testbed)"

  if ((graceful)); then
    stop_component "$name"
  else
    kill -KILL "$pid"
    while alive "$pid"; do sleep 0.05; done
    rm -f "$(pid_file "$name")"
    log "killed $name (pid $pid)"
  fi
  sleep "$down"
  mv -f "$LOG_DIR/$name.log" "$LOG_DIR/$name.log.before-restart" 2>/dev/null || true

  case "$name" in
  etcd) start_etcd --keep-data ;;
  kube-apiserver) start_apiserver ;;
  kube-controller-manager) start_controller_manager ;;
  kube-scheduler)
    start_scheduler
    wait_for "kube-scheduler /readyz" 30 curl -kfsS "https://127.0.0.1:$SCHEDULER_PORT/readyz"
    ;;
  kwok) start_kwok ;;
  traefik) start_traefik ;;
  esac
  # The API server answers only once etcd is back in reach as well.
  wait_for "kube-apiserver /readyz" 120 kube get --raw /readyz
  log "restarted $name"
}

main "$@"
