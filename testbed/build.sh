#!/usr/bin/env bash
# Build the testbed's Go binaries into a cache outside the repository:
#   ~/.cache/unbusy-testbed/<k8s version>/bin/
#     kube-apiserver kube-controller-manager kube-scheduler
#     kubectl                                                 (k8s.io/kubernetes)
#     etcd                                                    (go.etcd.io/etcd/server/v3)
#     kwok                                                    (sigs.k8s.io/kwok)
#     helm                                                    (helm.sh/helm/v3)
# A binary is rebuilt only when it is missing or was built from another version (the
# stamp files bin/.<name>.version), so later runs return at once. Every source comes
# from the Go module proxy; nothing from release pages.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

export PATH="$PATH:/usr/local/go/bin"
# Two cores: more parallel compile jobs only add memory pressure. -mod=mod lets the
# wrapper modules fill in go.sum lines a newer Go might want.
export GOFLAGS="-p=2 -mod=mod"
export CGO_ENABLED=0
# Use the local Go even where a module's go.mod names a newer toolchain.
export GOTOOLCHAIN=local

CACHE_ROOT="${UNBUSY_TESTBED_CACHE:-$HOME/.cache/unbusy-testbed}"
BIN_DIR="$CACHE_ROOT/$K8S_VERSION/bin"
LDFLAGS="-s -w"

log() { echo "[testbed-build] $*" >&2; }

# up_to_date NAME VERSION: the binary exists and was built from VERSION.
up_to_date() {
  [[ -x "$BIN_DIR/$1" && "$(cat "$BIN_DIR/.$1.version" 2>/dev/null)" == "$2" ]]
}

stamp() { echo "$2" >"$BIN_DIR/.$1.version"; }

# The version is stamped into the binaries the way the upstream build does it, so
# `kubectl version` reports the real server version instead of v0.0.0.
kube_ldflags() {
  local pkg=k8s.io/component-base/version
  local v="${K8S_VERSION#v}"
  local major="${v%%.*}" rest="${v#*.}"
  local minor="${rest%%.*}"
  echo "$LDFLAGS -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor" \
    "-X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z" \
    "-X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
}

# One `go build` for all four: they share most packages, so this is much faster than
# separate builds. kubectl is built too because a fresh machine has none (Debian
# bookworm does not package it), and a matching one avoids version-skew surprises.
build_kube() {
  local b missing=()
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    up_to_date "$b" "$K8S_VERSION" || missing+=("$b")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "building ${missing[*]} $K8S_VERSION (the first build takes ~10 minutes on 2 cores)"
  (cd "$here/go/kube" && go build -trimpath -ldflags "$(kube_ldflags)" -o "$BIN_DIR/" \
    "${missing[@]/#/k8s.io/kubernetes/cmd/}")
  for b in "${missing[@]}"; do stamp "$b" "$K8S_VERSION"; done
}

build_etcd() {
  up_to_date etcd "$ETCD_VERSION" && return 0
  log "building etcd $ETCD_VERSION"
  (cd "$here/go/etcd" && go build -trimpath -ldflags "$LDFLAGS" -o "$BIN_DIR/etcd" \
    go.etcd.io/etcd/server/v3)
  stamp etcd "$ETCD_VERSION"
}

# kwok and helm have no replace directives, so plain `go install pkg@version` works.
go_install() {
  local name="$1" pkg="$2" version="$3"
  up_to_date "$name" "$version" && return 0
  log "building $pkg@$version"
  GOBIN="$BIN_DIR" go install -trimpath -ldflags "$LDFLAGS" "$pkg@$version"
  stamp "$name" "$version"
}

main() {
  mkdir -p "$BIN_DIR"
  local start=$SECONDS
  build_kube
  build_etcd
  go_install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
  go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
  log "binaries ready in $BIN_DIR ($((SECONDS - start))s)"
  echo "$BIN_DIR"
}

main "$@"
