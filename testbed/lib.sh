# shellcheck shell=bash
# Shared settings and helpers for the testbed scripts (sourced, not executed).
# shellcheck disable=SC2034  # the settings are used by the scripts that source this

TESTBED_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$TESTBED_SRC/.." && pwd)"
# shellcheck source=versions.env
source "$TESTBED_SRC/versions.env"

# All state of a running testbed lives here (git-ignored): certs, kubeconfigs,
# etcd data, logs, pid files.
STATE_DIR="${TESTBED_STATE_DIR:-$REPO_ROOT/.testbed}"
PKI_DIR="$STATE_DIR/pki"
LOG_DIR="$STATE_DIR/logs"
PID_DIR="$STATE_DIR/pids"
ETCD_DATA_DIR="$STATE_DIR/etcd"
KUBECONFIG_PATH="$STATE_DIR/kubeconfig"

CACHE_ROOT="${UNBUSY_TESTBED_CACHE:-$HOME/.cache/unbusy-testbed}"
BIN_DIR="$CACHE_ROOT/$K8S_VERSION/bin"
# The kubectl built with the control plane, not whatever kubectl is on PATH.
KUBECTL="$BIN_DIR/kubectl"

# Loopback only, and away from the well-known ports (2379, 6443, 10257, 10259) so the
# testbed never collides with a real etcd or cluster component on the same host.
ETCD_PORT="${TESTBED_ETCD_PORT:-12379}"
ETCD_PEER_PORT="${TESTBED_ETCD_PEER_PORT:-12380}"
APISERVER_PORT="${TESTBED_APISERVER_PORT:-16443}"
KCM_PORT="${TESTBED_KCM_PORT:-20257}"
SCHEDULER_PORT="${TESTBED_SCHEDULER_PORT:-20259}"
KWOK_PORT="${TESTBED_KWOK_PORT:-20247}"
# Traefik, the Gateway API proxy: the Gateway's listener (its `web` entry point) and its metrics.
TRAEFIK_WEB_PORT="${TESTBED_TRAEFIK_WEB_PORT:-18000}"
TRAEFIK_METRICS_PORT="${TESTBED_TRAEFIK_METRICS_PORT:-18082}"
APISERVER_URL="https://127.0.0.1:$APISERVER_PORT"

SERVICE_CIDR="10.96.0.0/16"
SERVICE_API_IP="10.96.0.1" # first address of SERVICE_CIDR: the `kubernetes` Service
# Pod IPs kwok hands out, on the loopback range so that a proxy's packets to a pod stay on this
# machine (Linux routes all of 127/8 to lo): each node in nodes.yaml has a /24 of its own
# (spec.podCIDR), this is for a node without one. Service ClusterIPs (SERVICE_CIDR) stay 10.x,
# and nothing may send to them: no kube-proxy here, and such packets would leave the machine.
POD_CIDR="127.10.255.1/24"

# Start order; down stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok traefik)

export PATH="$PATH:/usr/local/go/bin"

TESTBED_T0="$EPOCHREALTIME"
# Progress on stderr, stamped with seconds since the script started.
log() {
  local t
  t="$(awk -v a="$TESTBED_T0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')"
  echo "[testbed ${t}s] $*" >&2
}
die() {
  log "ERROR: $*"
  exit 1
}

kube() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

# Path of the binary that runs a component (all built by build.sh).
component_bin() { echo "$BIN_DIR/$1"; }

pid_file() { echo "$PID_DIR/$1.pid"; }

# alive PID: the process exists and is not a zombie. Our daemons are reparented to
# init once up.sh exits, and a dead one can linger as a zombie until init reaps it.
alive() {
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# Pid of a component if it is running *and* is really that binary; pids get reused,
# and we must never signal a process we did not start.
component_pid() {
  local f pid exe
  f="$(pid_file "$1")"
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ -n "$pid" ]] && alive "$pid" || return 1
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
  [[ "$(basename "${exe% (deleted)}")" == "$1" ]] || return 1
  echo "$pid"
}

component_running() { component_pid "$1" >/dev/null; }

# Start a component detached from the caller's terminal and session, logging to a file.
start_component() {
  local name="$1"
  shift
  mkdir -p "$LOG_DIR" "$PID_DIR"
  # 9>&-: the daemon must not inherit the lock (see take_lock), or it would hold it
  # for as long as it runs and every later up/down would wait forever.
  setsid "$(component_bin "$name")" "$@" >"$LOG_DIR/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$(pid_file "$name")"
  log "started $name (pid $!, log $LOG_DIR/$name.log)"
}

# Stop a component: SIGTERM, then SIGKILL after a grace period.
stop_component() {
  local name="$1" pid i
  if pid="$(component_pid "$name")"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      log "$name did not stop in 10s, killing"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$(pid_file "$name")"
}

# Serialise up/down across processes (make in one terminal, a pytest session in
# another). The lock lives on fd 9 until the script exits.
take_lock() {
  mkdir -p "$STATE_DIR"
  exec 9>"$STATE_DIR/lock"
  flock -w 900 9 || die "another testbed up/down has held $STATE_DIR/lock for 15 minutes"
}

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: poll until COMMAND succeeds.
# Fails early when a component we started has died, pointing at its log.
wait_for() {
  local what="$1" timeout="$2" deadline c
  shift 2
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    for c in "${COMPONENTS[@]}"; do
      if [[ -f "$(pid_file "$c")" ]] && ! component_running "$c"; then
        tail -n 20 "$LOG_DIR/$c.log" >&2 || true
        die "$c exited while waiting for $what (log: $LOG_DIR/$c.log)"
      fi
    done
    ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what"
    sleep 0.2
  done
}
