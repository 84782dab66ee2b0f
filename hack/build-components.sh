#!/usr/bin/env bash
# Builds the test bed's components from pinned Go module sources into bin/ (git-ignored).
# Prebuilt binaries cannot be downloaded here, so everything comes from the Go module proxy.
# A component is rebuilt only when its wrapper module (go.mod, go.sum and its .go files, e.g. the
# cert-manager runner's main.go) changed since it was built.
#
#   hack/build-components.sh [component...]   (default: all)
#   components: kube-apiserver kube-controller-manager kube-scheduler etcd kwok prometheus cert-manager
#               helm kustomize pilot-discovery istioctl victoria-metrics influxd
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CANOPY_BIN:-$root/bin}
tools=$root/hack/tools
mkdir -p "$bin"

k8s_version=v1.36.3
k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${k8s_version} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36 -X k8s.io/component-base/version.gitTreeState=clean"

helm_version=v3.22.0
kustomize_version=v5.8.2
# Helm's own Makefile stamps its version and the Kubernetes version of its client-go (what
# `helm template` assumes as .Capabilities.KubeVersion); both are read from the wrapper's go.mod.
helm_k8s_minor=$(sed -n 's|^\s*k8s.io/client-go v0\.\([0-9]*\)\..*|\1|p' "$tools/helm/go.mod")
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${helm_version} -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for p in pkg/lint/rules pkg/chartutil; do
  helm_ldflags+=" -X helm.sh/helm/v3/$p.k8sVersionMajor=1 -X helm.sh/helm/v3/$p.k8sVersionMinor=${helm_k8s_minor}"
done
kustomize_ldflags="-s -w -X sigs.k8s.io/kustomize/api/provenance.version=kustomize/${kustomize_version}"
# Istio stamps its version into istio.io/istio/pkg/version; istioctl prints it and istiod reports
# it to proxies. The pinned commit is the 1.31 line's (see docs/testing.md).
istio_commit=$(sed -n 's|^require istio.io/istio v0.0.0-[0-9]*-\([0-9a-f]*\)$|\1|p' "$tools/istio/go.mod")
istio_ldflags="-X istio.io/istio/pkg/version.buildVersion=1.31-dev -X istio.io/istio/pkg/version.buildGitRevision=${istio_commit} -X istio.io/istio/pkg/version.buildStatus=Clean"
influxd_version=$(sed -n 's|^require github.com/influxdata/influxdb v\(.*\)$|\1|p' "$tools/influxdb/go.mod")
influxd_ldflags="-X main.version=${influxd_version} -X main.branch=${influxd_version%.*}"

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
    # A PromQL/MetricsQL server other than Prometheus, for the victoriametrics metric provider.
    # Pure Go (CGO_ENABLED=0 selects its pure-Go zstd), so it needs no C toolchain.
    victoria-metrics) CGO_ENABLED=0 build victoria-metrics victoriametrics github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics -ldflags "-s -w" ;;
    # InfluxDB 1.x for the influxql and influxdb (Flux) metric providers. 1.8 is the newest 1.x
    # whose Flux is pure Go; later ones link Flux's Rust library through cgo (docs/testing.md).
    influxd) CGO_ENABLED=0 build influxd influxdb github.com/influxdata/influxdb/cmd/influxd -ldflags "-s -w $influxd_ldflags" ;;
    cert-manager) build cert-manager certmanager ./ -ldflags "-s -w" ;;
    helm) build helm helm helm.sh/helm/v3/cmd/helm -ldflags "$helm_ldflags" ;;
    kustomize) build kustomize kustomize sigs.k8s.io/kustomize/kustomize/v5 -ldflags "$kustomize_ldflags" ;;
    # Istio's control plane (istiod) and CLI, from the istio.io/istio commit hack/tools/istio pins.
    pilot-discovery) build pilot-discovery istio istio.io/istio/pilot/cmd/pilot-discovery -ldflags "-s -w $istio_ldflags" ;;
    istioctl) build istioctl istio istio.io/istio/istioctl/cmd/istioctl -ldflags "-s -w $istio_ldflags" ;;
    *) echo "build-components: unknown component $1" >&2; exit 2 ;;
  esac
}

if [[ $# -eq 0 ]]; then
  set -- etcd kube-apiserver kube-controller-manager kube-scheduler kwok prometheus cert-manager helm kustomize \
    pilot-discovery istioctl victoria-metrics influxd
fi
for c in "$@"; do one "$c"; done
