#!/usr/bin/env bash
# `make demo`: the testbed up, the CRD installed, the operator running against it, the
# examples applied; then show what the operator made of them. Stop with `make demo-down`.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=.testbed
PID_FILE=$STATE/pids/operator.pid
LOG=$STATE/logs/operator.log
export KUBECONFIG=$PWD/$STATE/kubeconfig

stop_operator() {
  if [[ -f $PID_FILE ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    kill "$(cat "$PID_FILE")" && sleep 1
  fi
  rm -f "$PID_FILE"
}

start_operator() {
  mkdir -p "$(dirname "$PID_FILE")" "$(dirname "$LOG")"
  nohup .venv/bin/unbusy run --kubeconfig "$KUBECONFIG" >"$LOG" 2>&1 &
  echo $! >"$PID_FILE"
  for _ in $(seq 60); do
    curl -fsS http://127.0.0.1:8081/healthz >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "the operator did not become healthy; see $LOG" >&2
  return 1
}

if [[ ${1:-} == down ]]; then
  stop_operator
  exit 0
fi

testbed/up.sh >/dev/null
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for condition=Established crd/inferenceservices.serving.unbusy.dev --timeout 60s >/dev/null
stop_operator
start_operator
kubectl apply -f examples/
echo "waiting for the InferenceServices to become Ready ..."
kubectl wait --for condition=Ready infsvc --all --timeout 120s >/dev/null || true
echo
kubectl get infsvc -o wide
echo
kubectl get deployments,services,ingresses,httproutes,horizontalpodautoscalers,poddisruptionbudgets,servicemonitors,podmonitors,prometheusrules -l app.kubernetes.io/managed-by=unbusy
echo
echo "KUBECONFIG=$KUBECONFIG   operator log: $LOG   stop: make demo-down"
