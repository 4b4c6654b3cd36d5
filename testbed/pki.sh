# shellcheck shell=bash
# Certificates and kubeconfigs for the testbed (sourced by up.sh after lib.sh).
#
# One self-signed CA signs the API server's serving certificate and one client
# certificate per identity. Identities follow kubeadm's conventions so that the
# bootstrap RBAC roles of the API server apply unchanged:
#   admin                    CN=testbed-admin, O=system:masters (full access)
#   kube-controller-manager  CN=system:kube-controller-manager
#   kube-scheduler           CN=system:kube-scheduler
#   kwok                     CN=kwok-controller, O=system:masters (it stands in for
#                            every kubelet, so it needs to write any node and pod)
# A separate RSA key pair signs and verifies service-account tokens.
# Everything is generated once and reused until `make testbed-clean`.

CERT_DAYS=3650

# ca_sign NAME SUBJECT EXTFILE_CONTENT: key + certificate signed by the testbed CA.
ca_sign() {
  local name="$1" subject="$2" ext="$3"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI_DIR/$name.key" 2>/dev/null
  openssl req -new -key "$PKI_DIR/$name.key" -subj "$subject" -out "$PKI_DIR/$name.csr"
  openssl x509 -req -in "$PKI_DIR/$name.csr" -CA "$PKI_DIR/ca.crt" -CAkey "$PKI_DIR/ca.key" \
    -CAcreateserial -days "$CERT_DAYS" -sha256 -out "$PKI_DIR/$name.crt" \
    -extfile <(printf '%s\n' "$ext") 2>/dev/null
  rm -f "$PKI_DIR/$name.csr"
}

client_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth'

generate_pki() {
  mkdir -p "$PKI_DIR"
  chmod 700 "$PKI_DIR"

  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI_DIR/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI_DIR/ca.key" -subj "/CN=unbusy-testbed-ca" \
    -days "$CERT_DAYS" -sha256 -out "$PKI_DIR/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"

  ca_sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$SERVICE_API_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"

  ca_sign admin "/O=system:masters/CN=testbed-admin" "$client_ext"
  ca_sign kube-controller-manager "/CN=system:kube-controller-manager" "$client_ext"
  ca_sign kube-scheduler "/CN=system:kube-scheduler" "$client_ext"
  ca_sign kwok "/O=system:masters/CN=kwok-controller" "$client_ext"

  # Service-account tokens: RSA, as in kubeadm clusters.
  openssl genrsa -out "$PKI_DIR/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub" 2>/dev/null
}

# write_kubeconfig FILE IDENTITY: kubeconfig with embedded certs for one identity.
write_kubeconfig() {
  local file="$1" id="$2"
  rm -f "$file"
  "$KUBECTL" config --kubeconfig "$file" set-cluster unbusy-testbed --server "$APISERVER_URL" \
    --certificate-authority "$PKI_DIR/ca.crt" --embed-certs >/dev/null
  "$KUBECTL" config --kubeconfig "$file" set-credentials "$id" \
    --client-certificate "$PKI_DIR/$id.crt" --client-key "$PKI_DIR/$id.key" --embed-certs >/dev/null
  "$KUBECTL" config --kubeconfig "$file" set-context unbusy-testbed --cluster unbusy-testbed \
    --user "$id" --namespace default >/dev/null
  "$KUBECTL" config --kubeconfig "$file" use-context unbusy-testbed >/dev/null
  chmod 600 "$file"
}

# Generate what is missing; keep what exists so restarts are fast and stable.
ensure_pki() {
  if [[ ! -f "$PKI_DIR/sa.pub" ]]; then
    log "generating certificates in $PKI_DIR"
    generate_pki
  fi
  [[ -f "$KUBECONFIG_PATH" ]] || write_kubeconfig "$KUBECONFIG_PATH" admin
  local id
  for id in kube-controller-manager kube-scheduler kwok; do
    [[ -f "$STATE_DIR/$id.kubeconfig" ]] || write_kubeconfig "$STATE_DIR/$id.kubeconfig" "$id"
  done
}
