package e2e

import (
	"fmt"
	"strings"
	"testing"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	telemetryv1 "istio.io/client-go/pkg/apis/telemetry/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

// Tracing as the articles set it up with Zipkin: a MeshPolicy names the mesh's tracing
// provider, its sampling and tags; istiod accepts the Telemetry canopy writes (its
// validating webhook, and istioctl analyze when the test ends). A provider the mesh
// configuration does not declare is applied but said in status, naming the ones it does.
func TestMeshPolicyTracingProvider(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	startOperator(t, manager.Options{})
	deployService(t, ns, "reviews")
	team := "bookinfo"
	p := &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec: meshv1.MeshPolicySpec{
			TargetRef: meshv1.ServiceRef{Name: "reviews"},
			Telemetry: &meshv1.Telemetry{Tracing: &meshv1.Tracing{
				SamplingPercentage: 25, Provider: testenv.TracingProvider,
				CustomTags: map[string]meshv1.TracingTag{
					"team": {Literal: &team},
					"user": {Header: &meshv1.TagSource{Name: "x-user", DefaultValue: "anonymous"}},
				},
			}},
		},
	}
	if err := env.Client.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitPolicy(t, ns, "reviews", func(p *meshv1.MeshPolicy) error {
		return expectPolicyCondition(p, meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonReconciled)
	})
	tm := &telemetryv1.Telemetry{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews"}, tm); err != nil {
		t.Fatal(err)
	}
	tr := tm.Spec.GetTracing()
	if len(tr) != 1 || len(tr[0].GetProviders()) != 1 || tr[0].GetProviders()[0].GetName() != testenv.TracingProvider ||
		tr[0].GetRandomSamplingPercentage().GetValue() != 25 ||
		tr[0].GetCustomTags()["team"].GetLiteral().GetValue() != team || tr[0].GetCustomTags()["user"].GetHeader().GetName() != "x-user" {
		t.Fatalf("Telemetry reviews traces %v, want provider %s at 25%% with the two tags", tr, testenv.TracingProvider)
	}

	// A provider the mesh does not declare.
	p = waitPolicy(t, ns, "reviews", func(*meshv1.MeshPolicy) error { return nil })
	p.Spec.Telemetry.Tracing.Provider = "jaeger"
	if err := env.Client.Update(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitPolicy(t, ns, "reviews", func(p *meshv1.MeshPolicy) error {
		return expectPolicyCondition(p, meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonReconciled,
			"spec.telemetry.tracing.provider", `"jaeger" is not among the mesh configuration's extensionProviders (`+testenv.TracingProvider+")")
	})
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews"}, tm); err != nil {
		t.Fatal(err)
	}
	if got := tm.Spec.GetTracing()[0].GetProviders()[0].GetName(); got != "jaeger" {
		t.Errorf("Telemetry provider %q: the policy is applied all the same (%s)", got, fmt.Sprint(tm.Spec.GetTracing()))
	}
}

// deployService creates a Deployment of one replica and its Service on port 9080.
func deployService(t *testing.T, ns, name string) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}},
	}
	for _, o := range []client.Object{newDeployment(ns, name, "bookinfo/"+name+":v1", 1), svc} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	return svc
}

// Authorization as users write it: exclusions, conditions and an external authorizer
// (action CUSTOM) that the mesh configuration declares; istiod accepts what canopy writes.
// An authorizer the mesh does not declare is said in status.
func TestMeshPolicyAuthorizationAsUsersWriteIt(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	startOperator(t, manager.Options{})
	deployService(t, ns, "reviews")
	deployService(t, ns, "ratings")
	policies := []*meshv1.MeshPolicy{{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec: meshv1.MeshPolicySpec{TargetRef: meshv1.ServiceRef{Name: "reviews"}, Authorization: &meshv1.Authorization{Rules: []meshv1.AuthorizationRule{{
			From: []meshv1.AuthorizationSource{{Namespaces: []string{ns}, NotServiceAccounts: []string{ns + "/batch"}}},
			To:   []meshv1.AuthorizationOperation{{Methods: []string{"GET", "POST"}, NotPaths: []string{"/admin*"}}},
			When: []meshv1.AuthorizationCondition{{Key: "request.headers[x-tenant]", Values: []string{"acme"}}, {Key: "source.ip", NotValues: []string{"10.0.0.0/8"}}},
		}}}},
	}, {
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ratings"},
		Spec: meshv1.MeshPolicySpec{TargetRef: meshv1.ServiceRef{Name: "ratings"}, Authorization: &meshv1.Authorization{
			Action: "CUSTOM", Provider: testenv.AuthorizationProvider,
			Rules: []meshv1.AuthorizationRule{{To: []meshv1.AuthorizationOperation{{Paths: []string{"/api/*"}}}}},
		}},
	}}
	for _, p := range policies {
		if err := env.Client.Create(t.Context(), p); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"reviews", "ratings"} {
		p := waitPolicy(t, ns, name, func(p *meshv1.MeshPolicy) error {
			return expectPolicyCondition(p, meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonReconciled)
		})
		if c := meta.FindStatusCondition(p.Status.Conditions, meshv1.ConditionReady); strings.Contains(c.Message, "warning") {
			t.Errorf("MeshPolicy %s warns: %s", name, c.Message)
		}
	}
	ap := &istiosecv1.AuthorizationPolicy{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "ratings"}, ap); err != nil {
		t.Fatal(err)
	}
	if ap.Spec.GetAction().String() != "CUSTOM" || ap.Spec.GetProvider().GetName() != testenv.AuthorizationProvider {
		t.Errorf("AuthorizationPolicy ratings: %v", ap.Spec.String())
	}

	p := waitPolicy(t, ns, "ratings", func(*meshv1.MeshPolicy) error { return nil })
	p.Spec.Authorization.Provider = "opa"
	if err := env.Client.Update(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitPolicy(t, ns, "ratings", func(p *meshv1.MeshPolicy) error {
		return expectPolicyCondition(p, meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonReconciled,
			"spec.authorization.provider", `"opa" is not among the mesh configuration's external authorizers (`+testenv.AuthorizationProvider+")")
	})
}

// Sticky sessions by cookie and locality failover, as the fault tolerance articles set them
// up: istiod accepts the DestinationRule canopy writes, and istioctl analyze finds nothing.
func TestMeshPolicyStickySessionsAndLocalityFailover(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	startOperator(t, manager.Options{})
	deployService(t, ns, "cart")
	p := &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cart"},
		Spec: meshv1.MeshPolicySpec{TargetRef: meshv1.ServiceRef{Name: "cart"}, Resilience: &meshv1.Resilience{
			ConsistentHash:   &meshv1.ConsistentHash{HTTPCookie: &meshv1.HashCookie{Name: "session", TTL: "30m"}},
			CircuitBreaker:   &meshv1.CircuitBreaker{Consecutive5xxErrors: ptrTo[int32](5), Interval: "10s", BaseEjectionTime: "30s"},
			LocalityFailover: []meshv1.LocalityFailover{{From: "us-east", To: "us-west"}},
		}},
	}
	if err := env.Client.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitPolicy(t, ns, "cart", func(p *meshv1.MeshPolicy) error {
		return expectPolicyCondition(p, meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonReconciled)
	})
	dr := &istionetv1.DestinationRule{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "cart"}, dr); err != nil {
		t.Fatal(err)
	}
	lb := dr.Spec.GetTrafficPolicy().GetLoadBalancer()
	if lb.GetConsistentHash().GetHttpCookie().GetName() != "session" || len(lb.GetLocalityLbSetting().GetFailover()) != 1 {
		t.Errorf("DestinationRule cart balances %v", lb)
	}

	// Refused at admission by the CRD: a consistent hash beside a simple load balancer.
	bad := p.DeepCopy()
	bad.ObjectMeta = metav1.ObjectMeta{Namespace: ns, Name: "cart-bad"}
	bad.Spec.Resilience.LoadBalancer = "RANDOM"
	if err := env.Client.Create(t.Context(), bad); err == nil || !strings.Contains(err.Error(), "consistentHash replaces loadBalancer") {
		t.Errorf("a consistent hash beside a load balancer was accepted: %v", err)
	}
}
