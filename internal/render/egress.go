package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	networking "istio.io/api/networking/v1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// The egress gateway's defaults, those of Istio's installation.
const (
	defaultEgressNamespace = "istio-system"
	defaultEgressService   = "istio-egressgateway"
	// egressPort is the egress gateway Service's HTTP port, where the sidecars send.
	egressPort = 80
)

var defaultEgressSelector = map[string]string{"istio": "egressgateway"}

// EgressGatewayNamespace is where an external service's egress Gateway is written.
func EgressGatewayNamespace(x *meshv1.ExternalService) string {
	if g := x.EgressGateway; g != nil && g.Namespace != "" {
		return g.Namespace
	}
	return defaultEgressNamespace
}

// EgressGatewayName is the name of the Gateway of a policy's external service, in a
// namespace many policies share: as GatewayName, "<namespace>-<policy>-<service>-egress-<hash>".
func EgressGatewayName(p *meshv1.MeshPolicy, x *meshv1.ExternalService) string {
	const maxName = 63
	const suffix = "-egress-"
	sum := sha256.Sum256([]byte(p.Namespace + "/" + p.Name + "/" + x.Name))
	hash := hex.EncodeToString(sum[:8])
	readable := strings.ReplaceAll(p.Namespace+"-"+p.Name+"-"+x.Name, ".", "-")
	if m := maxName - len(suffix) - len(hash); len(readable) > m {
		readable = strings.TrimRight(readable[:m], "-")
	}
	return readable + suffix + hash
}

// egress renders, for an external service reached through an egress gateway, the Gateway
// in the gateway's namespace and the VirtualService that sends the sidecars' requests for
// the host to the gateway and the gateway's to the host: Istio's egress gateway task. The
// ServiceEntry is then exported to the gateway's namespace too (see externalService).
func (r *policyRenderer) egress(i int) (*networkingv1.Gateway, *networkingv1.VirtualService) {
	x := &r.p.Spec.ExternalServices[i]
	g := x.EgressGateway
	if g == nil {
		return nil, nil
	}
	path := fmt.Sprintf("spec.externalServices[%d].egressGateway", i)
	if len(x.Hosts) != 1 || strings.HasPrefix(x.Hosts[0], "*") {
		r.e.inconsistent(path, "needs exactly one host, without a wildcard: the gateway routes to it by name")
		return nil, nil
	}
	if x.TLSOrigination != nil {
		r.e.inconsistent(path, "cannot be combined with tlsOrigination: the sidecar would originate TLS before the gateway")
	}
	host := x.Hosts[0]
	gwNS, gwName := EgressGatewayNamespace(x), EgressGatewayName(r.p, x)
	gwRef := gwNS + "/" + gwName
	svc := g.Service
	if svc == "" {
		svc = defaultEgressService
	}
	selector := g.Selector
	if len(selector) == 0 {
		selector = defaultEgressSelector
	}
	gw := &networkingv1.Gateway{
		TypeMeta:   metav1.TypeMeta{APIVersion: networkingv1.SchemeGroupVersion.String(), Kind: "Gateway"},
		ObjectMeta: metav1.ObjectMeta{Name: gwName, Namespace: gwNS, Labels: OwnerLabels(KindMeshPolicy, r.p.Namespace, r.p.Name)},
	}
	gw.Spec.Selector = copyMap(selector)
	gw.Spec.Servers = []*networking.Server{{
		Port:  &networking.Port{Number: egressPort, Name: "http", Protocol: "HTTP"},
		Hosts: []string{r.p.Namespace + "/" + host},
	}}
	vs := &networkingv1.VirtualService{
		TypeMeta:   metav1.TypeMeta{APIVersion: networkingv1.SchemeGroupVersion.String(), Kind: "VirtualService"},
		ObjectMeta: r.meta(r.p.Name + "-" + x.Name + "-egress"),
	}
	vs.Spec.Hosts = []string{host}
	vs.Spec.Gateways = []string{gwRef, "mesh"}
	vs.Spec.ExportTo = []string{".", gwNS}
	http := 0
	for j, port := range x.Ports {
		if port.Protocol != "HTTP" {
			r.e.inconsistent(fmt.Sprintf("spec.externalServices[%d].ports[%d].protocol", i, j), "%s: an egress gateway carries HTTP ports only", port.Protocol)
			continue
		}
		http++
		name := x.Name
		if len(x.Ports) > 1 {
			name += "-" + fmt.Sprint(port.Number)
		}
		vs.Spec.Http = append(vs.Spec.Http,
			&networking.HTTPRoute{
				Name:  name + "-to-gateway",
				Match: []*networking.HTTPMatchRequest{{Gateways: []string{"mesh"}, Port: uint32(port.Number)}},
				Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{
					Host: svc + "." + gwNS + ".svc." + clusterDomain, Port: &networking.PortSelector{Number: egressPort},
				}}},
			},
			&networking.HTTPRoute{
				Name:  name + "-from-gateway",
				Match: []*networking.HTTPMatchRequest{{Gateways: []string{gwRef}, Port: egressPort}},
				Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{
					Host: host, Port: &networking.PortSelector{Number: uint32(port.Number)},
				}}},
			})
	}
	if http > 1 {
		r.e.inconsistent(path, "the gateway listens on one HTTP port: list one HTTP port")
	}
	if http == 0 {
		return nil, nil
	}
	return gw, vs
}
