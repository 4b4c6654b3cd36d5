#!/usr/bin/env bash
# `make demo`: the testbed up, the CRD installed, examples/fallback-step.yaml applied (its model
# slowed 50x: `unbusy demo --manifest` prints it), and `unbusy demo` playing an 8x load step through
# it: real HTTP through the testbed's Traefik to the pods' loopback addresses, where the emulator
# answers; the operator, a Prometheus of its own (scraping the emulator and Traefik) and the emulator
# on free ports of 127.0.0.1. It follows the player's output until the summary is out, then leaves
# everything running for a look around.
#
# Usage: demo.sh [--short]   play (--short: a 2-minute step, for the test)
#        demo.sh down        stop all the demo started: the player (and with it the operator,
#                            Prometheus, the emulator), and the testbed if the demo brought it up
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

DEMO_DIR="$STATE_DIR/demo"
PIDS="$DEMO_DIR/pids"
LOG="$DEMO_DIR/demo.log"
EXAMPLE=examples/fallback-step.yaml
STARTED_TESTBED="$STATE_DIR/demo-started-testbed" # present: the demo brought the testbed up, and takes it down

# The pid in a pid file if that process is alive and one of ours (its command line names this state
# directory): pids get reused, and we must never signal a process we did not start.
demo_pid() {
  local f="$PIDS/$1.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ -n "$pid" ]] && alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$STATE_DIR" && echo "$pid"
}

# SIGTERM, then SIGKILL after $2 seconds.
stop_pid() {
  local pid=$1 grace=$2 i
  kill "$pid" 2>/dev/null || return 0
  for ((i = 0; i < grace * 10; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

stop_demo() {
  local pid name
  if pid="$(demo_pid player)"; then
    if [[ ! -f "$STARTED_TESTBED" ]] && kube get --raw /readyz >/dev/null 2>&1; then
      # The testbed stays: delete what the demo applied while its operator still runs (it takes
      # its finalizers off).
      kube delete -f "$EXAMPLE" --ignore-not-found --wait --timeout=60s >/dev/null 2>&1 || true
    fi
    stop_pid "$pid" 40 # it stops the operator, Prometheus and the emulator
  fi
  # Should the player have died without stopping them.
  for name in operator prometheus; do
    if pid="$(demo_pid "$name")"; then stop_pid "$pid" 20; fi
  done
  rm -f "$PIDS"/*.pid
}

if [[ ${1:-} == down ]]; then
  stop_demo
  if [[ -f "$STARTED_TESTBED" ]]; then
    "$TESTBED_SRC/down.sh"
    rm -f "$STARTED_TESTBED"
  fi
  exit 0
fi

stop_demo # a demo still running from before
rm -rf "$DEMO_DIR" # its logs, Prometheus's data and summary
mkdir -p "$PIDS"
if ! "$TESTBED_SRC/status.sh" >/dev/null 2>&1; then
  touch "$STARTED_TESTBED"
fi
"$TESTBED_SRC/up.sh" >/dev/null
export KUBECONFIG="$KUBECONFIG_PATH" PATH="$BIN_DIR:$PATH" # kubectl of the testbed's version
kube apply --server-side --force-conflicts -f crds/ >/dev/null
kube wait --for condition=Established crd/inferenceservices.serving.unbusy.dev --timeout 60s >/dev/null
# Only the demo's own example: with all of examples/ the testbed's 16 fake H100s run out.
.venv/bin/unbusy demo -f "$EXAMPLE" --manifest | kube apply -f -

# Its own session: a Ctrl-C of `make demo` stops following it, not the demo. The log exists before
# the follower opens it.
: >"$LOG"
setsid .venv/bin/unbusy demo -f "$EXAMPLE" --kubeconfig "$KUBECONFIG_PATH" --workdir "$DEMO_DIR" \
  --proxy "127.0.0.1:$TRAEFIK_WEB_PORT" --proxy-metrics "127.0.0.1:$TRAEFIK_METRICS_PORT" "$@" \
  </dev/null >>"$LOG" 2>&1 &
echo $! >"$PIDS/player.pid"
tail -n +1 -f "$LOG" &
follower=$!
trap 'kill $follower 2>/dev/null || true' EXIT
while [[ ! -f "$DEMO_DIR/done" ]] && alive "$(cat "$PIDS/player.pid")"; do sleep 1; done
sleep 0.5
if [[ ! -f "$DEMO_DIR/done" ]]; then
  echo "the demo stopped before its summary; see $LOG and $DEMO_DIR/operator.log" >&2
  exit 1
fi
echo
kube get infsvc -o wide
echo
kube get deployments,services,httproutes,ingresses,horizontalpodautoscalers,poddisruptionbudgets,servicemonitors,podmonitors,prometheusrules -l app.kubernetes.io/managed-by=unbusy
echo
echo "still running at the base rate: export KUBECONFIG=$KUBECONFIG_PATH; kubectl get infsvc -o wide -w"
echo "logs in $DEMO_DIR; stop everything: make demo-down"
