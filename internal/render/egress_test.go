package render

import (
	"slices"
	"testing"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

func egressPolicy() *meshv1.MeshPolicy {
	p := paymentPolicy()
	p.Spec.Ingress = nil
	p.Spec.ExternalServices = []meshv1.ExternalService{{
		Name: "cnn", Hosts: []string{"edition.cnn.com"}, Ports: []meshv1.ExternalPort{{Number: 80, Protocol: "HTTP"}},
		EgressGateway: &meshv1.EgressGateway{},
	}}
	return p
}

// Istio's egress gateway task: the ServiceEntry (exported to the gateway's namespace too),
// a Gateway there for the host, and a VirtualService from the sidecars to the gateway and
// from the gateway to the host.
func TestMeshPolicyEgressGatewayGolden(t *testing.T) {
	set := renderPolicy(t, egressPolicy(), MeshPolicyOptions{})
	if len(set.EgressGateways) != 1 || len(set.EgressRoutes) != 1 {
		t.Fatalf("egress gateways %d, routes %d", len(set.EgressGateways), len(set.EgressRoutes))
	}
	if got := set.ServiceEntries[0].Spec.ExportTo; !slices.Equal(got, []string{".", "istio-system"}) {
		t.Errorf("the ServiceEntry is exported to %v", got)
	}
	expectGoldenValid(t, "meshpolicy-egress.yaml", []Object{set.ServiceEntries[0], set.EgressGateways[0], set.EgressRoutes[0]})
}

func TestMeshPolicyEgressGatewayErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(x *meshv1.ExternalService)
		field  string
	}{
		{"two hosts", func(x *meshv1.ExternalService) { x.Hosts = append(x.Hosts, "cnn.com") }, "spec.externalServices[0].egressGateway"},
		{"TLS port", func(x *meshv1.ExternalService) { x.Ports[0].Protocol = "TLS" }, "spec.externalServices[0].ports[0].protocol"},
		{"with TLS origination", func(x *meshv1.ExternalService) {
			x.Ports = append(x.Ports, meshv1.ExternalPort{Number: 443, Protocol: "HTTPS"})
			x.TLSOrigination = &meshv1.TLSOrigination{Port: 80}
		}, "spec.externalServices[0].egressGateway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := egressPolicy()
			tc.mutate(&p.Spec.ExternalServices[0])
			expectPolicyError(t, p, tc.field, meshv1.ReasonInconsistent)
		})
	}
}

// The egress gateway's namespace is a claim beyond the policy's: --allowed-gateway-namespaces.
func TestTenancyRefusesEgressGatewayNamespace(t *testing.T) {
	p := egressPolicy()
	p.Spec.ExternalServices[0].Hosts = []string{"api.stripe.com"}
	external, _ := ParseHostRules([]string{"*"})
	if got := notAllowedFields(t, (&Tenancy{ExternalHosts: external}).CheckMeshPolicy(p)); !slices.Equal(got, []string{"spec.externalServices[0].egressGateway.namespace"}) {
		t.Errorf("refused %v", got)
	}
	if err := (&Tenancy{ExternalHosts: external, GatewayNamespaces: []string{"istio-system"}}).CheckMeshPolicy(p); err != nil {
		t.Errorf("allowed: %v", err)
	}
}

// In a shared namespace the egress Gateway selects Istio's egress gateway only: another
// selector could attach it to the ingress gateway's pods and publish the external host.
func TestTenancyRefusesEgressGatewaySelectorElsewhere(t *testing.T) {
	p := egressPolicy()
	p.Spec.ExternalServices[0].EgressGateway.Selector = map[string]string{"istio": "ingressgateway"}
	external, _ := ParseHostRules([]string{"*"})
	tn := &Tenancy{ExternalHosts: external, GatewayNamespaces: []string{"istio-system"}}
	if got := notAllowedFields(t, tn.CheckMeshPolicy(p)); !slices.Equal(got, []string{"spec.externalServices[0].egressGateway.selector"}) {
		t.Errorf("refused %v", got)
	}
	p.Spec.ExternalServices[0].EgressGateway.Selector = map[string]string{"istio": "egressgateway"}
	if err := tn.CheckMeshPolicy(p); err != nil {
		t.Errorf("Istio's own selector: %v", err)
	}
	// In the policy's own namespace, any of its pods.
	p.Spec.ExternalServices[0].EgressGateway = &meshv1.EgressGateway{Namespace: p.Namespace, Selector: map[string]string{"app": "egress"}}
	if err := (&Tenancy{ExternalHosts: external}).CheckMeshPolicy(p); err != nil {
		t.Errorf("a gateway of the policy's namespace: %v", err)
	}
}
