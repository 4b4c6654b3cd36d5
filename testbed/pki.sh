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
# The certificates are generated once and reused until `make testbed-clean`.

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

b64() { base64 -w0 <"$1"; }

# write_kubeconfig FILE IDENTITY: kubeconfig with embedded certs for one identity.
write_kubeconfig() {
  local file="$1" id="$2"
  (
    umask 077
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: unbusy-testbed
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $(b64 "$PKI_DIR/ca.crt")
users:
- name: $id
  user:
    client-certificate-data: $(b64 "$PKI_DIR/$id.crt")
    client-key-data: $(b64 "$PKI_DIR/$id.key")
contexts:
- name: unbusy-testbed
  context:
    cluster: unbusy-testbed
    user: $id
    namespace: default
current-context: unbusy-testbed
EOF
  )
}

# Certificates are generated once and kept, so restarts are fast and a kubeconfig
# copied elsewhere stays valid. Kubeconfigs are rewritten on every start: the API
# server port may have changed.
ensure_pki() {
  if [[ ! -f "$PKI_DIR/sa.pub" ]]; then
    log "generating certificates in $PKI_DIR"
    generate_pki
  fi
  write_kubeconfig "$KUBECONFIG_PATH" admin
  local id
  for id in kube-controller-manager kube-scheduler kwok; do
    write_kubeconfig "$STATE_DIR/$id.kubeconfig" "$id"
  done
}
