#!/usr/bin/env bash
# Bring the local testbed up: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok and Traefik (the Gateway API proxy), all on 127.0.0.1, plus fake GPU
# nodes, the third-party CRDs and the Gateway. Idempotent: when everything already runs it only prints the kubeconfig path.
#
# stdout: exactly one line, the admin kubeconfig path. Progress goes to stderr.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=pki.sh
source "$TESTBED_SRC/pki.sh"
# shellcheck source=components.sh
source "$TESTBED_SRC/components.sh"

THIRDPARTY_CRDS="${TESTBED_THIRDPARTY_CRDS:-/work/shared/thirdparty-crds}"

ensure_binaries() {
  "$TESTBED_SRC/build.sh" >/dev/null
}

all_running() {
  local c
  for c in "${COMPONENTS[@]}"; do component_running "$c" || return 1; done
  kube get --raw /readyz >/dev/null 2>&1
}

# kwok has no built-in stages when run on its own (kwokctl normally writes them), so
# we feed it the upstream default ones, taken from the kwok module of the pinned
# version: node-fast (nodes Ready at once), lease heartbeats, pod-fast (pods Running
# and Ready at once, finalised on deletion).
write_kwok_config() {
  local dir="$STATE_DIR/kwok-stages"
  rm -rf "$dir"
  python3 "$TESTBED_SRC/modfiles.py" "sigs.k8s.io/kwok@$KWOK_VERSION" "$dir" \
    kustomize/stage/node/fast/node-initialize.yaml \
    kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    kustomize/stage/pod/fast/pod-ready.yaml \
    kustomize/stage/pod/fast/pod-complete.yaml \
    kustomize/stage/pod/fast/pod-delete.yaml
  local f first=1
  for f in "$dir"/*.yaml; do
    ((first)) || echo "---"
    first=0
    cat "$f"
  done >"$STATE_DIR/kwok.yaml"
}

# The CRDs the operator's children need: Prometheus Operator (PrometheusRule,
# ServiceMonitor, PodMonitor), Gateway API (standard channel, HTTPRoute v1), KEDA
# (ScaledObject) and the Gateway API Inference Extension (InferencePool v1).
install_crds() {
  local dir="$STATE_DIR/crds"
  rm -rf "$dir"
  mkdir -p "$dir/prometheus-operator"
  if compgen -G "$THIRDPARTY_CRDS/*.yaml" >/dev/null; then
    cp "$THIRDPARTY_CRDS"/*.yaml "$dir/prometheus-operator/"
  else
    local po=example/prometheus-operator-crd-full/monitoring.coreos.com
    python3 "$TESTBED_SRC/modfiles.py" \
      "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
      "$dir/prometheus-operator" \
      "${po}_prometheusrules.yaml" "${po}_servicemonitors.yaml" "${po}_podmonitors.yaml"
  fi
  python3 "$TESTBED_SRC/modfiles.py" "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" \
    "$dir/gateway-api" 'config/crd/standard/*.yaml'
  python3 "$TESTBED_SRC/modfiles.py" "github.com/kedacore/keda/v2@$KEDA_VERSION" \
    "$dir/keda" 'config/crd/bases/keda.sh_scaledobjects.yaml'
  python3 "$TESTBED_SRC/modfiles.py" "sigs.k8s.io/gateway-api-inference-extension@$INFERENCE_EXTENSION_VERSION" \
    "$dir/inference-extension" 'config/crd/bases/inference.networking.k8s.io_inferencepools.yaml'
  kube apply --server-side --force-conflicts -f "$dir/prometheus-operator" -f "$dir/gateway-api" -f "$dir/keda" \
    -f "$dir/inference-extension" >/dev/null
  kube wait --for condition=Established crd --all --timeout 60s >/dev/null
  log "CRDs installed: Prometheus Operator, Gateway API $GATEWAY_API_VERSION, KEDA $KEDA_VERSION (ScaledObject)," \
    "Inference Extension $INFERENCE_EXTENSION_VERSION (InferencePool)"
}

# Traefik's GatewayClass and the Gateway the InferenceServices' HTTPRoutes attach to; the
# Gateway is Programmed once Traefik has taken it on its entry point.
install_gateway() {
  sed "s/port: TRAEFIK_WEB_PORT/port: $TRAEFIK_WEB_PORT/" "$TESTBED_SRC/gateway.yaml" |
    kube apply --server-side --force-conflicts -f - >/dev/null
  wait_for "Gateway gateway-system/inference-gateway Programmed" 60 \
    kube -n gateway-system wait --for condition=Programmed gateway/inference-gateway --timeout 1s
  log "Gateway gateway-system/inference-gateway on Traefik $TRAEFIK_VERSION at 127.0.0.1:$TRAEFIK_WEB_PORT" \
    "(metrics 127.0.0.1:$TRAEFIK_METRICS_PORT)"
}

create_nodes() {
  kube apply --server-side --force-conflicts -f "$TESTBED_SRC/nodes.yaml" >/dev/null
}

# Nodes Ready proves kwok works. The `default` ServiceAccount is made by the controller
# manager, so its presence proves the controller manager is up and reconciling.
wait_healthy() {
  wait_for "nodes Ready" 60 kube wait --for condition=Ready node --all --timeout 1s
  wait_for "default ServiceAccount" 60 kube -n default get serviceaccount default
  wait_for "kube-scheduler /readyz" 30 curl -kfsS "https://127.0.0.1:$SCHEDULER_PORT/readyz"
}

main() {
  take_lock

  if all_running; then
    log "already running"
    echo "$KUBECONFIG_PATH"
    return 0
  fi
  # Anything left from a crashed or half-started testbed goes first.
  TESTBED_LOCKED=1 "$TESTBED_SRC/down.sh"

  ensure_binaries
  ensure_pki
  write_kwok_config

  start_etcd
  start_apiserver
  start_controller_manager
  start_scheduler
  start_kwok
  create_nodes # kwok readies them while the CRDs install
  install_crds
  start_traefik # after the Gateway API CRDs: its informers need them
  install_gateway
  wait_healthy

  log "up: Kubernetes $K8S_VERSION at $APISERVER_URL," \
    "$(kube get nodes --no-headers | wc -l) nodes"
  log "export KUBECONFIG=$KUBECONFIG_PATH"
  echo "$KUBECONFIG_PATH"
}

main "$@"
