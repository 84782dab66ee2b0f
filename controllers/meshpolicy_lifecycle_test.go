package controllers

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	networking "istio.io/api/networking/v1alpha3"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	istiotelv1 "istio.io/client-go/pkg/apis/telemetry/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/testenv"
)

func simplePolicy(name, target string) *meshv1.MeshPolicy {
	return &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: meshv1.MeshPolicySpec{
			TargetRef:  meshv1.ServiceRef{Name: target},
			MTLS:       &meshv1.MTLS{Mode: meshv1.MTLSStrict},
			Resilience: &meshv1.Resilience{Timeout: "5s", LoadBalancer: "LEAST_REQUEST"},
		},
	}
}

// TestMeshPolicyConflictRefusesTheNewerPolicy: two policies for one Service; the newer is
// refused, naming the other, even when its name sorts first; it takes over once the older
// one is gone.
func TestMeshPolicyConflictRefusesTheNewerPolicy(t *testing.T) {
	h := newPolicyHarness(t)
	h.create(service("catalog", 8080), simplePolicy("zz-first", "catalog"))
	first := h.settlePolicy("zz-first")
	expectReady(t, first)

	// Creation timestamps have a resolution of one second.
	testenv.Eventually(t, 10*time.Second, func() error {
		if time.Now().Truncate(time.Second).After(first.CreationTimestamp.Time) {
			return nil
		}
		return errors.New("still the first policy's second")
	})
	second := simplePolicy("aa-second", "catalog")
	second.Spec.Resilience.Timeout = "1s"
	h.create(second)
	second = h.settlePolicy("aa-second")
	expectStalled(t, second, meshv1.ReasonConflict, "MeshPolicy zz-first already targets Service catalog")
	h.expectPolicyEvent("aa-second", meshv1.ReasonConflict, "zz-first")
	if len(second.Status.Objects) != 0 {
		t.Fatalf("the refused policy lists objects: %+v", second.Status.Objects)
	}
	for _, list := range []client.ObjectList{&istiosecv1.PeerAuthenticationList{}, &istionetv1.VirtualServiceList{}, &istionetv1.DestinationRuleList{}} {
		if err := h.c.List(h.t.Context(), list, client.InNamespace(h.ns), client.MatchingLabels{meshv1.LabelOwnerName: "aa-second"}); err != nil {
			t.Fatal(err)
		}
		if n := len(mustExtract(t, list)); n != 0 {
			t.Fatalf("the refused policy generated %d %T", n, list)
		}
	}
	expectReady(t, h.settlePolicy("zz-first"))
	vs := &istionetv1.VirtualService{}
	h.mustGet(h.ns, "catalog", vs)
	if vs.Spec.GetHttp()[0].GetTimeout().AsDuration() != 5*time.Second {
		t.Fatalf("the refused policy's timeout reached the VirtualService: %v", vs.Spec.String())
	}

	// The older policy goes; the newer one is applied (a manager's watch on MeshPolicies
	// of the same target brings it back).
	if err := h.c.Delete(h.t.Context(), first); err != nil {
		t.Fatal(err)
	}
	if p := h.settlePolicy("zz-first"); p != nil {
		t.Fatalf("the deleted policy is still there: %+v", p.ObjectMeta)
	}
	expectReady(t, h.settlePolicy("aa-second"))
	h.mustGet(h.ns, "catalog", vs)
	if vs.Spec.GetHttp()[0].GetTimeout().AsDuration() != time.Second || vs.Labels[meshv1.LabelOwnerName] != "aa-second" {
		t.Fatalf("the VirtualService is not the second policy's: %v %v", vs.Labels, vs.Spec.String())
	}
}

// TestMeshPolicyPrunesWhatItNoLongerRenders: removed ingress and external services, and a
// Canary taking the routing over and leaving again.
func TestMeshPolicyPrunesWhatItNoLongerRenders(t *testing.T) {
	h := newPolicyHarness(t)
	p := simplePolicy("reviews", "reviews")
	p.Spec.ExternalServices = []meshv1.ExternalService{{
		Name: "ratings-api", Hosts: []string{"ratings.example.com"},
		Ports: []meshv1.ExternalPort{{Number: 443, Protocol: "HTTPS"}}, TLSOrigination: &meshv1.TLSOrigination{Port: 80},
	}}
	p.Spec.Ingress = &meshv1.Ingress{
		Gateway: meshv1.IngressGateway{Namespace: h.gwNS, Selector: map[string]string{"istio": "ingressgateway"}},
		Hosts:   []string{"reviews.example.com"},
		TLS:     &meshv1.IngressTLS{IssuerRef: meshv1.IssuerRef{Kind: "ClusterIssuer", Name: "shop-ca"}},
	}
	h.create(service("reviews", 9080), p)
	p = h.settlePolicy("reviews")
	gwName := render.GatewayName(p)
	h.mustGet(h.gwNS, gwName, &istionetv1.Gateway{})
	h.mustGet(h.gwNS, gwName, &cmv1.Certificate{})
	h.mustGet(h.ns, "reviews-ratings-api", &istionetv1.ServiceEntry{})
	h.mustGet(h.ns, "reviews-ratings-api", &istionetv1.DestinationRule{})

	// No more ingress: the Gateway and Certificate of the gateway's namespace go.
	h.updatePolicy("reviews", func(s *meshv1.MeshPolicySpec) { s.Ingress = nil })
	p = h.settlePolicy("reviews")
	expectReady(t, p)
	h.mustNotExist(h.gwNS, gwName, &istionetv1.Gateway{})
	h.mustNotExist(h.gwNS, gwName, &cmv1.Certificate{})
	if len(p.Status.Certificates) != 0 {
		t.Fatalf("status still lists certificates: %+v", p.Status.Certificates)
	}
	h.expectPolicyEvent("reviews", meshv1.ReasonReconciled, "Deleted Certificate "+h.gwNS+"/"+gwName)

	// No more external service: its ServiceEntry and TLS origination go.
	h.updatePolicy("reviews", func(s *meshv1.MeshPolicySpec) { s.ExternalServices = nil })
	expectReady(t, h.settlePolicy("reviews"))
	h.mustNotExist(h.ns, "reviews-ratings-api", &istionetv1.ServiceEntry{})
	h.mustNotExist(h.ns, "reviews-ratings-api", &istionetv1.DestinationRule{})
	h.mustGet(h.ns, "reviews", &istionetv1.DestinationRule{})

	// A Canary arrives. Before its first reconcile the policy already stops writing the
	// routing and deletes its DestinationRule, but leaves the VirtualService the Canary is
	// about to take over in place (deleting it would drop the routing for a moment).
	h.create(deployment("reviews", "reviews:v1", 2), reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	p = h.settlePolicy("reviews")
	expectReady(t, p)
	h.mustNotExist(h.ns, "reviews", &istionetv1.DestinationRule{})
	vs := &istionetv1.VirtualService{}
	h.mustGet(h.ns, "reviews", vs)
	if o := objectState(p, "VirtualService", h.ns, "reviews"); o == nil || o.State != statePending {
		t.Fatalf("VirtualService state %+v, want Pending on the Canary", o)
	}
	h.settle("reviews")
	h.mustGet(h.ns, "reviews", vs)
	if vs.Labels[meshv1.LabelOwnerKind] != render.KindCanary || !metav1.IsControlledBy(vs, h.canary()) {
		t.Fatalf("the Canary did not take the VirtualService over: %v %v", vs.Labels, vs.OwnerReferences)
	}
	p = h.settlePolicy("reviews")
	if o := objectState(p, "VirtualService", h.ns, "reviews"); o == nil || o.State != stateApplied {
		t.Fatalf("VirtualService state %+v, want Applied by the Canary", o)
	}
	h.mustGet(h.ns, "reviews", vs) // the policy left it alone

	// The Canary goes (envtest runs no garbage collector: its objects stay, as they would
	// for a moment on a real cluster). The policy takes the VirtualService back in place and
	// writes its DestinationRule again.
	c := h.canary()
	if err := h.c.Delete(h.t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if _, err := h.r.Reconcile(h.t.Context(), reconcileRequest(h.ns, "reviews")); err != nil {
		t.Fatal(err)
	}
	p = h.settlePolicy("reviews")
	expectReady(t, p)
	h.mustGet(h.ns, "reviews", vs)
	if vs.Labels[meshv1.LabelOwnerKind] != render.KindMeshPolicy || !metav1.IsControlledBy(vs, p) || len(vs.OwnerReferences) != 1 {
		t.Fatalf("the policy did not take the VirtualService back: %v %v", vs.Labels, vs.OwnerReferences)
	}
	dr := &istionetv1.DestinationRule{}
	h.mustGet(h.ns, "reviews", dr)
	if dr.Spec.GetTrafficPolicy().GetLoadBalancer().GetSimple() != networking.LoadBalancerSettings_LEAST_REQUEST {
		t.Fatalf("DestinationRule: %v", dr.Spec.String())
	}
}

func (h *policyHarness) canary() *meshv1.Canary {
	h.t.Helper()
	c := &meshv1.Canary{}
	h.mustGet(h.ns, "reviews", c)
	return c
}

// TestMeshPolicyDeletionCleansUpTheGatewayNamespace: the Gateway and Certificate carry no
// owner reference (another namespace); the finalizer deletes them.
func TestMeshPolicyDeletionCleansUpTheGatewayNamespace(t *testing.T) {
	h := newPolicyHarness(t)
	h.create(serviceAccount("order-management"), service("product-catalog", 8080), catalogPolicy(h.ns, h.gwNS))
	p := h.settlePolicy("product-catalog")
	if p.Finalizers[0] != MeshPolicyFinalizer {
		t.Fatalf("finalizers %v", p.Finalizers)
	}
	name := render.GatewayName(p)
	h.mustGet(h.gwNS, name, &istionetv1.Gateway{})
	h.mustGet(h.gwNS, name, &cmv1.Certificate{})
	// Another policy's objects in the same gateway namespace are left alone.
	other := simplePolicy("other", "other")
	other.Spec.Ingress = &meshv1.Ingress{Gateway: meshv1.IngressGateway{Namespace: h.gwNS, Selector: map[string]string{"istio": "ingressgateway"}}, Hosts: []string{"other.example.com"}}
	h.create(service("other", 8080), other)
	other = h.settlePolicy("other")

	if err := h.c.Delete(h.t.Context(), p); err != nil {
		t.Fatal(err)
	}
	if p := h.settlePolicy("product-catalog"); p != nil {
		t.Fatalf("the policy is still there after its finalizer ran: %+v", p.ObjectMeta)
	}
	h.mustNotExist(h.gwNS, name, &istionetv1.Gateway{})
	h.mustNotExist(h.gwNS, name, &cmv1.Certificate{})
	h.mustNotExist(h.ns, "product-catalog", &istiosecv1.PeerAuthentication{})
	h.mustNotExist(h.ns, "product-catalog", &istiotelv1.Telemetry{})
	h.mustGet(h.gwNS, render.GatewayName(other), &istionetv1.Gateway{})
}

// TestMeshPolicyConsistencyChecks: what a policy cannot be applied with, and what it is
// applied with a warning.
func TestMeshPolicyConsistencyChecks(t *testing.T) {
	h := newPolicyHarness(t)

	t.Run("the target Service is missing until it is created", func(t *testing.T) {
		h.create(simplePolicy("late", "late"))
		p := h.settlePolicy("late")
		expectCondition(t, p, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonTargetNotFound, "Service "+h.ns+"/late does not exist")
		expectCondition(t, p, meshv1.ConditionReconciling, metav1.ConditionTrue, meshv1.ReasonTargetNotFound)
		expectCondition(t, p, meshv1.ConditionStalled, metav1.ConditionFalse, meshv1.ReasonTargetNotFound)
		h.create(service("late", 8080))
		expectReady(t, h.settlePolicy("late"))
	})

	t.Run("the gateway's namespace is missing", func(t *testing.T) {
		p := simplePolicy("edge", "edge")
		p.Spec.Ingress = &meshv1.Ingress{Gateway: meshv1.IngressGateway{Namespace: "absent-" + h.ns, Selector: map[string]string{"istio": "ingressgateway"}}, Hosts: []string{"edge.example.com"}}
		h.create(service("edge", 8080), p)
		if _, err := h.reconcilePolicy("edge"); err == nil || errors.Is(err, errTerminal) {
			t.Fatalf("reconcile returned %v, want an error to retry", err)
		}
		p = h.policy("edge")
		expectCondition(t, p, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonApplyFailed, "the ingress gateway's namespace absent-"+h.ns+" does not exist")
		expectCondition(t, p, meshv1.ConditionReconciling, metav1.ConditionTrue, meshv1.ReasonApplyFailed)
		if o := objectState(p, "Gateway", "absent-"+h.ns, render.GatewayName(p)); o == nil || o.State != stateFailed {
			t.Fatalf("Gateway state %+v, want Failed", o)
		}
		if p.Status.ObservedGeneration == p.Generation {
			t.Fatal("observedGeneration says the generation was reconciled, though the apply failed")
		}
	})

	t.Run("ingress TLS without cert-manager's API", func(t *testing.T) {
		h.pr.NoCertManager.Store(true) // what Setup finds on a cluster without cert-manager
		defer h.pr.NoCertManager.Store(false)
		p := simplePolicy("tls", "tls")
		p.Spec.Ingress = &meshv1.Ingress{
			Gateway: meshv1.IngressGateway{Namespace: h.gwNS, Selector: map[string]string{"istio": "ingressgateway"}},
			Hosts:   []string{"tls.example.com"},
			TLS:     &meshv1.IngressTLS{IssuerRef: meshv1.IssuerRef{Kind: "ClusterIssuer", Name: "shop-ca"}},
		}
		h.create(service("tls", 8080), p)
		p = h.settlePolicy("tls")
		expectStalled(t, p, meshv1.ReasonMeshAPIMissing, "install cert-manager")
		// Without TLS the ingress works with no cert-manager at all.
		h.updatePolicy("tls", func(s *meshv1.MeshPolicySpec) { s.Ingress.TLS = nil })
		expectReady(t, h.settlePolicy("tls"))
		h.mustGet(h.gwNS, render.GatewayName(p), &istionetv1.Gateway{})
	})

	t.Run("a route to a port the Service lacks", func(t *testing.T) {
		p := simplePolicy("ports", "ports")
		p.Spec.Routes = []meshv1.Route{{Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Prefix: ptr.To("/admin")}}, Port: ptr.To[int32](9999)}}
		h.create(service("ports", 8080), p)
		_, err := h.reconcilePolicy("ports")
		if !errors.Is(err, errTerminal) {
			t.Fatalf("reconcile returned %v, want a terminal error", err)
		}
		p = h.settlePolicy("ports")
		expectStalled(t, p, meshv1.ReasonInconsistent, "spec.routes[0].port: 9999 is not a port of Service \"ports\"")
		h.expectPolicyEvent("ports", meshv1.ReasonInconsistent, "9999")
		h.mustNotExist(h.ns, "ports", &istiosecv1.PeerAuthentication{}) // nothing applied
		h.updatePolicy("ports", func(s *meshv1.MeshPolicySpec) { s.Routes[0].Port = ptr.To[int32](8080) })
		expectReady(t, h.settlePolicy("ports"))
	})

	t.Run("an authorization naming a missing service account", func(t *testing.T) {
		p := simplePolicy("authz", "authz")
		p.Spec.Authorization = &meshv1.Authorization{Rules: []meshv1.AuthorizationRule{{
			From: []meshv1.AuthorizationSource{{ServiceAccounts: []string{h.ns + "/ghost"}}},
		}}}
		h.create(service("authz", 8080), p)
		p = h.settlePolicy("authz")
		want := fmt.Sprintf("spec.authorization.rules[0].from[0].serviceAccounts[0]: ServiceAccount %s/ghost does not exist", h.ns)
		expectReady(t, p, "warnings: "+want)
		h.expectPolicyEvent("authz", meshv1.ReasonServiceAccountNotFound, want)
		h.mustGet(h.ns, "authz", &istiosecv1.AuthorizationPolicy{}) // applied all the same
		h.create(serviceAccount("ghost"))
		p = h.settlePolicy("authz")
		expectReady(t, p)
		if c := p.Status.Conditions; len(c) == 0 || containsAny(p, "ghost") {
			t.Fatalf("the warning outlived the service account's creation: %+v", c)
		}
	})

	t.Run("a DestinationRule of another author whose TLS contradicts the mTLS mode", func(t *testing.T) {
		legacy := &istionetv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "legacy-plaintext"}}
		legacy.Spec.Host = "billing." + h.ns + ".svc.cluster.local"
		legacy.Spec.TrafficPolicy = &networking.TrafficPolicy{Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_DISABLE}}
		h.create(service("billing", 8080), legacy, simplePolicy("billing", "billing"))
		p := h.settlePolicy("billing")
		expectStalled(t, p, meshv1.ReasonInconsistent, "DestinationRule legacy-plaintext trafficPolicy.tls.mode is DISABLE, which cannot reach workloads whose spec.mtls.mode is STRICT")
		h.mustNotExist(h.ns, "billing", &istiosecv1.PeerAuthentication{})
		if err := h.c.Delete(h.t.Context(), legacy); err != nil {
			t.Fatal(err)
		}
		expectReady(t, h.settlePolicy("billing"))
	})

	t.Run("a Canary whose DestinationRules' TLS contradicts the mTLS mode", func(t *testing.T) {
		c := reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)})
		c.Spec.Service.TrafficPolicy = &meshv1.TrafficPolicy{TLSMode: "SIMPLE"}
		h.create(service("reviews", 9080), deployment("reviews", "reviews:v1", 1), c, simplePolicy("reviews", "reviews"))
		p := h.settlePolicy("reviews")
		expectStalled(t, p, meshv1.ReasonInconsistent, "Canary/reviews spec.service.trafficPolicy.tlsMode: SIMPLE cannot reach workloads whose MeshPolicy/reviews spec.mtls.mode is STRICT")
		h.updatePolicy("reviews", func(s *meshv1.MeshPolicySpec) { s.MTLS.Mode = meshv1.MTLSPermissive })
		expectReady(t, h.settlePolicy("reviews"))
	})
}

func containsAny(p *meshv1.MeshPolicy, s string) bool {
	for _, c := range p.Status.Conditions {
		if strings.Contains(c.Message, s) {
			return true
		}
	}
	return false
}

func mustExtract(t *testing.T, list client.ObjectList) []runtime.Object {
	t.Helper()
	items, err := meta.ExtractList(list)
	if err != nil {
		t.Fatal(err)
	}
	return items
}
