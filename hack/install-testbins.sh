#!/usr/bin/env bash
# hack/install-testbins.sh [DEST]
#
# Builds the real Kubernetes control plane the tests and the demo run against, from the
# Go module proxy only (no Docker engine, no binary downloads on these machines):
#
#   DEST/etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, kubectl
#   DEST/kwok-stages.yaml          kwok's fast node/pod Stage objects (from the kwok module)
#   DEST/cert-manager-crds/*.yaml  cert-manager CRDs (from the cert-manager module)
#
# DEST defaults to a versioned folder in the user's cache, so fresh clones reuse it.
# Each artifact has a stamp (DEST/.stamps/NAME) holding its recipe; when it matches, nothing
# is rebuilt, so a warm run takes well under a second. Builds run one at a time (2-core
# machines) and print a heartbeat while the compiler is silent. The last line printed on
# stdout is DEST, for callers: KUBEBUILDER_ASSETS=$(hack/install-testbins.sh).
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.1}          # k8s.io/* v0.37 = controller-runtime v0.25
ETCD_VERSION=${ETCD_VERSION:-3.7.3}
KWOK_VERSION=${KWOK_VERSION:-0.8.0}
CERT_MANAGER_VERSION=${CERT_MANAGER_VERSION:-1.21.1}
# istiod for the end-to-end suite against the real control plane (WITH_ISTIO=1 only: a cold
# build takes about 4 minutes). Newer pseudo-versions pin modules the proxy refuses.
ISTIO_VERSION=${ISTIO_VERSION:-v0.0.0-20260423205519-b01690e6db7d}

CACHE_ROOT=${MESHPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshplane}
DEST=${1:-$CACHE_ROOT/testbin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION}
mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
WORK=${TESTBINS_WORK:-$CACHE_ROOT/testbin/.build}
STAMPS=$DEST/.stamps
mkdir -p "$WORK" "$STAMPS"

export GOFLAGS=-buildvcs=false
export GOTOOLCHAIN=local
LDSTRIP="-s -w"

log() { printf '[testbin] %s\n' "$*" >&2; }
stamp_ok() { [[ -e "$DEST/$1" && -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
stamp_set() { printf '%s' "$2" >"$STAMPS/$1"; }
moddir() { go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'; }
modfile() { go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p'; }

# slow LABEL CMD...: runs CMD, printing a heartbeat every 20s so a cold build never looks hung.
slow() {
  local label=$1; shift
  local t0=$SECONDS
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && log "  still $label ($((SECONDS - t0))s)"
  done
  local rc=0
  wait "$pid" || rc=$?
  ((rc == 0)) && log "  $label took $((SECONDS - t0))s"
  return $rc
}

# ---------------------------------------------------------------- kubernetes
# k8s.io/kubernetes requires its staging modules at v0.0.0 with ./staging replaces that do not
# apply to a dependency; a wrapper module replaces each one with its published v0.Y.Z.
k8s_module() {
  local d=$WORK/k8s-$K8S_VERSION staging=v0.${K8S_VERSION#*.}
  if [[ ! -f $d/.ready ]]; then
    mkdir -p "$d"
    local kmod; kmod=$(cd "$d" && modfile "k8s.io/kubernetes@v$K8S_VERSION")
    [[ -f $kmod ]] || { log "cannot download k8s.io/kubernetes@v$K8S_VERSION"; return 1; }
    {
      printf 'module testbins/k8s\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$K8S_VERSION"
      sed -n '/^replace (/,/^)/p' "$kmod" | awk '/=> \.\/staging/{print $1}' | while read -r m; do
        grep -qE "^[[:space:]]+$m v0\.0\.0" "$kmod" && printf '\t%s => %s %s\n' "$m" "$m" "$staging"
      done
      printf ')\n'
    } >"$d/go.mod"
    printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"\n\t_ "k8s.io/kubernetes/cmd/kube-scheduler"\n\t_ "k8s.io/kubernetes/cmd/kubectl"\n)\n' >"$d/tools.go"
    log "resolving k8s.io/kubernetes v$K8S_VERSION modules (first time only)"
    (cd "$d" && slow "downloading modules" go mod tidy) >&2
    touch "$d/.ready"
  fi
  echo "$d"
}

build_k8s() { # name
  local name=$1 recipe="k8s.io/kubernetes/cmd/$1@v$K8S_VERSION"
  stamp_ok "$name" "$recipe" && return 0
  local d minor=${K8S_VERSION#*.}; minor=${minor%%.*}
  d=$(k8s_module)
  local ld="$LDSTRIP" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  log "building $name v$K8S_VERSION (minutes when cold)"
  (cd "$d" && slow "building $name" go build -trimpath -ldflags "$ld" -o "$DEST/$name.tmp" "k8s.io/kubernetes/cmd/$name")
  mv -f "$DEST/$name.tmp" "$DEST/$name"
  stamp_set "$name" "$recipe"
}

# ---------------------------------------------------------------- etcd
# The server module's package main is its root, and its go.mod has ../ replaces, so it is
# built through a wrapper module rather than `go install`.
build_etcd() {
  local recipe="go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  stamp_ok etcd "$recipe" && return 0
  local d=$WORK/etcd-$ETCD_VERSION
  if [[ ! -f $d/.ready ]]; then
    mkdir -p "$d"
    printf 'module testbins/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' "$ETCD_VERSION" >"$d/go.mod"
    printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$d/tools.go"
    (cd "$d" && slow "downloading etcd modules" go mod tidy) >&2
    touch "$d/.ready"
  fi
  log "building etcd v$ETCD_VERSION"
  (cd "$d" && slow "building etcd" go build -trimpath -ldflags "$LDSTRIP" -o "$DEST/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv -f "$DEST/etcd.tmp" "$DEST/etcd"
  stamp_set etcd "$recipe"
}

# ---------------------------------------------------------------- kubectl
install_kubectl() {
  if [[ -x /usr/bin/kubectl && -z ${BUILD_KUBECTL:-} ]]; then
    stamp_ok kubectl "link:/usr/bin/kubectl" && return 0
    ln -sfn /usr/bin/kubectl "$DEST/kubectl"
    stamp_set kubectl "link:/usr/bin/kubectl"
  else
    build_k8s kubectl
  fi
}

# ---------------------------------------------------------------- kwok
build_kwok() {
  local recipe="sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
  if ! stamp_ok kwok "$recipe"; then
    log "building kwok v$KWOK_VERSION"
    slow "building kwok" env GOBIN="$WORK/gobin-kwok" go install -trimpath -ldflags "$LDSTRIP" "$recipe"
    mv -f "$WORK/gobin-kwok/kwok" "$DEST/kwok"
    stamp_set kwok "$recipe"
  fi
  if ! stamp_ok kwok-stages.yaml "$recipe"; then
    local m f; m=$(cd "$WORK" && moddir "sigs.k8s.io/kwok@v$KWOK_VERSION")
    {
      for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
        pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
        echo '---'; cat "$m/kustomize/stage/$f"
      done
    } >"$DEST/kwok-stages.yaml"
    stamp_set kwok-stages.yaml "$recipe"
  fi
}

# ---------------------------------------------------------------- cert-manager CRDs
install_cert_manager_crds() {
  local recipe="github.com/cert-manager/cert-manager@v$CERT_MANAGER_VERSION/deploy/crds"
  stamp_ok cert-manager-crds "$recipe" && return 0
  local m; m=$(cd "$WORK" && moddir "github.com/cert-manager/cert-manager@v$CERT_MANAGER_VERSION")
  rm -rf "$DEST/cert-manager-crds"; mkdir -p "$DEST/cert-manager-crds"
  cp "$m"/deploy/crds/*.yaml "$DEST/cert-manager-crds/"
  chmod u+w "$DEST"/cert-manager-crds/*.yaml
  stamp_set cert-manager-crds "$recipe"
}

# ---------------------------------------------------------------- cert-manager controller
# cert-manager's controller binary lives in an unpublished module, so hack/cert-manager (a
# separate module, to keep cert-manager's dependencies out of the operator's go.mod) wires
# the published controller packages itself. The stamp hashes its sources, so edits rebuild.
build_cert_manager_controller() {
  local src; src=$(cd "$(dirname "${BASH_SOURCE[0]}")/cert-manager" && pwd)
  local pinned; pinned=$(sed -n 's|^[[:space:]]*github.com/cert-manager/cert-manager v\([^[:space:]]*\).*|\1|p' "$src/go.mod")
  if [[ $pinned != "$CERT_MANAGER_VERSION" ]]; then
    log "hack/cert-manager/go.mod requires cert-manager v$pinned but CERT_MANAGER_VERSION=$CERT_MANAGER_VERSION"
    return 1
  fi
  local sum; sum=$(cd "$src" && find . -maxdepth 1 -type f \( -name '*.go' ! -name '*_test.go' -o -name go.mod -o -name go.sum \) \
    | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)
  local recipe="github.com/cert-manager/cert-manager@v$CERT_MANAGER_VERSION hack/cert-manager@$sum"
  stamp_ok cert-manager-controller "$recipe" && return 0
  log "building cert-manager-controller (cert-manager v$CERT_MANAGER_VERSION; ~2 min when cold)"
  (cd "$src" && slow "building cert-manager-controller" go build -trimpath \
    -ldflags "$LDSTRIP -X github.com/cert-manager/cert-manager/pkg/util.AppVersion=v$CERT_MANAGER_VERSION" \
    -o "$DEST/cert-manager-controller.tmp" .)
  mv -f "$DEST/cert-manager-controller.tmp" "$DEST/cert-manager-controller"
  stamp_set cert-manager-controller "$recipe"
}

# ---------------------------------------------------------------- istiod (optional)
build_istiod() {
  [[ ${WITH_ISTIO:-} == 1 ]] || return 0
  local recipe="istio.io/istio/pilot/cmd/pilot-discovery@$ISTIO_VERSION"
  stamp_ok pilot-discovery "$recipe" && return 0
  log "building pilot-discovery (istiod) $ISTIO_VERSION (about 4 minutes when cold)"
  # The checksum database answers 404 for istio's pseudo-versions and the modules they pin;
  # those are checked against the proxy only.
  slow "building pilot-discovery" env GOBIN="$WORK/gobin-istio" \
    GONOSUMDB="istio.io,github.com/envoyproxy/go-control-plane,github.com/agentgateway" \
    go install -trimpath -ldflags "$LDSTRIP" "$recipe"
  mv -f "$WORK/gobin-istio/pilot-discovery" "$DEST/pilot-discovery"
  stamp_set pilot-discovery "$recipe"
}

t0=$SECONDS
build_etcd
build_k8s kube-apiserver
build_k8s kube-controller-manager
build_k8s kube-scheduler
install_kubectl
build_kwok
install_cert_manager_crds
build_cert_manager_controller
build_istiod
((SECONDS - t0 > 2)) && log "ready in $((SECONDS - t0))s"
echo "$DEST"
