package meshsim

import (
	"sort"
	"strings"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// World is what the simulator reads from the apiserver: which hosts get traffic (the
// VirtualServices' hosts, the Services' ports, the Gateways' selectors) and who answers
// at an endpoint address (Pods, their ReplicaSets and Deployments). How a request is
// routed is not in it: that comes from istiod (envoyConfig). The simulator lists it from
// its informers every tick; tests build it by hand.
type World struct {
	VirtualServices []*networkingv1.VirtualService
	// HTTPRoutes whose parent is a Service (GAMMA) make sidecars call that Service; those
	// whose parent is one of KubeGateways send their hostnames ingress traffic through it.
	HTTPRoutes []*gwapiv1.HTTPRoute
	Gateways   []*networkingv1.Gateway
	// KubeGateways are the Gateway API's Gateways; those of gatewayClassName istio are
	// run by a simulated proxy of the deployment istiod makes for them.
	KubeGateways []*gwapiv1.Gateway
	Services     []*corev1.Service
	Deployments  []*appsv1.Deployment
	ReplicaSets  []*appsv1.ReplicaSet
	Pods         []*corev1.Pod

	podsByIP map[string]*corev1.Pod
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

// workload is who answers at an endpoint address: a Pod, and the Deployment that owns
// it through its ReplicaSet (nil for a Pod no Deployment owns).
type workload struct {
	Pod        *corev1.Pod
	Deployment *appsv1.Deployment
}

// at finds the workload behind an endpoint address of istiod's EDS; ok is false when no
// running Pod has that IP.
func (w *World) at(ip string) (workload, bool) {
	if w.podsByIP == nil {
		w.podsByIP = map[string]*corev1.Pod{}
		for _, p := range w.Pods {
			if p.Status.PodIP != "" && p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
				w.podsByIP[p.Status.PodIP] = p
			}
		}
	}
	p, ok := w.podsByIP[ip]
	if !ok {
		return workload{}, false
	}
	wl := workload{Pod: p}
	if rs := owner(p.OwnerReferences, "ReplicaSet"); rs != "" {
		for _, r := range w.ReplicaSets {
			if r.Namespace == p.Namespace && r.Name == rs {
				if d := owner(r.OwnerReferences, "Deployment"); d != "" {
					for _, dep := range w.Deployments {
						if dep.Namespace == r.Namespace && dep.Name == d {
							wl.Deployment = dep
						}
					}
				}
			}
		}
	}
	return wl, true
}

// name is the workload's name in metrics: its Deployment's, else its Pod's.
func (wl workload) name() string {
	if wl.Deployment != nil {
		return wl.Deployment.Name
	}
	return wl.Pod.Name
}

func (wl workload) peer() peer {
	if d := wl.Deployment; d != nil {
		return workloadPeer(d.Name, d.Namespace, d.Spec.Template.Labels, d.Spec.Template.Spec.ServiceAccountName)
	}
	return workloadPeer(wl.Pod.Name, wl.Pod.Namespace, wl.Pod.Labels, wl.Pod.Spec.ServiceAccountName)
}

func owner(refs []metav1.OwnerReference, kind string) string {
	for _, o := range refs {
		if o.Kind == kind && o.Controller != nil && *o.Controller {
			return o.Name
		}
	}
	return ""
}

// httpPort is the port a Service's clients call: its first port whose protocol Istio
// reads as HTTP (by appProtocol or name), else its first port.
func httpPort(svc *corev1.Service) int {
	for _, p := range svc.Spec.Ports {
		proto := strings.ToLower(ptrOr(p.AppProtocol, p.Name))
		if proto == "http" || proto == "http2" || strings.HasPrefix(proto, "http-") || strings.HasPrefix(proto, "http2-") {
			return int(p.Port)
		}
	}
	if len(svc.Spec.Ports) > 0 {
		return int(svc.Spec.Ports[0].Port)
	}
	return 0
}

func ptrOr(p *string, def string) string {
	if p != nil && *p != "" {
		return *p
	}
	return def
}

// gateway finds the Gateway a VirtualService names ("ns/name", or "name" in the
// VirtualService's namespace).
func (w *World) gateway(ref, vsNamespace string) *networkingv1.Gateway {
	ns, name, ok := strings.Cut(ref, "/")
	if !ok {
		ns, name = vsNamespace, ref
	}
	for _, g := range w.Gateways {
		if g.Namespace == ns && g.Name == name {
			return g
		}
	}
	return nil
}

// stream is one host of a VirtualService that synthetic requests are sent to.
type stream struct {
	VS   *networkingv1.VirtualService
	Host string // as written in the VirtualService
	// Gateway is "mesh" for traffic from sidecars, else the gateway the requests enter by.
	Gateway string
	// KubeGateway is the Gateway API Gateway the requests enter by (Gateway is then
	// kubeGatewayKey's), nil for the others.
	KubeGateway *gwapiv1.Gateway
}

// istioGatewayClass is the GatewayClass whose Gateways istiod deploys and programs.
const istioGatewayClass = "istio"

// kubeGatewayKey names a Gateway API Gateway among a stream's gateways, where no Istio
// Gateway reference can have the same name (they have no ':').
func kubeGatewayKey(gw *gwapiv1.Gateway) string {
	return "gateway.networking.k8s.io:" + gw.Namespace + "/" + gw.Name
}

func (w *World) kubeGateway(ns, name string) *gwapiv1.Gateway {
	for _, g := range w.KubeGateways {
		if g.Namespace == ns && g.Name == name && g.DeletionTimestamp == nil {
			return g
		}
	}
	return nil
}

// ingressHosts are the hosts a client sends requests for through the HTTP listeners of a
// Gateway API Gateway an HTTPRoute names as parent (all of them, or the section or port
// ref names): the route's hostnames the listener accepts, or the listener's own hostname
// when the route has none. Wildcards are nobody's request. Whether istiod attaches the
// route (allowedRoutes, hostnames, conflicts) is istiod's to say: it routes the requests.
func ingressHosts(hr *gwapiv1.HTTPRoute, gw *gwapiv1.Gateway, ref gwapiv1.ParentReference) []string {
	var out []string
	add := func(h string) {
		if h != "" && !strings.Contains(h, "*") && !contains(out, h) {
			out = append(out, h)
		}
	}
	for _, l := range gw.Spec.Listeners {
		if l.Protocol != gwapiv1.HTTPProtocolType ||
			(ref.SectionName != nil && *ref.SectionName != l.Name) ||
			(ref.Port != nil && *ref.Port != l.Port) {
			continue
		}
		lh := ""
		if l.Hostname != nil {
			lh = strings.ToLower(string(*l.Hostname))
		}
		if len(hr.Spec.Hostnames) == 0 {
			add(lh)
			continue
		}
		for _, h := range hr.Spec.Hostnames {
			h := strings.ToLower(string(h))
			if lh == "" || lh == h || (strings.HasPrefix(lh, "*.") && strings.HasSuffix(h, lh[1:])) {
				add(h)
			}
		}
	}
	return out
}

// kubeGatewayService is the Service istiod binds a Gateway API Gateway's configuration
// to, in the Gateway's namespace: the proxies behind it get the Gateway's listeners. For
// a Gateway istiod deploys that is <name>-<class> (or the name-override annotation's),
// the Service its deployment controller creates; for a manual deployment, the Service a
// Hostname address names.
func kubeGatewayService(gw *gwapiv1.Gateway) string {
	for _, a := range gw.Spec.Addresses {
		if a.Type != nil && *a.Type == gwapiv1.HostnameAddressType {
			name, _, _ := strings.Cut(a.Value, ".")
			return name
		}
	}
	if o := gw.Annotations["gateway.istio.io/name-override"]; o != "" {
		return o
	}
	return gw.Name + "-" + string(gw.Spec.GatewayClassName)
}

// deploymentBehind finds the Deployment whose pods svc selects, nil when none does.
func (w *World) deploymentBehind(svc *corev1.Service) *appsv1.Deployment {
	if len(svc.Spec.Selector) == 0 {
		return nil
	}
	for _, d := range w.Deployments {
		if d.Namespace != svc.Namespace || d.DeletionTimestamp != nil {
			continue
		}
		matches := true
		for k, v := range svc.Spec.Selector {
			if d.Spec.Template.Labels[k] != v {
				matches = false
				break
			}
		}
		if matches {
			return d
		}
	}
	return nil
}

// streams lists the hosts to send traffic to. When several VirtualServices claim a host
// for the same gateway, the oldest wins, as in Istio. A Service an HTTPRoute has as its
// parent (GAMMA mesh routing) is called by sidecars like a VirtualService's host: its
// stream stands for the route as a VirtualService of the route's name and namespace with
// that host, and the requests are routed by what istiod made of the HTTPRoute. So does an
// ingress host of a Gateway API Gateway of class istio an HTTPRoute has as its parent,
// whose requests enter by that Gateway's proxy.
func (w *World) streams() []stream {
	vss := append([]*networkingv1.VirtualService(nil), w.VirtualServices...)
	kubeGateways := map[string]*gwapiv1.Gateway{}
	for _, hr := range w.HTTPRoutes {
		if hr.DeletionTimestamp != nil {
			continue
		}
		for _, ref := range hr.Spec.ParentRefs {
			if (ref.Group == nil || *ref.Group == gwapiv1.GroupName) && (ref.Kind == nil || *ref.Kind == "Gateway") {
				ns := hr.Namespace
				if ref.Namespace != nil {
					ns = string(*ref.Namespace)
				}
				gw := w.kubeGateway(ns, string(ref.Name))
				if gw == nil || gw.Spec.GatewayClassName != istioGatewayClass {
					continue // no proxy of istiod's runs it
				}
				if hosts := ingressHosts(hr, gw, ref); len(hosts) > 0 {
					kubeGateways[kubeGatewayKey(gw)] = gw
					vs := &networkingv1.VirtualService{ObjectMeta: *hr.ObjectMeta.DeepCopy()}
					vs.Spec.Hosts, vs.Spec.Gateways = hosts, []string{kubeGatewayKey(gw)}
					vss = append(vss, vs)
				}
				continue
			}
			if ref.Group == nil || *ref.Group != "" || ref.Kind == nil || *ref.Kind != "Service" {
				continue
			}
			host := string(ref.Name)
			if ref.Namespace != nil && string(*ref.Namespace) != hr.Namespace {
				host += "." + string(*ref.Namespace)
			}
			vs := &networkingv1.VirtualService{ObjectMeta: *hr.ObjectMeta.DeepCopy()}
			vs.Spec.Hosts = []string{host}
			vss = append(vss, vs)
		}
	}
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
			out = append(out, stream{VS: vs, Host: h, Gateway: gateway, KubeGateway: kubeGateways[gateway]})
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
