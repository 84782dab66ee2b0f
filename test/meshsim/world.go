package meshsim

import (
	"sort"
	"strings"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// World is what the simulator routes over: the cluster's routing rules and the workloads
// behind the Services they name. The simulator lists it from its informers every tick;
// tests build it by hand.
type World struct {
	VirtualServices  []*networkingv1.VirtualService
	DestinationRules []*networkingv1.DestinationRule
	Services         []*corev1.Service
	Deployments      []*appsv1.Deployment
}

const clusterDomain = "svc.cluster.local"

// serviceRef is a Kubernetes Service a host name stands for.
type serviceRef struct{ Namespace, Name string }

func (s serviceRef) FQDN() string { return s.Name + "." + s.Namespace + "." + clusterDomain }

// resolveHost maps a host as Istio reads it in a rule of namespace ns to the Service it
// names: "reviews" (in ns), "reviews.shop", "reviews.shop.svc" or
// "reviews.shop.svc.cluster.local". Other hosts are not Services.
func resolveHost(host, ns string) (serviceRef, bool) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" || strings.Contains(host, "*") {
		return serviceRef{}, false
	}
	parts := strings.Split(host, ".")
	switch {
	case len(parts) == 1:
		return serviceRef{Namespace: ns, Name: parts[0]}, true
	case len(parts) == 2:
		return serviceRef{Namespace: parts[1], Name: parts[0]}, true
	case len(parts) == 3 && parts[2] == "svc":
		return serviceRef{Namespace: parts[1], Name: parts[0]}, true
	case len(parts) > 3 && strings.Join(parts[2:], ".") == clusterDomain:
		return serviceRef{Namespace: parts[1], Name: parts[0]}, true
	}
	return serviceRef{}, false
}

// fqdn is a host's fully qualified name when it names a Service, else the host itself.
func fqdn(host, ns string) string {
	if ref, ok := resolveHost(host, ns); ok {
		return ref.FQDN()
	}
	return strings.ToLower(host)
}

func (w *World) service(ref serviceRef) *corev1.Service {
	for _, s := range w.Services {
		if s.Namespace == ref.Namespace && s.Name == ref.Name {
			return s
		}
	}
	return nil
}

// endpoint is a workload behind a Service, weighted by its replicas, as Envoy balances
// over the pods.
type endpoint struct {
	Deployment *appsv1.Deployment
	Replicas   int32
}

// endpoints are the Deployments whose pod template the Service (and the subset's labels)
// select. Deployments are matched by their template rather than their Pods so that the
// simulator works the same on envtest (no Pods) and on the local cluster; one scaled to
// zero has no endpoints.
func (w *World) endpoints(svc *corev1.Service, subset map[string]string) []endpoint {
	if svc == nil || len(svc.Spec.Selector) == 0 {
		return nil
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	var sub labels.Selector
	if len(subset) > 0 {
		sub = labels.SelectorFromSet(subset)
	}
	var out []endpoint
	for _, d := range w.Deployments {
		if d.Namespace != svc.Namespace || d.DeletionTimestamp != nil {
			continue
		}
		tl := labels.Set(d.Spec.Template.Labels)
		if !sel.Matches(tl) || sub != nil && !sub.Matches(tl) {
			continue
		}
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		if replicas > 0 {
			out = append(out, endpoint{Deployment: d, Replicas: replicas})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Deployment.Name < out[j].Deployment.Name })
	return out
}

// subsetLabels finds a subset's labels in the DestinationRules for a Service, preferring
// (as Istio does) a rule in the client's namespace, then one in the Service's.
func (w *World) subsetLabels(ref serviceRef, subset, clientNS string) (map[string]string, bool) {
	var candidates []*networkingv1.DestinationRule
	for _, dr := range w.DestinationRules {
		if fqdn(dr.Spec.Host, dr.Namespace) == ref.FQDN() {
			candidates = append(candidates, dr)
		}
	}
	rank := func(dr *networkingv1.DestinationRule) int {
		switch dr.Namespace {
		case clientNS:
			return 0
		case ref.Namespace:
			return 1
		}
		return 2
	}
	sort.SliceStable(candidates, func(i, j int) bool { return rank(candidates[i]) < rank(candidates[j]) })
	// The first rule that applies is the only one Istio reads.
	if len(candidates) == 0 {
		return nil, false
	}
	for _, s := range candidates[0].Spec.Subsets {
		if s.Name == subset {
			return s.Labels, true
		}
	}
	return nil, false
}

// stream is one host of a VirtualService that synthetic requests are sent to.
type stream struct {
	VS   *networkingv1.VirtualService
	Host string // as written in the VirtualService
	// Gateway is "mesh" for traffic from sidecars, else the gateway the requests enter by.
	Gateway string
}

// streams lists the hosts to send traffic to. When several VirtualServices claim a host
// for the same gateway, the oldest wins, as in Istio.
func (w *World) streams() []stream {
	vss := append([]*networkingv1.VirtualService(nil), w.VirtualServices...)
	sort.SliceStable(vss, func(i, j int) bool {
		a, b := vss[i], vss[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	seen := map[string]bool{}
	var out []stream
	for _, vs := range vss {
		if vs.DeletionTimestamp != nil {
			continue
		}
		gateway := "mesh"
		if gws := vs.Spec.Gateways; len(gws) > 0 && !contains(gws, "mesh") {
			gateway = gws[0]
		}
		for _, h := range vs.Spec.Hosts {
			if strings.Contains(h, "*") {
				continue // nobody sends a request to a wildcard
			}
			key := gateway + "|" + fqdn(h, vs.Namespace)
			if seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, stream{VS: vs, Host: h, Gateway: gateway})
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
