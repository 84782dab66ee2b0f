package controllers

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// A MeshPolicy that cannot be composed with a Canary's routing (here a route to a port the
// Canary does not serve) used to fail the Canary's whole render: the VirtualService stayed
// at the canary's weight and even a rollback could not land. Now the Canary routes on
// without the policy: all traffic on the primary while its rollout holds, a condition and
// an event saying why; fixed, the rollout goes on; broken again, an abort still lands.
func TestACanaryRoutesOnWhenItsPolicyDoesNotCompose(t *testing.T) {
	h := newPolicyHarness(t)
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	h.startRollout("reviews:v2")
	h.expectWeights(90, 10)

	h.create(&meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews"},
		Spec: meshv1.MeshPolicySpec{
			TargetRef: meshv1.ServiceRef{Name: "reviews"},
			Routes:    []meshv1.Route{{Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Prefix: ptr.To("/admin")}}, Port: ptr.To[int32](7777)}},
		},
	})
	c := h.settle("reviews") // the MeshPolicy watch wakes the Canary
	h.expectWeights(100, 0)
	expectPhase(t, c, meshv1.PhaseProgressing)
	if c.Status.CanaryWeight != 10 {
		t.Fatalf("status weight %d: the held rollout keeps its step", c.Status.CanaryWeight)
	}
	expectCanaryCondition(t, c, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonPolicyNotComposed, "all traffic on the primary", "spec.routes[0].port")
	expectCanaryCondition(t, c, meshv1.ConditionMeshPolicy, metav1.ConditionFalse, meshv1.ReasonPolicyNotComposed, "MeshPolicy reviews cannot be composed", "7777")
	h.expectEvent(meshv1.ReasonPolicyNotComposed)
	c = h.tick(5 * time.Minute)
	h.expectWeights(100, 0)
	if c.Status.StepIndex != 1 || c.Status.CanaryWeight != 10 {
		t.Fatalf("the rollout moved while held: step %d at %d%%", c.Status.StepIndex, c.Status.CanaryWeight)
	}

	// Fixed: the canary gets its weight back, with the policy's route composed.
	h.updatePolicy("reviews", func(s *meshv1.MeshPolicySpec) { s.Routes[0].Port = ptr.To[int32](9080) })
	c = h.settle("reviews")
	h.expectWeights(90, 10)
	expectCanaryCondition(t, c, meshv1.ConditionMeshPolicy, metav1.ConditionTrue, meshv1.ReasonPolicyComposed, "composed")
	if vs := h.virtualService(); !strings.Contains(vs.Spec.String(), "/admin") {
		t.Fatalf("the policy's route is not composed: %v", vs.Spec.String())
	}
	c = h.tick(time.Minute)
	h.expectWeights(80, 20)

	// Broken again, an abort lands: the rollback needs no policy.
	h.updatePolicy("reviews", func(s *meshv1.MeshPolicySpec) { s.Routes[0].Port = ptr.To[int32](7777) })
	h.settle("reviews")
	h.expectWeights(100, 0)
	h.annotate("reviews", meshv1.AnnotationRequest, "abort:1")
	c = h.settle("reviews")
	if c.Status.Phase != meshv1.PhaseRollingBack && c.Status.Phase != meshv1.PhaseFailed {
		t.Fatalf("phase %s after the abort, want the rollback", c.Status.Phase)
	}
	h.expectWeights(100, 0)
	c = h.tick(time.Minute)
	expectPhase(t, c, meshv1.PhaseFailed)
	expectCanaryCondition(t, c, meshv1.ConditionMeshPolicy, metav1.ConditionFalse, meshv1.ReasonPolicyNotComposed)
}

// A Canary whose own spec does not render writes nothing at all, the primary included:
// everything is rendered before anything is written.
func TestACanaryThatDoesNotRenderWritesNothing(t *testing.T) {
	h := newHarness(t)
	c := reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)})
	// The schema cannot refuse a regular expression that does not compile; the renderer does.
	c.Spec.Service.Match = []meshv1.HTTPMatch{{URI: &meshv1.StringMatch{Regex: ptr.To("(")}}}
	h.create(deployment("reviews", "reviews:v1", 2), c)
	got := h.reconcileRefused("reviews")
	expectCanaryCondition(t, got, meshv1.ConditionStalled, metav1.ConditionTrue, meshv1.ReasonInvalidSpec, "spec.service.match[0].uri.regex")
	if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews-primary"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the primary was written for a Canary whose routing does not render (%v)", err)
	}
}

func expectCanaryCondition(t *testing.T, c *meshv1.Canary, typ string, status metav1.ConditionStatus, reason string, contains ...string) {
	t.Helper()
	cond := meta.FindStatusCondition(c.Status.Conditions, typ)
	if cond == nil || cond.Status != status || cond.Reason != reason {
		t.Fatalf("condition %s is %+v, want %s with reason %s", typ, cond, status, reason)
	}
	for _, s := range contains {
		if !strings.Contains(cond.Message, s) {
			t.Fatalf("condition %s says %q, want it to mention %q", typ, cond.Message, s)
		}
	}
}

// A deletion that must wait (the target's revision was not promoted) keeps all traffic on
// the primary even when the service's MeshPolicy does not compose: the routes go without
// the policy, as a reconcile of a live Canary does, instead of failing on it.
func TestABlockedDeletionRoutesToThePrimaryWithAPolicyThatDoesNotCompose(t *testing.T) {
	h := newPolicyHarness(t)
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	h.startRollout("reviews:v2")
	h.create(&meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews"},
		Spec: meshv1.MeshPolicySpec{
			TargetRef: meshv1.ServiceRef{Name: "reviews"},
			Routes:    []meshv1.Route{{Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Prefix: ptr.To("/admin")}}, Port: ptr.To[int32](7777)}},
		},
	})
	h.deleteCanary() // fails the test if the finalizer's reconcile errs
	h.expectWeights(100, 0)
	expectReadyReason(t, h.canary(), meshv1.ReasonDeletionBlocked)
}
