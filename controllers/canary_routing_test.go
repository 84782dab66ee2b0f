package controllers

import (
	"strings"
	"testing"
	"time"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
)

// A Canary with routing.provider gatewayapi routes with an HTTPRoute whose parent is the
// apex Service, says which of its settings the Gateway API cannot express, and moves to
// Istio's objects (deleting the HTTPRoute) when the provider changes.
func TestCanaryRoutedWithTheGatewayAPI(t *testing.T) {
	h := newHarness(t)
	c := reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)})
	c.Spec.Routing = &meshv1.CanaryRouting{Provider: meshv1.RoutingGatewayAPI}
	c.Spec.Service.Retries = &meshv1.HTTPRetry{Attempts: 3}
	// The API server's schema of the CORS filter accepts what canopy writes.
	c.Spec.Service.CorsPolicy = &meshv1.CorsPolicy{AllowOrigins: []meshv1.StringMatch{{Exact: ptr.To("https://shop.example.com")}}, AllowMethods: []string{"GET"}, MaxAge: "1h"}
	h.create(deployment("reviews", "reviews:v1", 2), c)
	h.settle("reviews")
	h.markReady("reviews-primary")
	got := h.settle("reviews")
	expectPhase(t, got, meshv1.PhaseInitialized)

	hr := h.httpRoute()
	if p, w, ok := render.ObservedHTTPRouteWeights(hr, "reviews"); !ok || p != 100 || w != 0 {
		t.Fatalf("HTTPRoute reviews splits %d/%d (%v), want 100/0", p, w, ok)
	}
	if refs := hr.Spec.ParentRefs; len(refs) != 1 || ptr.Deref(refs[0].Kind, "") != "Service" || refs[0].Name != "reviews" {
		t.Errorf("HTTPRoute parents %+v, want the apex Service", refs)
	}
	if !metav1.IsControlledBy(hr, got) {
		t.Errorf("the HTTPRoute is not controlled by the Canary: %+v", hr.OwnerReferences)
	}
	if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews"}, &istionetv1.VirtualService{}); !apierrors.IsNotFound(err) {
		t.Errorf("a VirtualService reviews exists with routing.provider gatewayapi (%v)", err)
	}
	cond := meta.FindStatusCondition(got.Status.Conditions, meshv1.ConditionRouting)
	if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != meshv1.ReasonRoutingIncomplete || !strings.Contains(cond.Message, "spec.service.retries") {
		t.Fatalf("Routing condition %+v, want False naming spec.service.retries", cond)
	}
	if strings.Contains(cond.Message, "corsPolicy") {
		t.Errorf("Routing condition names the CORS policy, which the HTTPRoute carries: %s", cond.Message)
	}
	if f := hr.Spec.Rules[0].Filters; len(f) != 1 || f[0].CORS == nil {
		t.Errorf("HTTPRoute filters %+v, want the CORS filter", f)
	}

	// Back to Istio: the VirtualService routes, the HTTPRoute goes, nothing is left unsaid.
	patch := client.MergeFrom(got.DeepCopy())
	got.Spec.Routing.Provider = meshv1.RoutingIstio
	if err := h.c.Patch(t.Context(), got, patch); err != nil {
		t.Fatal(err)
	}
	got = h.settle("reviews")
	h.expectWeights(100, 0)
	if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews"}, &gwapiv1.HTTPRoute{}); !apierrors.IsNotFound(err) {
		t.Errorf("HTTPRoute reviews is still there after the provider changed to istio (%v)", err)
	}
	if cond := meta.FindStatusCondition(got.Status.Conditions, meshv1.ConditionRouting); cond != nil {
		t.Errorf("Routing condition %+v with Istio, which expresses every setting", cond)
	}
}

// The API server refuses Istio's gateway name "mesh" with the Gateway API.
func TestCanaryGatewayAPIRefusesTheMeshGateway(t *testing.T) {
	h := newHarness(t)
	c := reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)})
	c.Namespace = h.ns
	c.Spec.Routing = &meshv1.CanaryRouting{Provider: meshv1.RoutingGatewayAPI}
	c.Spec.Service.Gateways = []string{"edge/public", "mesh"}
	err := h.c.Create(t.Context(), c)
	if err == nil || !strings.Contains(err.Error(), "service.gateways") {
		t.Fatalf("created with gateway mesh and routing.provider gatewayapi (%v)", err)
	}
}

func (h *harness) httpRoute() *gwapiv1.HTTPRoute {
	h.t.Helper()
	hr := &gwapiv1.HTTPRoute{}
	if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews"}, hr); err != nil {
		h.t.Fatalf("reading HTTPRoute reviews: %v", err)
	}
	return hr
}

// A MeshPolicy composed into a Gateway API Canary's routing: its routes become HTTPRoute
// rules, and its settings the Gateway API cannot express are named in the Canary's Routing
// condition.
func TestCanaryGatewayAPIComposesItsPolicy(t *testing.T) {
	h := newPolicyHarness(t)
	c := reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)})
	c.Spec.Routing = &meshv1.CanaryRouting{Provider: meshv1.RoutingGatewayAPI}
	h.create(&meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews"},
		Spec: meshv1.MeshPolicySpec{
			TargetRef:  meshv1.ServiceRef{Name: "reviews"},
			Resilience: &meshv1.Resilience{Retries: &meshv1.HTTPRetry{Attempts: 2}},
			Routes: []meshv1.Route{{
				Name: "admin", Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Exact: ptr.To("/admin")}}, Timeout: "3s",
				Fault: &meshv1.Fault{Abort: &meshv1.FaultAbort{Percentage: 1, HTTPStatus: 503}},
			}},
		},
	})
	h.create(deployment("reviews", "reviews:v1", 2), c)
	h.settle("reviews")
	h.markReady("reviews-primary")
	got := h.settle("reviews")
	expectPhase(t, got, meshv1.PhaseInitialized)
	expectCanaryCondition(t, got, meshv1.ConditionMeshPolicy, metav1.ConditionTrue, meshv1.ReasonPolicyComposed, "composed")
	expectCanaryCondition(t, got, meshv1.ConditionRouting, metav1.ConditionFalse, meshv1.ReasonRoutingIncomplete,
		"MeshPolicy/reviews spec.resilience.retries", "MeshPolicy/reviews spec.routes[0].fault")
	var admin *gwapiv1.HTTPRouteRule
	for i, rule := range h.httpRoute().Spec.Rules {
		if rule.Name != nil && *rule.Name == "admin" {
			admin = &h.httpRoute().Spec.Rules[i]
		}
	}
	if admin == nil || admin.Timeouts == nil || admin.Timeouts.Request == nil || *admin.Timeouts.Request != "3s" ||
		len(admin.Matches) != 1 || *admin.Matches[0].Path.Value != "/admin" {
		t.Fatalf("the policy's route is not an HTTPRoute rule as declared: %+v", admin)
	}
	// The policy's own status names the HTTPRoute and warns of what is not in force.
	p := h.settlePolicy("reviews")
	found := false
	for _, o := range p.Status.Objects {
		if o.Kind == "HTTPRoute" && o.Name == "reviews" {
			found = o.State == "Applied" && strings.Contains(o.Message, "routing.provider gatewayapi")
		}
	}
	if !found {
		t.Errorf("MeshPolicy status.objects %+v, want the HTTPRoute written by the Canary", p.Status.Objects)
	}
	h.expectPolicyEvent("reviews", meshv1.ReasonRenderWarning, "spec.resilience.retries")
}

// Deleting a Gateway API Canary: while a rollout runs, the deletion waits with the
// HTTPRoute at 100/0 (no VirtualService appears); at rest, the hand-over removes the
// HTTPRoute with the rest of what was generated.
func TestCanaryGatewayAPIDeletion(t *testing.T) {
	initialized := func(t *testing.T) *harness {
		h := newHarness(t)
		c := reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)})
		c.Spec.Routing = &meshv1.CanaryRouting{Provider: meshv1.RoutingGatewayAPI}
		h.create(deployment("reviews", "reviews:v1", 2), c)
		h.settle("reviews")
		h.markReady("reviews-primary")
		expectPhase(t, h.settle("reviews"), meshv1.PhaseInitialized)
		h.tick(time.Minute) // the target is scaled down once its traffic drained
		return h
	}
	split := func(h *harness) (int32, int32) {
		p, c, ok := render.ObservedHTTPRouteWeights(h.httpRoute(), "reviews")
		if !ok {
			h.t.Fatalf("HTTPRoute reviews has no split: %+v", h.httpRoute().Spec.Rules)
		}
		return p, c
	}
	t.Run("during a rollout", func(t *testing.T) {
		h := initialized(t)
		h.startRollout("reviews:v2")
		if p, c := split(h); p != 90 || c != 10 {
			t.Fatalf("HTTPRoute splits %d/%d, want 90/10", p, c)
		}
		h.deleteCanary()
		expectReadyReason(t, h.canary(), meshv1.ReasonDeletionBlocked)
		if p, c := split(h); p != 100 || c != 0 {
			t.Fatalf("HTTPRoute splits %d/%d while the deletion waits, want 100/0", p, c)
		}
		if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews"}, &istionetv1.VirtualService{}); !apierrors.IsNotFound(err) {
			t.Errorf("a VirtualService appeared for a Gateway API Canary (%v)", err)
		}
	})
	t.Run("at rest", func(t *testing.T) {
		h := initialized(t)
		h.deleteCanary()
		h.handOver()
		h.expectHandedOver(2)
		if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews"}, &gwapiv1.HTTPRoute{}); !apierrors.IsNotFound(err) {
			t.Errorf("HTTPRoute reviews is still there after the hand-over (%v)", err)
		}
	})
}
