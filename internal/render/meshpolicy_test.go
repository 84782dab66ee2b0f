package render

import (
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// expectGolden compares the applied form of objs, as a YAML stream, with a file in
// testdata; -update rewrites it (read the diff before committing it).
func expectGolden(t *testing.T, file string, objs []Object) {
	t.Helper()
	var b strings.Builder
	for _, o := range objs {
		b.WriteString("---\n")
		b.WriteString(asYAML(t, o))
	}
	path := filepath.Join("testdata", file)
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("rendered objects differ from %s (run with -update and read the diff):\n%s", path, b.String())
	}
}

func renderPolicy(t *testing.T, p *meshv1.MeshPolicy, opts MeshPolicyOptions) MeshPolicySet {
	t.Helper()
	set, err := MeshPolicyObjects(p, paymentService(), opts)
	if err != nil {
		t.Fatalf("MeshPolicyObjects: %v", err)
	}
	return set
}

func kindsAndNames(objs []Object) string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetObjectKind().GroupVersionKind().Kind+" "+o.GetNamespace()+"/"+o.GetName())
	}
	return strings.Join(out, "\n")
}

// The whole payment-processing policy, every field set, with its certificate ready.
func TestMeshPolicyObjectsGolden(t *testing.T) {
	set := renderPolicy(t, paymentPolicy(), MeshPolicyOptions{CertificateReady: true})
	expectGolden(t, "meshpolicy-payment-processing.yaml", set.Objects())
	want := `PeerAuthentication shop/payment-processing
AuthorizationPolicy shop/payment-processing
AuthorizationPolicy shop/payment-processing-allow-nothing
ServiceEntry shop/payment-processing-stripe
ServiceEntry shop/payment-processing-fraud-check
DestinationRule shop/payment-processing
DestinationRule shop/payment-processing-stripe
Certificate istio-system/shop-payment-processing-ingress-e4bbaee9fb028126
Gateway istio-system/shop-payment-processing-ingress-e4bbaee9fb028126
VirtualService shop/payment-processing
Telemetry shop/payment-processing`
	if got := kindsAndNames(set.Objects()); got != want {
		t.Errorf("objects:\n%s\nwant:\n%s", got, want)
	}
	for _, o := range set.Objects() {
		l := o.GetLabels()
		if l[meshv1.LabelManagedBy] != "canopy" || l[meshv1.LabelOwnerKind] != "MeshPolicy" || l[meshv1.LabelOwnerName] != "payment-processing" || l[meshv1.LabelOwnerNamespace] != "shop" {
			t.Errorf("%s %s labels = %v", o.GetObjectKind().GroupVersionKind().Kind, o.GetName(), l)
		}
		if len(o.GetOwnerReferences()) != 0 {
			t.Errorf("%s has owner references; the controller sets them", o.GetName())
		}
		if o.GetObjectKind().GroupVersionKind().Version == "" {
			t.Errorf("%s has no TypeMeta", o.GetName())
		}
	}
	var fields []string
	for _, w := range set.Warnings {
		fields = append(fields, w.Field)
	}
	if got := strings.Join(fields, ","); got != "spec.ingress" {
		t.Errorf("warnings on %q, want the multi-port ingress one: %v", got, set.Warnings)
	}
}

func TestMeshPolicyGatewayWaitsForCertificate(t *testing.T) {
	set := renderPolicy(t, paymentPolicy(), MeshPolicyOptions{CertificateReady: false})
	if set.Certificate == nil {
		t.Fatal("the Certificate must be rendered for it to become ready")
	}
	expectYAML(t, set.Gateway, `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: shop-payment-processing-ingress-e4bbaee9fb028126
  namespace: istio-system
  labels:
    app.kubernetes.io/managed-by: canopy
    mesh.canopy.dev/owner-kind: MeshPolicy
    mesh.canopy.dev/owner-name: payment-processing
    mesh.canopy.dev/owner-namespace: shop
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [shop/pay.shop.example.com]
`)

	// Without TLS at all: no Certificate, plain HTTP, in the policy's namespace when the
	// gateway's is not given.
	p := paymentPolicy()
	p.Spec.Ingress.TLS = nil
	p.Spec.Ingress.Gateway.Namespace = ""
	set = renderPolicy(t, p, MeshPolicyOptions{CertificateReady: true})
	if set.Certificate != nil || len(set.Gateway.Spec.Servers) != 1 || set.Gateway.Namespace != "shop" {
		t.Errorf("want one HTTP server in shop and no certificate, got %s", asYAML(t, set.Gateway))
	}
	if got := set.VirtualServices[0].Spec.Gateways; strings.Join(got, ",") != "shop/shop-payment-processing-ingress-e4bbaee9fb028126,mesh" {
		t.Errorf("gateways = %v", got)
	}
}

func TestMeshPolicyIssuerDefaults(t *testing.T) {
	p := paymentPolicy()
	p.Spec.Ingress.TLS.IssuerRef = meshv1.IssuerRef{Name: "shop-ca"}
	set := renderPolicy(t, p, MeshPolicyOptions{})
	ref := set.Certificate.Spec.IssuerRef
	if ref.Kind != "Issuer" || ref.Group != "cert-manager.io" || ref.Name != "shop-ca" {
		t.Errorf("issuerRef = %+v, want kind and group set explicitly", ref)
	}
	found := false
	for _, w := range set.Warnings {
		found = found || w.Field == "spec.ingress.tls.issuerRef"
	}
	if !found {
		t.Error("an Issuer outside the gateway's namespace must be warned about")
	}
}

func TestMeshPolicyCanaryOwnsRouting(t *testing.T) {
	p := paymentPolicy()
	set := renderPolicy(t, p, MeshPolicyOptions{CanaryOwnsRouting: true, CanarySelector: map[string]string{"app": "payment-processing", "track": "canary"}})
	want := `PeerAuthentication shop/payment-processing
PeerAuthentication shop/payment-processing-canary
AuthorizationPolicy shop/payment-processing
AuthorizationPolicy shop/payment-processing-allow-nothing
AuthorizationPolicy shop/payment-processing-canary
AuthorizationPolicy shop/payment-processing-canary-allow-nothing
ServiceEntry shop/payment-processing-stripe
ServiceEntry shop/payment-processing-fraud-check
DestinationRule shop/payment-processing-stripe
Certificate istio-system/shop-payment-processing-ingress-e4bbaee9fb028126
Gateway istio-system/shop-payment-processing-ingress-e4bbaee9fb028126
Telemetry shop/payment-processing
Telemetry shop/payment-processing-canary`
	if got := kindsAndNames(set.Objects()); got != want {
		t.Errorf("objects:\n%s\nwant:\n%s", got, want)
	}
	if sel := set.PeerAuthentications[1].Spec.Selector.MatchLabels; sel["track"] != "canary" {
		t.Errorf("canary PeerAuthentication selector = %v", sel)
	}

	// The policy's own mistakes are still reported.
	p.Spec.Routes[0].Timeout = "ten seconds"
	if _, err := MeshPolicyObjects(p, paymentService(), MeshPolicyOptions{CanaryOwnsRouting: true}); err == nil {
		t.Error("a bad route timeout must fail even when a Canary owns the routing")
	}
}

// A Canary and a MeshPolicy for the same host give exactly one VirtualService, the
// Canary's, carrying the policy's routes and the gateway binding.
func TestCanaryAndMeshPolicyShareOneVirtualService(t *testing.T) {
	p := reviewsPolicy()
	c := reviewsCanary()
	cs := renderCanary(t, c, progress.Routing{PrimaryWeight: 90, CanaryWeight: 10}, p)
	apex := cs.Services[0]
	ps, err := MeshPolicyObjects(p, apex, MeshPolicyOptions{CanaryOwnsRouting: true, CanarySelector: cs.Services[2].Spec.Selector})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.VirtualServices) != 0 {
		t.Errorf("the policy rendered a VirtualService for a host the Canary routes")
	}
	for _, dr := range ps.DestinationRules {
		if dr.Spec.Host == "reviews" {
			t.Errorf("the policy rendered a DestinationRule for the Canary's host")
		}
	}
	if got := strings.Join(cs.VirtualService.Spec.Gateways, ","); got != GatewayRef(p)+",mesh" {
		t.Errorf("canary VirtualService gateways = %s, want the policy's gateway", got)
	}
	if ps.Gateway == nil || ps.Gateway.Namespace+"/"+ps.Gateway.Name != GatewayRef(p) {
		t.Errorf("the policy's Gateway is not the one the Canary binds to")
	}
	// The workload policies cover the primary's pods and the canary's.
	if got := ps.PeerAuthentications[0].Spec.Selector.MatchLabels["app"]; got != "reviews-primary" {
		t.Errorf("PeerAuthentication selects app=%s, want reviews-primary", got)
	}
	if got := ps.PeerAuthentications[1].Spec.Selector.MatchLabels["app"]; got != "reviews" {
		t.Errorf("canary PeerAuthentication selects app=%s, want reviews", got)
	}
}

func TestMeshPolicyMTLSModes(t *testing.T) {
	for _, tc := range []struct {
		mode      meshv1.MTLSMode
		portLevel meshv1.MTLSMode
		wantTLS   string
		wantPort  string
	}{
		{meshv1.MTLSStrict, meshv1.MTLSPermissive, "ISTIO_MUTUAL", ""},
		{meshv1.MTLSPermissive, meshv1.MTLSDisable, "ISTIO_MUTUAL", "DISABLE"},
		{meshv1.MTLSDisable, meshv1.MTLSStrict, "DISABLE", "ISTIO_MUTUAL"},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			p := paymentPolicy()
			p.Spec.MTLS = &meshv1.MTLS{Mode: tc.mode, PortLevel: []meshv1.PortMTLS{{Port: 9090, Mode: tc.portLevel}}}
			set := renderPolicy(t, p, MeshPolicyOptions{})
			pa := set.PeerAuthentications[0]
			if pa.Spec.Mtls.Mode.String() != string(tc.mode) || pa.Spec.PortLevelMtls[9090].Mode.String() != string(tc.portLevel) {
				t.Errorf("PeerAuthentication = %s", asYAML(t, pa))
			}
			tp := set.DestinationRules[0].Spec.TrafficPolicy
			if tp.Tls.Mode.String() != tc.wantTLS {
				t.Errorf("DestinationRule tls = %v, want %s", tp.Tls, tc.wantTLS)
			}
			var port string
			for _, pl := range tp.PortLevelSettings {
				if pl.Port.Number == 9090 {
					port = pl.Tls.Mode.String()
				}
			}
			if port != tc.wantPort {
				t.Errorf("port-level tls on 9090 = %q, want %q", port, tc.wantPort)
			}
		})
	}
}

// DISABLE is the zero of Istio's client TLS mode, and MESH_EXTERNAL of a ServiceEntry's
// location: both vanish from the JSON, and Istio reads them back as the same values.
func TestZeroEnumsAreOmittedFromJSON(t *testing.T) {
	p := paymentPolicy()
	p.Spec.MTLS = &meshv1.MTLS{Mode: meshv1.MTLSDisable}
	set := renderPolicy(t, p, MeshPolicyOptions{})
	y := asYAML(t, set.DestinationRules[0])
	if !strings.Contains(y, "tls: {}") {
		t.Errorf("DISABLE should render as an empty tls:\n%s", y)
	}
	se := set.ServiceEntries[0]
	b, _ := json.Marshal(se)
	if strings.Contains(string(b), "location") {
		t.Errorf("MESH_EXTERNAL should be omitted: %s", b)
	}
	var back networkingv1.ServiceEntry
	if err := json.Unmarshal(b, &back); err != nil || back.Spec.Location.String() != "MESH_EXTERNAL" {
		t.Errorf("location reads back as %v (%v)", back.Spec.Location, err)
	}
}

// A route to a multi-port Service names its port, or Istio cannot tell which is meant
// (istioctl analyze: IST0112): without a port of its own, a route is one per Service port,
// each matching the port the request was sent to. (The test against istioctl itself is in
// test/e2e: TestIstioAnalyzesCanopysObjects.)
func TestMeshPolicyMinimal(t *testing.T) {
	p := &meshv1.MeshPolicy{}
	p.Name, p.Namespace = "payment-processing", "shop"
	p.Spec.TargetRef.Name = "payment-processing"
	set := renderPolicy(t, p, MeshPolicyOptions{})
	if objs := set.Objects(); len(objs) != 0 {
		t.Errorf("an empty policy rendered %s", kindsAndNames(objs))
	}
	// Resilience alone: a DestinationRule and a VirtualService with the timeout.
	p.Spec.Resilience = &meshv1.Resilience{Timeout: "3s"}
	set = renderPolicy(t, p, MeshPolicyOptions{})
	if len(set.VirtualServices) != 1 || len(set.DestinationRules) != 0 {
		t.Fatalf("got %s", kindsAndNames(set.Objects()))
	}
	expectYAML(t, set.VirtualServices[0], `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: payment-processing
  namespace: shop
  labels:
    app.kubernetes.io/managed-by: canopy
    mesh.canopy.dev/owner-kind: MeshPolicy
    mesh.canopy.dev/owner-name: payment-processing
    mesh.canopy.dev/owner-namespace: shop
spec:
  hosts: [payment-processing]
  http:
  - match: [{port: 8080}]
    route:
    - destination: {host: payment-processing, port: {number: 8080}}
    timeout: 3s
  - match: [{port: 9090}]
    route:
    - destination: {host: payment-processing, port: {number: 9090}}
    timeout: 3s
`)
}

func TestMeshPolicyTelemetry(t *testing.T) {
	p := paymentPolicy()
	p.Spec.Telemetry = &meshv1.Telemetry{Tracing: &meshv1.Tracing{SamplingPercentage: 0}, AccessLogging: ptr(false)}
	set := renderPolicy(t, p, MeshPolicyOptions{})
	y := asYAML(t, set.Telemetries[0])
	for _, want := range []string{"randomSamplingPercentage: 0", "disabled: true"} {
		if !strings.Contains(y, want) {
			t.Errorf("Telemetry lacks %q:\n%s", want, y)
		}
	}
}

// A tracing provider, its sampling and custom tags reach the Telemetry; a provider the mesh
// configuration does not declare is a warning naming the ones it does, and none is said
// when the configuration could not be read.
func TestMeshPolicyTracingProvider(t *testing.T) {
	p := paymentPolicy()
	team := "payments"
	p.Spec.Telemetry = &meshv1.Telemetry{Tracing: &meshv1.Tracing{SamplingPercentage: 10, Provider: "zipkin", CustomTags: map[string]meshv1.TracingTag{
		"team": {Literal: &team},
		"user": {Header: &meshv1.TagSource{Name: "x-user", DefaultValue: "anonymous"}},
		"node": {Environment: &meshv1.TagSource{Name: "NODE_NAME"}},
	}}}
	set := renderPolicy(t, p, MeshPolicyOptions{TracingProviders: []string{"otel", "zipkin"}, MeshConfigRead: true})
	y := asYAML(t, set.Telemetries[0])
	for _, want := range []string{"name: zipkin", "randomSamplingPercentage: 10", "value: payments", "name: x-user", "defaultValue: anonymous", "name: NODE_NAME"} {
		if !strings.Contains(y, want) {
			t.Errorf("Telemetry lacks %q:\n%s", want, y)
		}
	}
	if w := tracingWarnings(set); len(w) != 0 {
		t.Errorf("warnings for a declared provider: %v", w)
	}
	p.Spec.Telemetry.Tracing.Provider = "jaeger"
	set = renderPolicy(t, p, MeshPolicyOptions{TracingProviders: []string{"otel", "zipkin"}, MeshConfigRead: true})
	if w := tracingWarnings(set); len(w) != 1 || !strings.Contains(w[0].Message, `"jaeger" is not among the mesh configuration's extensionProviders (otel, zipkin)`) {
		t.Errorf("warnings %v, want one naming the provider and the declared ones", w)
	}
	if w := tracingWarnings(renderPolicy(t, p, MeshPolicyOptions{})); len(w) != 0 {
		t.Errorf("warnings %v without a mesh configuration to check against", w)
	}
}

// Authorization as users write it: exclusions (not*), conditions (when), and CUSTOM with an
// external authorizer the mesh configuration declares, or a warning when it does not.
func TestMeshPolicyAuthorizationExclusionsConditionsAndCustom(t *testing.T) {
	p := paymentPolicy()
	p.Spec.Authorization = &meshv1.Authorization{Rules: []meshv1.AuthorizationRule{{
		From: []meshv1.AuthorizationSource{{Namespaces: []string{"shop"}, NotServiceAccounts: []string{"shop/batch"}, NotNamespaces: []string{"legacy"}}},
		To:   []meshv1.AuthorizationOperation{{Methods: []string{"GET"}, NotPaths: []string{"/admin*"}, NotPorts: []int32{9090}, NotMethods: []string{"DELETE"}}},
		When: []meshv1.AuthorizationCondition{{Key: "request.headers[x-tenant]", Values: []string{"acme"}}, {Key: "source.ip", NotValues: []string{"10.0.0.0/8"}}},
	}}}
	y := asYAML(t, renderPolicy(t, p, MeshPolicyOptions{}).AuthorizationPolicies[0])
	flat := strings.Join(strings.Fields(y), " ")
	for _, want := range []string{"notNamespaces: - legacy notPrincipals: - cluster.local/ns/shop/sa/batch", "notMethods: - DELETE notPaths: - /admin* notPorts: - \"9090\"",
		"- key: request.headers[x-tenant] values: - acme - key: source.ip notValues: - 10.0.0.0/8"} {
		if !strings.Contains(flat, want) {
			t.Errorf("AuthorizationPolicy lacks %q:\n%s", want, y)
		}
	}

	p.Spec.Authorization = &meshv1.Authorization{Action: "CUSTOM", Provider: "ext-authz", Rules: []meshv1.AuthorizationRule{{To: []meshv1.AuthorizationOperation{{Paths: []string{"/api/*"}}}}}}
	set := renderPolicy(t, p, MeshPolicyOptions{MeshConfigRead: true, AuthorizationProviders: []string{"ext-authz"}})
	if y := strings.Join(strings.Fields(asYAML(t, set.AuthorizationPolicies[0])), " "); !strings.Contains(y, "action: CUSTOM") || !strings.Contains(y, "provider: name: ext-authz") {
		t.Errorf("CUSTOM policy:\n%s", y)
	}
	for _, w := range set.Warnings {
		if w.Field == "spec.authorization.provider" {
			t.Errorf("a warning for a declared authorizer: %v", w)
		}
	}
	set = renderPolicy(t, p, MeshPolicyOptions{MeshConfigRead: true, AuthorizationProviders: nil})
	if !slices.ContainsFunc(set.Warnings, func(w Warning) bool {
		return w.Field == "spec.authorization.provider" && strings.Contains(w.Message, `"ext-authz" is not among the mesh configuration's external authorizers (none)`)
	}) {
		t.Errorf("no warning for an undeclared authorizer: %v", set.Warnings)
	}
}

func tracingWarnings(set MeshPolicySet) []Warning {
	var out []Warning
	for _, w := range set.Warnings {
		if w.Field == "spec.telemetry.tracing.provider" {
			out = append(out, w)
		}
	}
	return out
}

// Sticky sessions and locality failover reach the Service's DestinationRule.
func TestMeshPolicyConsistentHashAndLocalityFailover(t *testing.T) {
	p := paymentPolicy()
	p.Spec.Resilience.LoadBalancer = ""
	p.Spec.Resilience.ConsistentHash = &meshv1.ConsistentHash{HTTPCookie: &meshv1.HashCookie{Name: "session", Path: "/", TTL: "1h"}}
	p.Spec.Resilience.LocalityFailover = []meshv1.LocalityFailover{{From: "us-east", To: "us-west"}}
	set := renderPolicy(t, p, MeshPolicyOptions{})
	if len(set.DestinationRules) == 0 {
		t.Fatal("no DestinationRule")
	}
	y := strings.Join(strings.Fields(asYAML(t, set.DestinationRules[0])), " ")
	for _, want := range []string{"consistentHash: httpCookie: name: session path: / ttl: 3600s", "localityLbSetting: enabled: true failover: - from: us-east to: us-west"} {
		if !strings.Contains(y, want) {
			t.Errorf("DestinationRule lacks %q: %s", want, y)
		}
	}
}

func TestMeshPolicyErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(p *meshv1.MeshPolicy)
		svc    func(s *corev1Service)
		field  string
		reason string
	}{
		{name: "route port not in the Service", mutate: func(p *meshv1.MeshPolicy) { p.Spec.Routes[0].Port = ptr[int32](8443) },
			field: "spec.routes[0].port", reason: meshv1.ReasonInconsistent},
		{name: "resilience timeout", mutate: func(p *meshv1.MeshPolicy) { p.Spec.Resilience.Timeout = "2" }, field: "spec.resilience.timeout"},
		{name: "retry per-try timeout", mutate: func(p *meshv1.MeshPolicy) { p.Spec.Resilience.Retries.PerTryTimeout = "0.5ms" }, field: "spec.resilience.retries.perTryTimeout"},
		{name: "circuit breaker interval", mutate: func(p *meshv1.MeshPolicy) { p.Spec.Resilience.CircuitBreaker.Interval = "5 s" }, field: "spec.resilience.circuitBreaker.interval"},
		{name: "consistent hash beside a load balancer", mutate: func(p *meshv1.MeshPolicy) {
			p.Spec.Resilience.LoadBalancer = "RANDOM"
			p.Spec.Resilience.ConsistentHash = &meshv1.ConsistentHash{HTTPHeaderName: "x-user"}
		}, field: "spec.resilience.consistentHash", reason: meshv1.ReasonInconsistent},
		{name: "consistent hash by two keys", mutate: func(p *meshv1.MeshPolicy) {
			p.Spec.Resilience.LoadBalancer = ""
			p.Spec.Resilience.ConsistentHash = &meshv1.ConsistentHash{HTTPHeaderName: "x-user", HTTPQueryParameterName: "user"}
		}, field: "spec.resilience.consistentHash"},
		{name: "locality failover without outlier detection", mutate: func(p *meshv1.MeshPolicy) {
			p.Spec.Resilience.CircuitBreaker = nil
			p.Spec.Resilience.LocalityFailover = []meshv1.LocalityFailover{{From: "us-east", To: "us-west"}}
		}, field: "spec.resilience.localityFailover", reason: meshv1.ReasonInconsistent},
		{name: "route timeout", mutate: func(p *meshv1.MeshPolicy) { p.Spec.Routes[0].Timeout = "1d" }, field: "spec.routes[0].timeout"},
		{name: "fault delay", mutate: func(p *meshv1.MeshPolicy) {
			p.Spec.Routes[1].Fault.Delay = &meshv1.FaultDelay{Percentage: 10, FixedDelay: "soon"}
		}, field: "spec.routes[1].fault.delay.fixedDelay"},
		{name: "fault percentage", mutate: func(p *meshv1.MeshPolicy) { p.Spec.Routes[1].Fault.Abort.Percentage = math.NaN() }, field: "spec.routes[1].fault.abort.percentage"},
		{name: "route regex", mutate: func(p *meshv1.MeshPolicy) { p.Spec.Routes[2].Match.URI.Regex = ptr("^/v2/(") }, field: "spec.routes[2].match.uri.regex"},
		{name: "header name", mutate: func(p *meshv1.MeshPolicy) {
			p.Spec.Routes[1].Match.Headers = map[string]meshv1.StringMatch{"X-Drill": {Exact: ptr("yes")}}
		}, field: "spec.routes[1].match.headers[X-Drill]"},
		{name: "duplicate route names", mutate: func(p *meshv1.MeshPolicy) { p.Spec.Routes[2].Name = "refunds" }, field: "spec.routes", reason: meshv1.ReasonInconsistent},
		{name: "service account", mutate: func(p *meshv1.MeshPolicy) {
			p.Spec.Authorization.Rules[0].From[0].ServiceAccounts[1] = "checkout"
		}, field: "spec.authorization.rules[0].from[0].serviceAccounts[1]"},
		{name: "path wildcard in the middle", mutate: func(p *meshv1.MeshPolicy) {
			p.Spec.Authorization.Rules[0].To[0].Paths = []string{"/payments/*/refund"}
		}, field: "spec.authorization.rules[0].to[0].paths[0]"},
		{name: "defaultDeny with DENY", mutate: func(p *meshv1.MeshPolicy) { p.Spec.Authorization.Action = "DENY" },
			field: "spec.authorization.defaultDeny", reason: meshv1.ReasonInconsistent},
		{name: "STATIC resolution", mutate: func(p *meshv1.MeshPolicy) { p.Spec.ExternalServices[0].Resolution = "STATIC" },
			field: "spec.externalServices[0].resolution", reason: meshv1.ReasonInconsistent},
		{name: "wildcard host resolved by DNS", mutate: func(p *meshv1.MeshPolicy) { p.Spec.ExternalServices[1].Resolution = "DNS" },
			field: "spec.externalServices[1].hosts[0]", reason: meshv1.ReasonInconsistent},
		{name: "duplicate external port", mutate: func(p *meshv1.MeshPolicy) {
			p.Spec.ExternalServices[0].Ports = append(p.Spec.ExternalServices[0].Ports, meshv1.ExternalPort{Number: 443, Protocol: "TLS"})
		}, field: "spec.externalServices[0].ports[1].number"},
		{name: "TLS origination without a TLS port", mutate: func(p *meshv1.MeshPolicy) {
			p.Spec.ExternalServices[0].Ports = []meshv1.ExternalPort{{Number: 80, Protocol: "HTTP"}}
		}, field: "spec.externalServices[0].tlsOrigination", reason: meshv1.ReasonInconsistent},
		{name: "TLS origination onto itself", mutate: func(p *meshv1.MeshPolicy) { p.Spec.ExternalServices[0].TLSOrigination.Port = 443 },
			field: "spec.externalServices[0].tlsOrigination.port", reason: meshv1.ReasonInconsistent},
		{name: "TLS origination from a TCP port", mutate: func(p *meshv1.MeshPolicy) {
			p.Spec.ExternalServices[0].Ports = append(p.Spec.ExternalServices[0].Ports, meshv1.ExternalPort{Number: 80, Protocol: "TCP"})
		}, field: "spec.externalServices[0].tlsOrigination.port", reason: meshv1.ReasonInconsistent},
		{name: "TLS origination with resolution NONE", mutate: func(p *meshv1.MeshPolicy) { p.Spec.ExternalServices[0].Resolution = "NONE" },
			field: "spec.externalServices[0].tlsOrigination", reason: meshv1.ReasonInconsistent},
		{name: "tracing percentage", mutate: func(p *meshv1.MeshPolicy) { p.Spec.Telemetry.Tracing.SamplingPercentage = 101 },
			field: "spec.telemetry.tracing.samplingPercentage"},
		{name: "Service without a selector", svc: func(s *corev1Service) { s.Spec.Selector = nil },
			field: "spec.targetRef.name", reason: meshv1.ReasonInconsistent},
		{name: "another Service", svc: func(s *corev1Service) { s.Name = "order-management" },
			field: "spec.targetRef.name", reason: meshv1.ReasonInconsistent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, svc := paymentPolicy(), paymentService()
			if tc.mutate != nil {
				tc.mutate(p)
			}
			if tc.svc != nil {
				tc.svc(svc)
			}
			_, err := MeshPolicyObjects(p, svc, MeshPolicyOptions{CertificateReady: true})
			reason := tc.reason
			if reason == "" {
				reason = meshv1.ReasonInvalidSpec
			}
			expectFieldError(t, err, tc.field, reason)
		})
	}
}

func TestMeshPolicyWarnings(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(p *meshv1.MeshPolicy)
		field  string
	}{
		{"port-level mTLS on a port the Service lacks", func(p *meshv1.MeshPolicy) { p.Spec.MTLS.PortLevel[0].Port = 15020 }, "spec.mtls.portLevel[0].port"},
		{"ALLOW without rules", func(p *meshv1.MeshPolicy) { p.Spec.Authorization.Rules = nil }, "spec.authorization.rules"},
		{"rule matching everything", func(p *meshv1.MeshPolicy) {
			p.Spec.Authorization.Rules = append(p.Spec.Authorization.Rules, meshv1.AuthorizationRule{})
		}, "spec.authorization.rules[2]"},
		{"unreachable route", func(p *meshv1.MeshPolicy) { p.Spec.Routes[0].Match = nil }, "spec.routes[1]"},
		{"retries longer than the timeout", func(p *meshv1.MeshPolicy) { p.Spec.Resilience.Retries.PerTryTimeout = "3s" }, "spec.resilience.retries.perTryTimeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := paymentPolicy()
			tc.mutate(p)
			set := renderPolicy(t, p, MeshPolicyOptions{})
			for _, w := range set.Warnings {
				if w.Field == tc.field {
					return
				}
			}
			t.Errorf("no warning on %s: %v", tc.field, set.Warnings)
		})
	}
}

func TestMeshPolicyDeterministic(t *testing.T) {
	hashes := func() string {
		set := renderPolicy(t, paymentPolicy(), MeshPolicyOptions{CertificateReady: true, CanarySelector: map[string]string{"app": "payment-processing", "b": "1", "c": "2"}})
		var out []string
		for _, o := range set.Objects() {
			h, err := Hash(o)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, h)
		}
		return strings.Join(out, ",")
	}
	first := hashes()
	for i := 0; i < 20; i++ {
		if hashes() != first {
			t.Fatalf("render %d differs", i)
		}
	}
}

// TLS origination always verifies the external host: against the system roots, written out
// as "system" (an empty caCertificates is what istioctl analyze warns about, IST0129, though
// istiod reads it the same), against a CA file or a Secret the policy names, or not at all
// when the policy opts out, with a warning.
func TestTLSOriginationVerifiesTheServer(t *testing.T) {
	tlsOf := func(dr *networkingv1.DestinationRule) string {
		return asYAML(t, dr)
	}
	origination := func(o meshv1.TLSOrigination, opts MeshPolicyOptions) MeshPolicySet {
		p := paymentPolicy()
		o.Port = 80
		p.Spec.ExternalServices[0].TLSOrigination = &o
		return renderPolicy(t, p, opts)
	}
	stripe := func(set MeshPolicySet) []*networkingv1.DestinationRule {
		var out []*networkingv1.DestinationRule
		for _, dr := range set.DestinationRules {
			if dr.Spec.Host == "api.stripe.com" {
				out = append(out, dr)
			}
		}
		return out
	}

	drs := stripe(origination(meshv1.TLSOrigination{}, MeshPolicyOptions{}))
	if len(drs) != 1 || !strings.Contains(tlsOf(drs[0]), "caCertificates: system") || drs[0].Spec.WorkloadSelector != nil {
		t.Errorf("default: want one DestinationRule verifying with the system roots, got %d: %v", len(drs), drs)
	}
	drs = stripe(origination(meshv1.TLSOrigination{CACertificates: "/etc/pki/stripe-ca.pem"}, MeshPolicyOptions{}))
	if len(drs) != 1 || !strings.Contains(tlsOf(drs[0]), "caCertificates: /etc/pki/stripe-ca.pem") {
		t.Errorf("caCertificates: got %v", drs)
	}
	// A credential is read only by the sidecars a DestinationRule selects: one per workload,
	// the canary's included.
	drs = stripe(origination(meshv1.TLSOrigination{CredentialName: "stripe-ca"},
		MeshPolicyOptions{CanarySelector: map[string]string{"app": "payment-processing", "track": "canary"}}))
	if len(drs) != 2 {
		t.Fatalf("credentialName: want a DestinationRule per workload, got %d", len(drs))
	}
	if drs[0].Name != "payment-processing-stripe" || drs[1].Name != "payment-processing-stripe-canary" ||
		drs[0].Spec.WorkloadSelector.GetMatchLabels()["app"] != "payment-processing" || drs[1].Spec.WorkloadSelector.GetMatchLabels()["track"] != "canary" {
		t.Errorf("credentialName: names %s, %s; selectors %v, %v", drs[0].Name, drs[1].Name, drs[0].Spec.WorkloadSelector, drs[1].Spec.WorkloadSelector)
	}
	for _, dr := range drs {
		if y := tlsOf(dr); !strings.Contains(y, "credentialName: stripe-ca") || strings.Contains(y, "caCertificates") {
			t.Errorf("credentialName: %s", y)
		}
	}
	set := origination(meshv1.TLSOrigination{InsecureSkipVerify: true}, MeshPolicyOptions{})
	if drs = stripe(set); len(drs) != 1 || !strings.Contains(tlsOf(drs[0]), "insecureSkipVerify: true") {
		t.Errorf("insecureSkipVerify: got %v", drs)
	}
	warned := false
	for _, w := range set.Warnings {
		warned = warned || w.Field == "spec.externalServices[0].tlsOrigination.insecureSkipVerify"
	}
	if !warned {
		t.Errorf("insecureSkipVerify: no warning: %v", set.Warnings)
	}

	for name, o := range map[string]meshv1.TLSOrigination{
		"spec.externalServices[0].tlsOrigination.credentialName":     {CACertificates: "/ca.pem", CredentialName: "ca"},
		"spec.externalServices[0].tlsOrigination.insecureSkipVerify": {CACertificates: "/ca.pem", InsecureSkipVerify: true},
	} {
		p := paymentPolicy()
		o.Port = 80
		p.Spec.ExternalServices[0].TLSOrigination = &o
		_, err := MeshPolicyObjects(p, paymentService(), MeshPolicyOptions{})
		expectFieldError(t, err, name, meshv1.ReasonInvalidSpec)
	}
}

// A Service's own name served on a shared gateway (the one form of its own host a tenant
// may put there) is listed spelled out, as the Gateway's hosts list it: a short name is
// the same host to istiod but matches no Gateway host for istioctl analyze (IST0132).
func TestIngressOfTheServicesOwnNameIsSpelledOut(t *testing.T) {
	p := paymentPolicy()
	own := "payment-processing.shop.svc.cluster.local"
	p.Spec.Ingress.Hosts = []string{own}
	set := renderPolicy(t, p, MeshPolicyOptions{})
	if len(set.VirtualServices) != 1 {
		t.Fatalf("%d VirtualServices, want the Service's", len(set.VirtualServices))
	}
	if got := set.VirtualServices[0].Spec.Hosts; !slices.Equal(got, []string{own}) {
		t.Errorf("VirtualService hosts %v, want [%s] once, spelled out", got, own)
	}
	var gwHosts []string
	for _, s := range set.Gateway.Spec.GetServers() {
		gwHosts = append(gwHosts, s.GetHosts()...)
	}
	if !slices.ContainsFunc(gwHosts, func(h string) bool { return strings.HasSuffix(h, own) }) {
		t.Errorf("Gateway hosts %v, want %s", gwHosts, own)
	}
}
