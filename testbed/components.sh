# shellcheck shell=bash
# How each control-plane component starts (sourced by up.sh and restart.sh, after lib.sh).

# --unsafe-no-fsync: the data is thrown away on `down` anyway, and fsync on every
# write is what makes etcd slow on small VMs.
# A restart (restart.sh) passes --keep-data: etcd comes back with the cluster it had.
start_etcd() {
  [[ "${1:-}" == --keep-data ]] || rm -rf "$ETCD_DATA_DIR"
  start_component etcd \
    --name testbed \
    --data-dir "$ETCD_DATA_DIR" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "testbed=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync \
    --log-level warn
  wait_for "etcd" 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
}

# --endpoint-reconciler-type=none: the API server refuses to publish a loopback address
# as the endpoint of the in-cluster `kubernetes` Service, and no real pod runs here to
# call it, so that Service simply has no endpoints.
start_apiserver() {
  start_component kube-apiserver \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 \
    --advertise-address 127.0.0.1 \
    --endpoint-reconciler-type none \
    --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$PKI_DIR/apiserver.crt" \
    --tls-private-key-file "$PKI_DIR/apiserver.key" \
    --client-ca-file "$PKI_DIR/ca.crt" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI_DIR/sa.pub" \
    --service-account-signing-key-file "$PKI_DIR/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --allow-privileged=true \
    --profiling=false
  wait_for "kube-apiserver /readyz" 120 kube get --raw /readyz
}

start_controller_manager() {
  local kc="$STATE_DIR/kube-controller-manager.kubeconfig"
  # Leader election off: a single instance, and restarts need not wait out a lease.
  start_component kube-controller-manager \
    --kubeconfig "$kc" \
    --authentication-kubeconfig "$kc" \
    --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 \
    --secure-port "$KCM_PORT" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$PKI_DIR/sa.key" \
    --root-ca-file "$PKI_DIR/ca.crt" \
    --cluster-signing-cert-file "$PKI_DIR/ca.crt" \
    --cluster-signing-key-file "$PKI_DIR/ca.key" \
    --profiling=false
}

start_scheduler() {
  local kc="$STATE_DIR/kube-scheduler.kubeconfig"
  start_component kube-scheduler \
    --kubeconfig "$kc" \
    --authentication-kubeconfig "$kc" \
    --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 \
    --secure-port "$SCHEDULER_PORT" \
    --leader-elect=false \
    --profiling=false
}

# kwok plays kubelet for nodes annotated kwok.x-k8s.io/node=fake only, so a real node
# could join the same control plane without kwok touching it.
# Node leases keep the node lifecycle controller from finding the fake nodes stale (after ~50 s)
# and marking every pod on them NotReady for good.
start_kwok() {
  start_component kwok \
    --kubeconfig "$STATE_DIR/kwok.kubeconfig" \
    --config "$STATE_DIR/kwok.yaml" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --manage-nodes-with-label-selector= \
    --disregard-status-with-annotation-selector kwok.x-k8s.io/status=custom \
    --node-lease-duration-seconds 40 \
    --cidr "$POD_CIDR" \
    --node-ip 127.0.0.1 \
    --server-address "127.0.0.1:$KWOK_PORT"
}

# Traefik, the testbed's Gateway API implementation: its Kubernetes Gateway provider reads the
# GatewayClass `traefik`, the Gateway gateway-system/inference-gateway (gateway.yaml) and the
# HTTPRoutes attached to it from the API server, and forwards HTTP from 127.0.0.1:$TRAEFIK_WEB_PORT
# (the Gateway's listener) to the Ready endpoints of each backend's EndpointSlices: the pods'
# loopback addresses, never a Service's ClusterIP (no Service here asks for Traefik's native
# load balancing). Its request counters, per service and status code, are on
# 127.0.0.1:$TRAEFIK_METRICS_PORT/metrics. It talks to nothing outside: no version check, no
# usage report.
start_traefik() {
  KUBECONFIG="$KUBECONFIG_PATH" start_component traefik \
    --global.checkNewVersion=false \
    --global.sendAnonymousUsage=false \
    --entryPoints.web.address="127.0.0.1:$TRAEFIK_WEB_PORT" \
    --entryPoints.metrics.address="127.0.0.1:$TRAEFIK_METRICS_PORT" \
    --providers.kubernetesGateway=true \
    --metrics.prometheus=true \
    --metrics.prometheus.entryPoint=metrics \
    --metrics.prometheus.addServicesLabels=true \
    --metrics.prometheus.addRoutersLabels=true \
    --log.level=INFO
  wait_for "traefik /metrics" 30 curl -fsS "http://127.0.0.1:$TRAEFIK_METRICS_PORT/metrics"
}
