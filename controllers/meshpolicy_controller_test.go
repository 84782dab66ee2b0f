package controllers

import (
	"slices"
	"strings"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	istiotelv1 "istio.io/client-go/pkg/apis/telemetry/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
)

// catalogPolicy is the issue's example: product-catalog of the e-commerce mesh, with the
// ingress gateway in gwNS.
func catalogPolicy(ns, gwNS string) *meshv1.MeshPolicy {
	return &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "product-catalog"},
		Spec: meshv1.MeshPolicySpec{
			TargetRef: meshv1.ServiceRef{Kind: "Service", Name: "product-catalog"},
			MTLS:      &meshv1.MTLS{Mode: meshv1.MTLSStrict},
			Authorization: &meshv1.Authorization{
				Action: "ALLOW",
				Rules: []meshv1.AuthorizationRule{{
					From: []meshv1.AuthorizationSource{{ServiceAccounts: []string{ns + "/order-management"}}},
					To:   []meshv1.AuthorizationOperation{{Methods: []string{"GET"}, Paths: []string{"/products*"}}},
				}},
			},
			Resilience: &meshv1.Resilience{
				Timeout:        "10s",
				Retries:        &meshv1.HTTPRetry{Attempts: 2, PerTryTimeout: "5s", RetryOn: "5xx"},
				CircuitBreaker: &meshv1.CircuitBreaker{Consecutive5xxErrors: ptr.To[int32](5), Interval: "10s", BaseEjectionTime: "30s", MaxEjectionPercent: ptr.To[int32](50)},
				ConnectionPool: &meshv1.ConnectionPool{HTTP: &meshv1.HTTPConnectionPool{HTTP1MaxPendingRequests: ptr.To[int32](100)}},
				LoadBalancer:   "ROUND_ROBIN",
			},
			Routes: []meshv1.Route{{Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Prefix: ptr.To("/products")}}}},
			Ingress: &meshv1.Ingress{
				Gateway: meshv1.IngressGateway{Namespace: gwNS, Selector: map[string]string{"istio": "ingressgateway"}},
				Hosts:   []string{"shop.example.com"},
				TLS:     &meshv1.IngressTLS{IssuerRef: meshv1.IssuerRef{Kind: "ClusterIssuer", Name: "shop-ca"}},
			},
			Telemetry: &meshv1.Telemetry{Tracing: &meshv1.Tracing{SamplingPercentage: 10}, AccessLogging: ptr.To(true)},
		},
	}
}

// expectRendered checks every object the policy renders for opts against the API server.
func (h *policyHarness) expectRendered(p *meshv1.MeshPolicy, opts render.MeshPolicyOptions) render.MeshPolicySet {
	h.t.Helper()
	svc := &corev1.Service{}
	h.mustGet(p.Namespace, p.Spec.TargetRef.Name, svc)
	set, err := render.MeshPolicyObjects(p, svc, opts)
	if err != nil {
		h.t.Fatalf("rendering: %v", err)
	}
	for _, o := range set.Objects() {
		h.expectStored(o)
		live := o.DeepCopyObject().(client.Object)
		h.mustGet(o.GetNamespace(), o.GetName(), live)
		refs := live.GetOwnerReferences()
		switch {
		case o.GetNamespace() == p.Namespace && (len(refs) != 1 || refs[0].UID != p.UID || !ptr.Deref(refs[0].Controller, false)):
			h.t.Fatalf("%s %s: owner references %+v, want the policy as controller", kindOf(o), o.GetName(), refs)
		case o.GetNamespace() != p.Namespace && len(refs) != 0:
			h.t.Fatalf("%s %s/%s in another namespace has owner references %+v", kindOf(o), o.GetNamespace(), o.GetName(), refs)
		}
	}
	return set
}

func TestMeshPolicyIssueExampleIsAppliedAndAccepted(t *testing.T) {
	h := newPolicyHarness(t)
	h.create(serviceAccount("order-management"), service("product-catalog", 8080))
	h.create(catalogPolicy(h.ns, h.gwNS))

	// Before the certificate is issued, everything is applied, and the Gateway serves HTTP.
	p := h.settlePolicy("product-catalog")
	expectCondition(t, p, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonCertificatePending, "serves HTTP only")
	expectCondition(t, p, meshv1.ConditionReconciling, metav1.ConditionTrue, meshv1.ReasonCertificatePending)
	expectCondition(t, p, meshv1.ConditionStalled, metav1.ConditionFalse, meshv1.ReasonCertificatePending)
	set := h.expectRendered(p, render.MeshPolicyOptions{})
	if n := len(set.Objects()); n != 7 || len(p.Status.Objects) != n {
		t.Fatalf("rendered %d objects, status lists %d, want 7: %+v", n, len(p.Status.Objects), p.Status.Objects)
	}
	name := render.GatewayName(p)
	gw := &istionetv1.Gateway{}
	h.mustGet(h.gwNS, name, gw)
	for _, srv := range gw.Spec.Servers {
		if srv.GetTls().GetCredentialName() != "" || srv.GetPort().GetNumber() == 443 {
			t.Fatalf("the Gateway names a Secret before the Certificate is Ready: %v", srv)
		}
	}
	if o := objectState(p, "Gateway", h.gwNS, name); o == nil || o.State != statePending {
		t.Fatalf("Gateway state %+v, want Pending", o)
	}
	if o := objectState(p, "PeerAuthentication", h.ns, "product-catalog"); o == nil || o.State != stateApplied {
		t.Fatalf("PeerAuthentication state %+v, want Applied", o)
	}
	if len(p.Status.Certificates) != 1 || p.Status.Certificates[0].Ready || p.Status.Certificates[0].SecretName != render.CertificateSecretName(p) {
		t.Fatalf("certificates %+v, want one not Ready", p.Status.Certificates)
	}
	h.expectPolicyEvent("product-catalog", meshv1.ReasonCertificatePending)
	h.expectPolicyEvent("product-catalog", meshv1.ReasonReconciled, "Applied PeerAuthentication")

	// The example, field by field, as stored.
	pa := &istiosecv1.PeerAuthentication{}
	h.mustGet(h.ns, "product-catalog", pa)
	if pa.Spec.GetMtls().GetMode() != security.PeerAuthentication_MutualTLS_STRICT || pa.Spec.GetSelector().GetMatchLabels()["app"] != "product-catalog" {
		t.Fatalf("PeerAuthentication: %v", pa.Spec.String())
	}
	ap := &istiosecv1.AuthorizationPolicy{}
	h.mustGet(h.ns, "product-catalog", ap)
	rule := ap.Spec.GetRules()[0]
	if ap.Spec.GetAction() != security.AuthorizationPolicy_ALLOW ||
		!slices.Equal(rule.GetFrom()[0].GetSource().GetPrincipals(), []string{"cluster.local/ns/" + h.ns + "/sa/order-management"}) ||
		!slices.Equal(rule.GetTo()[0].GetOperation().GetMethods(), []string{"GET"}) ||
		!slices.Equal(rule.GetTo()[0].GetOperation().GetPaths(), []string{"/products*"}) {
		t.Fatalf("AuthorizationPolicy: %v", ap.Spec.String())
	}
	dr := &istionetv1.DestinationRule{}
	h.mustGet(h.ns, "product-catalog", dr)
	tp := dr.Spec.GetTrafficPolicy()
	od := tp.GetOutlierDetection()
	if tp.GetTls().GetMode() != networking.ClientTLSSettings_ISTIO_MUTUAL || tp.GetLoadBalancer().GetSimple() != networking.LoadBalancerSettings_ROUND_ROBIN ||
		od.GetConsecutive_5XxErrors().GetValue() != 5 || od.GetInterval().AsDuration() != 10*time.Second || od.GetBaseEjectionTime().AsDuration() != 30*time.Second ||
		od.GetMaxEjectionPercent() != 50 || tp.GetConnectionPool().GetHttp().GetHttp1MaxPendingRequests() != 100 {
		t.Fatalf("DestinationRule: %v", dr.Spec.String())
	}
	vs := &istionetv1.VirtualService{}
	h.mustGet(h.ns, "product-catalog", vs)
	route := vs.Spec.GetHttp()[0]
	if !slices.Equal(vs.Spec.GetHosts(), []string{"product-catalog", "shop.example.com"}) || !slices.Equal(vs.Spec.GetGateways(), []string{h.gwNS + "/" + name, "mesh"}) ||
		route.GetMatch()[0].GetUri().GetPrefix() != "/products" || route.GetTimeout().AsDuration() != 10*time.Second ||
		route.GetRetries().GetAttempts() != 2 || route.GetRetries().GetPerTryTimeout().AsDuration() != 5*time.Second || route.GetRetries().GetRetryOn() != "5xx" {
		t.Fatalf("VirtualService: %v", vs.Spec.String())
	}
	cert := &cmv1.Certificate{}
	h.mustGet(h.gwNS, name, cert)
	if !slices.Equal(cert.Spec.DNSNames, []string{"shop.example.com"}) || cert.Spec.IssuerRef.Kind != "ClusterIssuer" || cert.Spec.IssuerRef.Name != "shop-ca" ||
		cert.Spec.IssuerRef.Group != "cert-manager.io" || cert.Spec.SecretName != render.CertificateSecretName(p) {
		t.Fatalf("Certificate: %+v", cert.Spec)
	}
	tm := &istiotelv1.Telemetry{}
	h.mustGet(h.ns, "product-catalog", tm)
	if tm.Spec.GetTracing()[0].GetRandomSamplingPercentage().GetValue() != 10 || tm.Spec.GetAccessLogging()[0].GetProviders()[0].GetName() != "envoy" {
		t.Fatalf("Telemetry: %v", tm.Spec.String())
	}

	// Once cert-manager has issued the certificate, the Gateway terminates TLS with it.
	notAfter := time.Date(2027, 2, 20, 10, 0, 0, 0, time.UTC)
	h.issue(p, notAfter)
	p = h.settlePolicy("product-catalog")
	expectReady(t, p, "Applied 7 objects")
	h.expectRendered(p, render.MeshPolicyOptions{CertificateReady: true})
	h.mustGet(h.gwNS, name, gw)
	if len(gw.Spec.Servers) != 2 || gw.Spec.Servers[1].GetTls().GetCredentialName() != render.CertificateSecretName(p) ||
		gw.Spec.Servers[1].GetTls().GetMode() != networking.ServerTLSSettings_SIMPLE {
		t.Fatalf("Gateway after issuance: %v", gw.Spec.String())
	}
	cs := p.Status.Certificates[0]
	if !cs.Ready || cs.NotAfter == nil || !cs.NotAfter.Time.Equal(notAfter) || cs.RenewalTime == nil || !cs.RenewalTime.Time.Equal(notAfter.Add(-30*24*time.Hour)) {
		t.Fatalf("certificate status %+v, want Ready until %s", cs, notAfter)
	}
	for _, o := range p.Status.Objects {
		if o.State != stateApplied {
			t.Fatalf("object %+v is not Applied", o)
		}
	}
	h.expectPolicyEvent("product-catalog", meshv1.ReasonReconciled, "Gateway "+h.gwNS)

	// A reconcile with nothing to do sends nothing.
	before, applies := p.ResourceVersion, h.applies.n.Load()
	p, err := h.reconcilePolicy("product-catalog")
	if err != nil {
		t.Fatal(err)
	}
	if n := h.applies.n.Load() - applies; p.ResourceVersion != before || n != 0 {
		t.Fatalf("a no-op reconcile wrote: policy %s -> %s, %d apply requests", before, p.ResourceVersion, n)
	}
}

// TestMeshPolicyEveryFieldIsAccepted renders every field of the API into the objects the
// API server stores against Istio's and cert-manager's CRD schemas (CEL rules included).
func TestMeshPolicyEveryFieldIsAccepted(t *testing.T) {
	h := newPolicyHarness(t)
	h.create(serviceAccount("order-management"), serviceAccount("checkout"), service("payment-processing", 8080, 9090))
	pay := &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "payment-processing"},
		Spec: meshv1.MeshPolicySpec{
			TargetRef: meshv1.ServiceRef{Kind: "Service", Name: "payment-processing"},
			MTLS:      &meshv1.MTLS{Mode: meshv1.MTLSStrict, PortLevel: []meshv1.PortMTLS{{Port: 9090, Mode: meshv1.MTLSDisable}}},
			Authorization: &meshv1.Authorization{
				Action: "ALLOW", DefaultDeny: true,
				Rules: []meshv1.AuthorizationRule{
					{
						From: []meshv1.AuthorizationSource{
							{ServiceAccounts: []string{h.ns + "/order-management", h.ns + "/checkout"}},
							{Namespaces: []string{"shop-admin"}, Principals: []string{"cluster.local/ns/shop/sa/auditor"}},
						},
						To: []meshv1.AuthorizationOperation{{Methods: []string{"POST", "GET"}, Paths: []string{"/payments*", "*/status"}, Ports: []int32{8080}}},
					},
					{To: []meshv1.AuthorizationOperation{{Methods: []string{"GET"}, Paths: []string{"/healthz"}}}},
				},
			},
			Resilience: &meshv1.Resilience{
				Timeout: "2s",
				Retries: &meshv1.HTTPRetry{Attempts: 2, PerTryTimeout: "500ms", RetryOn: "connect-failure,refused-stream"},
				CircuitBreaker: &meshv1.CircuitBreaker{
					Consecutive5xxErrors: ptr.To[int32](3), ConsecutiveGatewayErrors: ptr.To[int32](2), Interval: "5s", BaseEjectionTime: "1m", MaxEjectionPercent: ptr.To[int32](30),
				},
				ConnectionPool: &meshv1.ConnectionPool{
					TCP: &meshv1.TCPConnectionPool{MaxConnections: ptr.To[int32](50), ConnectTimeout: "1s"},
					HTTP: &meshv1.HTTPConnectionPool{
						HTTP1MaxPendingRequests: ptr.To[int32](20), HTTP2MaxRequests: ptr.To[int32](100), MaxRequestsPerConnection: ptr.To[int32](10),
						MaxRetries: ptr.To[int32](3), IdleTimeout: "30s",
					},
				},
				LoadBalancer: "LEAST_REQUEST",
			},
			Routes: []meshv1.Route{
				{Name: "refunds", Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Prefix: ptr.To("/refunds")}, Method: &meshv1.StringMatch{Exact: ptr.To("POST")}}, Timeout: "10s", Port: ptr.To[int32](8080)},
				{
					Name: "drill",
					Match: &meshv1.HTTPMatch{
						Headers:     map[string]meshv1.StringMatch{"x-drill": {Exact: ptr.To("yes")}},
						QueryParams: map[string]meshv1.StringMatch{"mode": {Regex: ptr.To("^(abort|delay)$")}},
					},
					Fault: &meshv1.Fault{
						Delay: &meshv1.FaultDelay{Percentage: 10, FixedDelay: "7s"},
						Abort: &meshv1.FaultAbort{Percentage: 5.5, HTTPStatus: 503},
					},
					Retries: &meshv1.HTTPRetry{Attempts: 0},
				},
				{
					Name:    "v2-api",
					Match:   &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Regex: ptr.To("^/v2/.*")}},
					Rewrite: &meshv1.Rewrite{URI: "/", Authority: "payment-processing." + h.ns + ".svc.cluster.local"},
					Headers: &meshv1.Headers{
						Request:  &meshv1.HeaderOperations{Set: map[string]string{"x-api": "v2"}, Add: map[string]string{"x-via": "canopy"}},
						Response: &meshv1.HeaderOperations{Remove: []string{"server"}},
					},
				},
				{Name: "legacy", Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Exact: ptr.To("/v1/pay")}}, Rewrite: &meshv1.Rewrite{URI: "/payments"}},
			},
			ExternalServices: []meshv1.ExternalService{
				{
					Name: "processor", Hosts: []string{"api.payments.example.com"}, Resolution: "DNS",
					Ports:          []meshv1.ExternalPort{{Number: 443, Protocol: "HTTPS"}},
					TLSOrigination: &meshv1.TLSOrigination{Port: 80, SNI: "api.payments.example.com"},
				},
				{Name: "fraud-check", Hosts: []string{"*.fraud.example.net"}, Ports: []meshv1.ExternalPort{{Number: 443, Protocol: "TLS", Name: "tls"}}, Resolution: "NONE"},
			},
			Ingress: &meshv1.Ingress{
				Gateway: meshv1.IngressGateway{Namespace: h.gwNS, Selector: map[string]string{"istio": "ingressgateway"}},
				Hosts:   []string{"pay.shop.example.com", "*.pay.shop.example.com"},
				TLS:     &meshv1.IngressTLS{IssuerRef: meshv1.IssuerRef{Kind: "ClusterIssuer", Name: "shop-ca"}, HTTPSRedirect: true},
			},
			Telemetry: &meshv1.Telemetry{Tracing: &meshv1.Tracing{SamplingPercentage: 0.5}, AccessLogging: ptr.To(false)},
		},
	}
	// The other two actions, on two more services.
	deny := &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "order-management"},
		Spec: meshv1.MeshPolicySpec{
			TargetRef:     meshv1.ServiceRef{Name: "order-management"},
			MTLS:          &meshv1.MTLS{Mode: meshv1.MTLSPermissive},
			Authorization: &meshv1.Authorization{Action: "DENY", Rules: []meshv1.AuthorizationRule{{From: []meshv1.AuthorizationSource{{Namespaces: []string{"untrusted"}}}}}},
		},
	}
	audit := &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "legacy-audit"},
		Spec: meshv1.MeshPolicySpec{
			TargetRef:     meshv1.ServiceRef{Name: "legacy"},
			MTLS:          &meshv1.MTLS{Mode: meshv1.MTLSDisable},
			Authorization: &meshv1.Authorization{Action: "AUDIT", Rules: []meshv1.AuthorizationRule{{To: []meshv1.AuthorizationOperation{{Paths: []string{"/admin*"}}}}}},
		},
	}
	h.create(service("order-management", 8080), service("legacy", 8080), pay, deny, audit)

	for _, name := range []string{"order-management", "legacy-audit"} {
		p := h.settlePolicy(name)
		expectReady(t, p)
		h.expectRendered(p, render.MeshPolicyOptions{})
	}
	p := h.settlePolicy("payment-processing")
	expectCondition(t, p, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonCertificatePending,
		// Renderer warnings reach the condition (and events):
		// gateway traffic to a two-port Service goes to the first port.
		"has 2 ports")
	h.expectPolicyEvent("payment-processing", meshv1.ReasonRenderWarning, "has 2 ports")
	h.expectRendered(p, render.MeshPolicyOptions{})
	h.issue(p, time.Date(2027, 2, 20, 10, 0, 0, 0, time.UTC))
	p = h.settlePolicy("payment-processing")
	expectReady(t, p, "Applied 11 objects")
	set := h.expectRendered(p, render.MeshPolicyOptions{CertificateReady: true})
	if len(set.Objects()) != 11 {
		t.Fatalf("rendered %d objects, want 11", len(set.Objects()))
	}

	// A few fields whose stored form is easy to get wrong.
	allowNothing := &istiosecv1.AuthorizationPolicy{}
	h.mustGet(h.ns, "payment-processing-allow-nothing", allowNothing)
	se := &istionetv1.ServiceEntry{}
	h.mustGet(h.ns, "payment-processing-processor", se)
	if se.Spec.GetLocation() != networking.ServiceEntry_MESH_EXTERNAL || se.Spec.GetPorts()[1].GetTargetPort() != 443 {
		t.Fatalf("ServiceEntry: %v", se.Spec.String())
	}
	origin := &istionetv1.DestinationRule{}
	h.mustGet(h.ns, "payment-processing-processor", origin)
	if tls := origin.Spec.GetTrafficPolicy().GetPortLevelSettings()[0].GetTls(); tls.GetMode() != networking.ClientTLSSettings_SIMPLE || tls.GetSni() != "api.payments.example.com" || tls.GetCaCertificates() != "system" {
		t.Fatalf("TLS origination: %v", origin.Spec.String())
	}
	pa := &istiosecv1.PeerAuthentication{}
	h.mustGet(h.ns, "payment-processing", pa)
	if pa.Spec.GetPortLevelMtls()[9090].GetMode() != security.PeerAuthentication_MutualTLS_DISABLE {
		t.Fatalf("port-level mTLS: %v", pa.Spec.String())
	}
	vs := &istionetv1.VirtualService{}
	h.mustGet(h.ns, "payment-processing", vs)
	// The drill route has no port of its own: on the two-port Service it is one route per
	// port, each naming its port (Istio: IST0112).
	var drill *networking.HTTPRoute
	for _, r := range vs.Spec.GetHttp() {
		if r.GetName() == "drill-9090" && r.GetRoute()[0].GetDestination().GetPort().GetNumber() == 9090 {
			drill = r
		}
	}
	if drill == nil || drill.GetFault().GetAbort().GetPercentage().GetValue() != 5.5 || drill.GetFault().GetDelay().GetFixedDelay().AsDuration() != 7*time.Second {
		t.Fatalf("fault injection: %v", vs.Spec.String())
	}
	gw := &istionetv1.Gateway{}
	h.mustGet(h.gwNS, render.GatewayName(p), gw)
	if !gw.Spec.GetServers()[0].GetTls().GetHttpsRedirect() {
		t.Fatalf("HTTPS redirect: %v", gw.Spec.String())
	}
}

// TestMeshPolicyComposesWithAnInProgressCanary: a Canary and a MeshPolicy for one Service
// make one VirtualService, which the Canary writes; a change of the policy mid-rollout
// takes effect without moving the weights.
func TestMeshPolicyComposesWithAnInProgressCanary(t *testing.T) {
	h := newPolicyHarness(t)
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	h.create(&meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews"},
		Spec: meshv1.MeshPolicySpec{
			TargetRef:  meshv1.ServiceRef{Name: "reviews"},
			MTLS:       &meshv1.MTLS{Mode: meshv1.MTLSStrict},
			Resilience: &meshv1.Resilience{Timeout: "10s", Retries: &meshv1.HTTPRetry{Attempts: 2, PerTryTimeout: "5s", RetryOn: "5xx"}},
		},
	})
	p := h.settlePolicy("reviews")
	expectReady(t, p, "Canary reviews writes the Service's VirtualService")
	// The policy writes no routing of its own; its workload policies cover the primary's
	// pods (the apex Service's selector) and the canary's (the target's).
	h.mustNotExist(h.ns, "reviews", &istionetv1.DestinationRule{})
	pa := &istiosecv1.PeerAuthentication{}
	h.mustGet(h.ns, "reviews", pa)
	if pa.Spec.GetSelector().GetMatchLabels()["app"] != "reviews-primary" {
		t.Fatalf("PeerAuthentication reviews selects %v, want the primary's pods", pa.Spec.GetSelector())
	}
	h.mustGet(h.ns, "reviews-canary", pa)
	if pa.Spec.GetSelector().GetMatchLabels()["app"] != "reviews" {
		t.Fatalf("PeerAuthentication reviews-canary selects %v, want the canary's pods", pa.Spec.GetSelector())
	}

	// The Canary composes the policy into its routing.
	h.settle("reviews")
	h.startRollout("reviews:v2")
	h.expectWeights(90, 10)
	expectRetries(t, h.virtualService(), 2, 10*time.Second)
	dr := &istionetv1.DestinationRule{}
	h.mustGet(h.ns, "reviews-primary", dr)
	if dr.Spec.GetTrafficPolicy().GetTls().GetMode() != networking.ClientTLSSettings_ISTIO_MUTUAL {
		t.Fatalf("the Canary's DestinationRule lacks the policy's TLS: %v", dr.Spec.String())
	}
	p = h.settlePolicy("reviews")
	if o := objectState(p, "VirtualService", h.ns, "reviews"); o == nil || o.State != stateApplied || !strings.Contains(o.Message, "written by Canary reviews") {
		t.Fatalf("VirtualService state %+v, want Applied by the Canary", o)
	}

	// Mid-rollout, the policy's retries and timeout change.
	h.updatePolicy("reviews", func(s *meshv1.MeshPolicySpec) {
		s.Resilience.Timeout = "3s"
		s.Resilience.Retries = &meshv1.HTTPRetry{Attempts: 4, PerTryTimeout: "500ms", RetryOn: "5xx,reset"}
	})
	p = h.settlePolicy("reviews")
	expectReady(t, p)
	vsBefore := h.virtualService().ResourceVersion
	h.settle("reviews") // the Canary's watch on MeshPolicies re-renders
	if h.virtualService().ResourceVersion == vsBefore {
		t.Fatal("the policy change did not reach the VirtualService")
	}
	h.expectWeights(90, 10)
	expectRetries(t, h.virtualService(), 4, 3*time.Second)
	h.mustNotExist(h.ns, "reviews", &istionetv1.DestinationRule{})
}

func expectRetries(t *testing.T, vs *istionetv1.VirtualService, attempts int32, timeout time.Duration) {
	t.Helper()
	for _, r := range vs.Spec.GetHttp() {
		if r.GetRetries().GetAttempts() != attempts || r.GetTimeout().AsDuration() != timeout {
			t.Fatalf("route %q: retries %v timeout %v, want %d attempts and %s: %v", r.GetName(), r.GetRetries(), r.GetTimeout().AsDuration(), attempts, timeout, vs.Spec.String())
		}
	}
}

// TestMeshPolicyReportsAFailingIssuance: cert-manager's reason reaches the policy.
func TestMeshPolicyReportsAFailingIssuance(t *testing.T) {
	h := newPolicyHarness(t)
	h.create(serviceAccount("order-management"), service("product-catalog", 8080), catalogPolicy(h.ns, h.gwNS))
	p := h.settlePolicy("product-catalog")
	h.failIssuance(p, `The CSR PEM requests a commonName that is not present in the list of dnsNames`)
	p = h.settlePolicy("product-catalog")
	expectCondition(t, p, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonCertificateNotReady, "cert-manager: Failed", "not present in the list of dnsNames")
	if cs := p.Status.Certificates[0]; cs.Ready || !strings.Contains(cs.Message, "has failed to complete") {
		t.Fatalf("certificate status %+v", cs)
	}
	h.expectPolicyEvent("product-catalog", meshv1.ReasonCertificateNotReady, "not present in the list of dnsNames")
	gw := &istionetv1.Gateway{}
	h.mustGet(h.gwNS, render.GatewayName(p), gw)
	if len(gw.Spec.Servers) != 1 {
		t.Fatalf("the Gateway serves HTTPS without a certificate: %v", gw.Spec.String())
	}
}
