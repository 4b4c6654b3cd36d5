#!/usr/bin/env bash
# Build the testbed's Go binaries into a cache outside the repository:
#   ~/.cache/unbusy-testbed/<k8s version>/bin/
#     kube-apiserver kube-controller-manager kube-scheduler
#     kubectl                                                 (k8s.io/kubernetes)
#     etcd                                                    (go.etcd.io/etcd/server/v3)
#     kwok                                                    (sigs.k8s.io/kwok)
#     helm                                                    (helm.sh/helm/v3)
#     traefik       the testbed's Gateway API proxy           (github.com/traefik/traefik/v3)
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

# Traefik is built from its module's own tree, as the Go module proxy serves it: its go.mod
# replaces one module with a folder of that tree (./pkg/config/dynamic/ext), which neither a
# wrapper module nor `go install pkg@version` can follow. The source is copied out of the
# module cache (read-only there) and built in place, with three changes, each because the Go
# module proxy does not serve a module the release pins:
# - that folder, a nested module of its own (github.com/traefik/traefik/dynamic/ext), is not in
#   the module's zip: it is the extension point of Traefik's commercial builds, two empty
#   types in the open-source one, and is written here as such;
# - Traefik's fork github.com/containous/go-http-auth (basic and digest auth middlewares) at the
#   commit v3.7.13 pins is not served: the fork's commit that Traefik v3.7.10 pinned is;
# - lego's DNS-01 providers (ACME certificates through ~180 DNS services' SDKs, several of
#   which the proxy refuses): the DNS challenge answers an error instead. The testbed asks
#   for no certificate.
# Its web UI is not in the module either (webui/static is empty there): the dashboard stays off.
build_traefik() {
  up_to_date traefik "$TRAEFIK_VERSION" && return 0
  log "building traefik $TRAEFIK_VERSION (the first build takes ~15 minutes on 2 cores)"
  local module=github.com/traefik/traefik/v3 src
  src="$(go mod download -json "$module@$TRAEFIK_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  local work="$CACHE_ROOT/src/traefik@$TRAEFIK_VERSION"
  rm -rf "$work" && mkdir -p "$(dirname "$work")" && cp -r "$src" "$work" && chmod -R u+w "$work"
  (
    cd "$work"
    mkdir -p pkg/config/dynamic/ext
    printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24.0\n' >pkg/config/dynamic/ext/go.mod
    printf 'package ext\n\n// HTTP extends dynamic.HTTP (nothing in the open-source build).\ntype HTTP struct{}\n\n// Router extends dynamic.Router (nothing in the open-source build).\ntype Router struct{}\n' \
      >pkg/config/dynamic/ext/ext.go
    go mod edit -replace \
      github.com/abbot/go-http-auth=github.com/containous/go-http-auth@v0.4.1-0.20200324110947-a37a7636d23e
    python3 - pkg/provider/acme/provider.go <<'PATCH'
import sys
path = sys.argv[1]
text = open(path).read()
call = "provider, err = dns.NewDNSChallengeProviderByName(p.DNSChallenge.Provider)"
imp = '\t"github.com/go-acme/lego/v5/providers/dns"\n'
if call not in text or imp not in text:
    sys.exit(f"{path}: the DNS challenge call to cut out is not there any more; update build.sh")
text = text.replace(imp, "").replace(
    call, 'err = fmt.Errorf("DNS challenge provider %s: not built into this Traefik", p.DNSChallenge.Provider)')
open(path, "w").write(text)
PATCH
    # -mod=mod: the replaced fork's checksums are not in the module's go.sum; the build records them.
    go build -mod=mod -trimpath -ldflags "$LDFLAGS -X $module/pkg/version.Version=$TRAEFIK_VERSION" \
      -o "$BIN_DIR/traefik" ./cmd/traefik
  )
  stamp traefik "$TRAEFIK_VERSION"
}

main() {
  mkdir -p "$BIN_DIR"
  local start=$SECONDS
  build_kube
  build_etcd
  go_install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
  go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
  build_traefik
  log "binaries ready in $BIN_DIR ($((SECONDS - start))s)"
  echo "$BIN_DIR"
}

main "$@"
