#!/usr/bin/env bash
# Builds the test bed's components from pinned Go module sources into bin/ (git-ignored).
# Prebuilt binaries cannot be downloaded here, so everything comes from the Go module proxy.
# A component is rebuilt only when its wrapper module (go.mod, go.sum and its .go files, e.g. the
# cert-manager runner's main.go) changed since it was built.
#
#   hack/build-components.sh [component...]   (default: all)
#   components: kube-apiserver kube-controller-manager kube-scheduler etcd kwok prometheus cert-manager
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CANOPY_BIN:-$root/bin}
tools=$root/hack/tools
mkdir -p "$bin"

k8s_version=v1.36.3
k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${k8s_version} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36 -X k8s.io/component-base/version.gitTreeState=clean"

stamp_of() { cat "$tools/$1/go.mod" "$tools/$1/go.sum" "$tools/$1"/*.go | sha256sum | cut -c1-16; }

# build NAME MODULE_DIR PACKAGE [extra go build args...]
build() {
  local name=$1 dir=$2 pkg=$3; shift 3
  local stamp; stamp=$(stamp_of "$dir")
  if [[ -x "$bin/$name" && "$(cat "$bin/.$name.stamp" 2>/dev/null)" == "$stamp" ]]; then
    echo "build-components: $name is up to date"
    return
  fi
  echo "build-components: building $name from $pkg (first build takes minutes)"
  local start=$SECONDS
  (cd "$tools/$dir" && go build -trimpath -o "$bin/$name.tmp" "$@" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  echo "$stamp" > "$bin/.$name.stamp"
  echo "build-components: built $name in $((SECONDS - start)) s"
}

one() {
  case $1 in
    kube-apiserver|kube-controller-manager|kube-scheduler)
      build "$1" k8s "k8s.io/kubernetes/cmd/$1" -ldflags "$k8s_ldflags" ;;
    etcd) build etcd etcd go.etcd.io/etcd/server/v3 -ldflags "-s -w" ;;
    kwok) build kwok kwok sigs.k8s.io/kwok/cmd/kwok -ldflags "-s -w" ;;
    prometheus) GOFLAGS=-mod=mod build prometheus prometheus github.com/prometheus/prometheus/cmd/prometheus -ldflags "-s -w" ;;
    cert-manager) build cert-manager certmanager ./ -ldflags "-s -w" ;;
    *) echo "build-components: unknown component $1" >&2; exit 2 ;;
  esac
}

if [[ $# -eq 0 ]]; then
  set -- etcd kube-apiserver kube-controller-manager kube-scheduler kwok prometheus cert-manager
fi
for c in "$@"; do one "$c"; done
