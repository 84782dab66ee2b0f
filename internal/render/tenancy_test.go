package render

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// Names that read alike get different Gateways: namespace a's policy b-c and namespace
// a-b's policy c used to share "a-b-c-ingress" in the gateway's namespace.
func TestGatewayNamesDoNotCollide(t *testing.T) {
	policy := func(ns, name string) *meshv1.MeshPolicy {
		return &meshv1.MeshPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	long := strings.Repeat("x", 250)
	pairs := [][2]*meshv1.MeshPolicy{
		{policy("a", "b-c"), policy("a-b", "c")},
		{policy("a", "b.c"), policy("a", "b-c")},
		{policy("shop", long+"1"), policy("shop", long+"2")},
	}
	for _, pair := range pairs {
		x, y := GatewayName(pair[0]), GatewayName(pair[1])
		if x == y || CertificateSecretName(pair[0]) == CertificateSecretName(pair[1]) {
			t.Errorf("%s/%s and %s/%s share the Gateway name %s", pair[0].Namespace, pair[0].Name, pair[1].Namespace, pair[1].Name, x)
		}
		for _, n := range []string{x, y} {
			// Istio refuses a VirtualService whose gateway name is not a DNS-1123 label.
			if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
				t.Errorf("Gateway name %q: %v", n, errs)
			}
		}
	}
	if got := GatewayName(policy("shop", "payment-processing")); got != "shop-payment-processing-ingress-e4bbaee9fb028126" {
		t.Errorf("GatewayName = %s: a name must not change between versions, or upgrades orphan Gateways", got)
	}
}

func TestTenancyHosts(t *testing.T) {
	rules, err := ParseHostRules([]string{"shop:shop.example.com", "*.{namespace}.apps.example.com", "team-a:*.a.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	ten := &Tenancy{Hosts: rules}
	for _, c := range []struct {
		ns, host  string
		qualified bool
		want      bool
	}{
		// A namespace's own Services, however they are written.
		{"shop", "cart", false, true},
		{"shop", "cart.shop", false, true},
		{"shop", "cart.shop.svc", false, true},
		{"shop", "cart.shop.svc.cluster.local", false, true},
		{"shop", "*.shop.svc.cluster.local", false, true},
		// On a shared gateway a short name is nobody's.
		{"shop", "cart", true, false},
		{"shop", "cart.shop", true, false},
		{"shop", "cart.shop.svc.cluster.local", true, true},
		// Other namespaces' Services, and wildcards over them.
		{"shop", "reviews.bookinfo", false, false},
		{"shop", "reviews.bookinfo.svc.cluster.local", false, false},
		{"shop", "*.svc.cluster.local", false, false},
		{"shop", "*.cluster.local", false, false},
		{"shop", "*.shop", false, false},
		// What the rules give.
		{"shop", "shop.example.com", true, true},
		{"bookinfo", "shop.example.com", true, false},
		{"shop", "www.shop.example.com", true, false},
		{"shop", "cart.shop.apps.example.com", true, true},
		{"shop", "*.shop.apps.example.com", true, true},
		{"shop", "cart.bookinfo.apps.example.com", true, false},
		{"team-a", "*.x.a.example.com", true, true},
		{"team-a", "*.example.com", true, false},
		{"team-a", "a.example.com", true, false},
	} {
		got := ownHost(c.ns, c.host, c.qualified) || ten.allowed(ten.Hosts, c.ns, c.host)
		if got != c.want {
			t.Errorf("namespace %s, host %s (qualified %v): allowed %v, want %v", c.ns, c.host, c.qualified, got, c.want)
		}
	}
	for _, bad := range []string{"shop:Shop.example.com", "Shop:x.example.com", "x:*.*.example.com", "a:b:c"} {
		if _, err := ParseHostRules([]string{bad}); err == nil {
			t.Errorf("rule %q parsed", bad)
		}
	}
}

// Every field of a MeshPolicy that reaches beyond its namespace is refused, named, with
// reason NotAllowed; the same policy passes once the operator allows each.
func TestTenancyRefusesMeshPolicyClaims(t *testing.T) {
	p := paymentPolicy() // namespace shop, gateway in istio-system, ClusterIssuer letsencrypt
	p.Spec.ExternalServices[0].Hosts = []string{"api.stripe.com"}
	err := (&Tenancy{}).CheckMeshPolicy(p)
	want := []string{"spec.ingress.gateway.namespace", "spec.ingress.hosts[0]", "spec.ingress.tls.issuerRef.name"}
	for i, x := range p.Spec.ExternalServices {
		for j := range x.Hosts {
			want = append(want, fmt.Sprintf("spec.externalServices[%d].hosts[%d]", i, j))
		}
	}
	if got := notAllowedFields(t, err); !slices.Equal(got, want) {
		t.Errorf("refused %v, want %v\n%v", got, want, err)
	}
	hosts, _ := ParseHostRules([]string{"shop:pay.shop.example.com"})
	external, _ := ParseHostRules([]string{"*"})
	allowed := &Tenancy{GatewayNamespaces: []string{"istio-system"}, ClusterIssuers: []string{"letsencrypt"}, Hosts: hosts, ExternalHosts: external}
	if err := allowed.CheckMeshPolicy(p); err != nil {
		t.Errorf("allowed: %v", err)
	}
	// An Issuer is read in the Certificate's namespace: the gateway's.
	p.Spec.Ingress.TLS.IssuerRef = meshv1.IssuerRef{Kind: "Issuer", Name: "ca"}
	if got := notAllowedFields(t, allowed.CheckMeshPolicy(p)); !slices.Equal(got, []string{"spec.ingress.tls.issuerRef.kind"}) {
		t.Errorf("an Issuer of istio-system: refused %v", got)
	}
	p.Spec.Ingress.Gateway.Namespace = ""
	if err := allowed.CheckMeshPolicy(p); err != nil {
		t.Errorf("an Issuer of the policy's own namespace: %v", err)
	}
	// An external issuer's ClusterIssuer is allowed by group/name only.
	p.Spec.Ingress.TLS.IssuerRef = meshv1.IssuerRef{Kind: "ClusterIssuer", Name: "letsencrypt", Group: "awspca.cert-manager.io"}
	if got := notAllowedFields(t, allowed.CheckMeshPolicy(p)); !slices.Equal(got, []string{"spec.ingress.tls.issuerRef.name"}) {
		t.Errorf("another group's ClusterIssuer of the same name: refused %v", got)
	}
}

func TestTenancyRefusesCanaryClaims(t *testing.T) {
	c := reviewsCanary() // namespace bookinfo
	c.Spec.Service.Hosts = []string{"reviews.bookinfo.svc.cluster.local", "ratings.other.svc.cluster.local", "*.svc.cluster.local", "reviews.example.com"}
	c.Spec.Service.Gateways = []string{"mesh", "local-gw", "istio-system/public", "public.istio-system.svc.cluster.local"}
	p := reviewsPolicy() // its ingress: istio-system, reviews.bookinfo.example.com
	err := (&Tenancy{}).CheckCanary(c, p)
	want := []string{"spec.service.hosts[1]", "spec.service.hosts[2]", "spec.service.hosts[3]", "spec.service.gateways[2]", "spec.service.gateways[3]",
		"MeshPolicy/reviews spec.ingress.gateway.namespace", "MeshPolicy/reviews spec.ingress.hosts[0]", "MeshPolicy/reviews spec.ingress.tls.issuerRef.name"}
	if got := notAllowedFields(t, err); !slices.Equal(got, want) {
		t.Errorf("refused %v, want %v\n%v", got, want, err)
	}
	if err != nil && !strings.Contains(err.Error(), `"ratings.other.svc.cluster.local" is not a name of this namespace's Services`) {
		t.Errorf("the message does not say why: %v", err)
	}
	hosts, _ := ParseHostRules([]string{"bookinfo:*.example.com", "bookinfo:*.svc.cluster.local"})
	if err := (&Tenancy{GatewayNamespaces: []string{"*"}, ClusterIssuers: []string{"letsencrypt"}, Hosts: hosts}).CheckCanary(c, p); err != nil {
		t.Errorf("allowed: %v", err)
	}
}

// exportTo shows routing of the namespace's own Services to the whole mesh, and keeps
// routing of any other host in its namespace and the namespaces of its gateways.
func TestExportTo(t *testing.T) {
	for _, c := range []struct {
		hosts    []string
		gateways []string
		want     []string
	}{
		{[]string{"reviews"}, nil, nil},
		{[]string{"reviews", "reviews.shop", "reviews.shop.svc.cluster.local"}, []string{"mesh"}, nil},
		{[]string{"reviews", "reviews.other"}, nil, []string{"."}},
		{[]string{"*.shop.svc.cluster.local"}, nil, []string{"."}},
		{[]string{"api.example.com"}, []string{"mesh"}, []string{"."}},
		{[]string{"reviews", "shop.example.com"}, []string{"gw", "shop/gw", "./gw", "mesh"}, []string{"."}},
		{[]string{"reviews", "shop.example.com"}, []string{"istio-system/b", "edge/a", "istio-system/a", "mesh"}, []string{".", "edge", "istio-system"}},
		{[]string{"shop.example.com"}, []string{"public.istio-system.svc.cluster.local"}, []string{".", "istio-system"}},
	} {
		if got := exportTo("shop", c.hosts, c.gateways); !slices.Equal(got, c.want) {
			t.Errorf("exportTo(shop, %v, %v) = %v, want %v", c.hosts, c.gateways, got, c.want)
		}
	}
}

// notAllowedFields lists the fields of err's FieldErrors ("Object field" when another
// object's), failing on any other reason.
func notAllowedFields(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var out []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) || fe.Reason != meshv1.ReasonNotAllowed {
			t.Errorf("not a NotAllowed field error: %v", e)
			continue
		}
		f := fe.Field
		if fe.Object != "" {
			f = fe.Object + " " + f
		}
		out = append(out, f)
	}
	return out
}

// In a gateway namespace others share, the ingress Gateway must select on a label the
// operator gives its ingress gateways (Istio's own by default); in the policy's own
// namespace any selector is the tenant's business.
func TestTenancyRefusesIngressSelectors(t *testing.T) {
	policy := func(gwNS string, sel map[string]string) *meshv1.MeshPolicy {
		return &meshv1.MeshPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "storefront"},
			Spec: meshv1.MeshPolicySpec{
				TargetRef: meshv1.ServiceRef{Name: "storefront"},
				Ingress: &meshv1.Ingress{Gateway: meshv1.IngressGateway{Namespace: gwNS, Selector: sel},
					Hosts: []string{"storefront.shop.svc.cluster.local"}},
			},
		}
	}
	shared := []string{"istio-system"}
	for _, tc := range []struct {
		name    string
		tn      Tenancy
		gwNS    string
		sel     map[string]string
		refused bool
	}{
		{"Istio's own ingress gateway", Tenancy{GatewayNamespaces: shared}, "istio-system", map[string]string{"istio": "ingressgateway"}, false},
		{"narrowed to one of its deployments", Tenancy{GatewayNamespaces: shared}, "istio-system", map[string]string{"istio": "ingressgateway", "app": "public"}, false},
		{"the egress gateway", Tenancy{GatewayNamespaces: shared}, "istio-system", map[string]string{"istio": "egressgateway"}, true},
		{"another team's pods", Tenancy{GatewayNamespaces: shared}, "istio-system", map[string]string{"app": "payments-gateway"}, true},
		{"a label the operator names", Tenancy{GatewayNamespaces: shared, IngressSelectors: []string{"gateway.example.com/role=public"}}, "istio-system",
			map[string]string{"gateway.example.com/role": "public"}, false},
		{"Istio's own, when the operator names others", Tenancy{GatewayNamespaces: shared, IngressSelectors: []string{"gateway.example.com/role=public"}}, "istio-system",
			map[string]string{"istio": "ingressgateway"}, true},
		{"any, when the operator says so", Tenancy{GatewayNamespaces: shared, IngressSelectors: []string{"*"}}, "istio-system", map[string]string{"app": "anything"}, false},
		{"the policy's own namespace", Tenancy{}, "", map[string]string{"app": "shop-gateway"}, false},
		{"the policy's own namespace, named", Tenancy{}, "shop", map[string]string{"app": "shop-gateway"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := notAllowedFields(t, tc.tn.CheckMeshPolicy(policy(tc.gwNS, tc.sel)))
			if want := slices.Contains(got, "spec.ingress.gateway.selector"); want != tc.refused || len(got) > 1 {
				t.Errorf("refused %v; want the selector refused: %v, and nothing else", got, tc.refused)
			}
		})
	}
	err := (&Tenancy{GatewayNamespaces: shared}).CheckMeshPolicy(policy("istio-system", map[string]string{"istio": "egressgateway"}))
	if err == nil || !strings.Contains(err.Error(), "--allowed-ingress-selectors: istio=ingressgateway") {
		t.Errorf("the refusal should name the flag and what it allows: %v", err)
	}

	for _, bad := range []string{"istio", "=x", "istio=", "istio=a b", "a=b=c"} {
		if _, err := ParseIngressSelectors([]string{bad}); err == nil {
			t.Errorf("ParseIngressSelectors(%q) accepted it", bad)
		}
	}
	if got, err := ParseIngressSelectors([]string{"*", "istio=ingressgateway", "example.com/role=public"}); err != nil || len(got) != 3 {
		t.Errorf("ParseIngressSelectors: %v, %v", got, err)
	}
}
