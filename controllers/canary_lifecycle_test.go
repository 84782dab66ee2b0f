package controllers

import (
	"errors"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

func TestCanaryABTestingRoutesOnlyMatchingRequests(t *testing.T) {
	h := newHarness(t)
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{
		Iterations: ptr.To[int32](2),
		Match:      []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{"x-canary": {Exact: ptr.To("insider")}}}},
	}))
	h.startRollout("reviews:v2")
	http := h.virtualService().Spec.Http
	if len(http) != 2 {
		t.Fatalf("want an A/B route and a default route, got %d routes: %v", len(http), http)
	}
	ab := http[0]
	if len(ab.Match) != 1 || ab.Match[0].Headers["x-canary"].GetExact() != "insider" {
		t.Fatalf("first route should match x-canary: insider, got %v", ab.Match)
	}
	if len(ab.Route) != 1 || ab.Route[0].Destination.Host != "reviews-canary" {
		t.Fatalf("matching requests should all go to the canary: %v", ab.Route)
	}
	h.expectWeights(100, 0) // everyone else stays on the primary

	c := h.tick(time.Minute)
	if c.Status.Iterations != 1 {
		t.Fatalf("iterations %d after one passed check, want 1", c.Status.Iterations)
	}
	h.tick(time.Minute)
	c = h.tick(time.Minute)
	expectPhase(t, c, meshv1.PhasePromoting)
}

func TestCanaryMirrorsTraffic(t *testing.T) {
	h := newHarness(t)
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10), Mirror: true, MirrorWeight: ptr.To[int32](50)}))
	h.startRollout("reviews:v2")
	rt := h.virtualService().Spec.Http[0]
	if rt.Mirror.GetHost() != "reviews-canary" || rt.MirrorPercentage.GetValue() != 50 {
		t.Fatalf("route should mirror 50%% to reviews-canary, got mirror=%v percentage=%v", rt.Mirror, rt.MirrorPercentage)
	}
}

func TestCanaryManualRequests(t *testing.T) {
	h := newHarness(t)
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	h.startRollout("reviews:v2")
	h.expectWeights(90, 10)

	h.annotate("reviews", meshv1.AnnotationRequest, "pause:1")
	c := h.tick(5 * time.Minute)
	if !c.Status.Paused {
		t.Fatal("status.paused is false after a pause request")
	}
	h.expectWeights(90, 10)

	h.annotate("reviews", meshv1.AnnotationRequest, "resume:1")
	h.settle("reviews") // a resumed step observes a whole interval again
	h.tick(time.Minute)
	h.expectWeights(80, 20)

	h.annotate("reviews", meshv1.AnnotationRequest, "promote:1")
	c = h.settle("reviews")
	expectPhase(t, c, meshv1.PhasePromoting)

	// Abort on the next revision.
	h.markReady("reviews-primary")
	h.tick(time.Minute)
	c = h.tick(time.Minute)
	expectPhase(t, c, meshv1.PhaseSucceeded)
	h.startRollout("reviews:v3")
	h.annotate("reviews", meshv1.AnnotationRequest, "abort:1")
	h.settle("reviews")
	c = h.tick(time.Minute) // after the canary drained
	expectPhase(t, c, meshv1.PhaseFailed)
	h.expectWeights(100, 0)
	if c.Status.LastHandledRequest != "abort:1" {
		t.Fatalf("lastHandledRequest %q, want abort:1", c.Status.LastHandledRequest)
	}
}

func TestCanaryRepairsDrift(t *testing.T) {
	h := newHarness(t)
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	h.startRollout("reviews:v2")

	// Someone edits the generated VirtualService and the primary Service by hand.
	vs := h.virtualService()
	vs.Spec.Http[0].Route[0].Weight, vs.Spec.Http[0].Route[1].Weight = 50, 50
	if err := h.c.Update(t.Context(), vs); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{}
	if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews-primary"}, svc); err != nil {
		t.Fatal(err)
	}
	svc.Spec.Selector = map[string]string{"app": "something-else"}
	if err := h.c.Update(t.Context(), svc); err != nil {
		t.Fatal(err)
	}
	h.reconcile("reviews")
	h.expectWeights(90, 10)
	if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews-primary"}, svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Selector["app"] != "reviews-primary" {
		t.Fatalf("primary Service selector not repaired: %v", svc.Spec.Selector)
	}
}

func TestCanaryAdoptsAnExistingService(t *testing.T) {
	h := newHarness(t)
	h.create(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Labels: map[string]string{"team": "books"}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "reviews"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 9080}},
		},
	})
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	c, _ := h.reconcile("reviews")
	if !c.Status.ServiceAdopted {
		t.Fatal("status.serviceAdopted should say the existing Service was taken over")
	}
	svc := &corev1.Service{}
	if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews"}, svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Selector["app"] != "reviews-primary" {
		t.Fatalf("adopted Service should select the primary's pods: %v", svc.Spec.Selector)
	}
	if len(svc.OwnerReferences) != 0 {
		t.Fatalf("an adopted Service must not be owned (deleting the Canary would delete it): %v", svc.OwnerReferences)
	}
	if svc.Labels["team"] != "books" {
		t.Fatalf("the user's own fields must stay: labels %v", svc.Labels)
	}
}

func TestCanaryRepairsThePrimaryDeployment(t *testing.T) {
	h := newHarness(t)
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	d := h.deployment("reviews-primary")
	d.Spec.Template.Spec.Containers[0].Image = "reviews:hand-edited"
	if err := h.c.Update(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	h.reconcile("reviews")
	if img := h.deployment("reviews-primary").Spec.Template.Spec.Containers[0].Image; img != "reviews:v1" {
		t.Fatalf("primary image %s after one reconcile, want reviews:v1 put back", img)
	}
}

func TestCanaryGeneratesThePrimaryAutoscaler(t *testing.T) {
	h := newHarness(t)
	h.initializeWithAutoscaler()
	hpa := &autoscalingv2.HorizontalPodAutoscaler{}
	if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews-primary"}, hpa); err != nil {
		t.Fatalf("primary autoscaler: %v", err)
	}
	if hpa.Spec.ScaleTargetRef.Name != "reviews-primary" || hpa.Spec.MaxReplicas != 6 || ptr.Deref(hpa.Spec.MinReplicas, 0) != 2 {
		t.Fatalf("primary autoscaler should scale reviews-primary within 2..6: %+v", hpa.Spec)
	}

	// During analysis the user's autoscaler scales the canary; canopy does not fight it.
	h.setImage("reviews", "reviews:v2")
	h.settle("reviews")
	d := h.deployment("reviews")
	d.Spec.Replicas = ptr.To[int32](5)
	if err := h.c.Update(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	h.markReady("reviews")
	h.tick(time.Minute)
	if n := ptr.Deref(h.deployment("reviews").Spec.Replicas, 0); n != 5 {
		t.Fatalf("canary replicas %d, want the autoscaler's 5 left alone", n)
	}
}

// A replica count set on the target (e.g. by a GitOps sync) while no rollout runs moves to
// the primary, and the target goes back to zero.
func TestCanaryPrimaryFollowsTheTargetsReplicaCount(t *testing.T) {
	h := newHarness(t)
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	d := h.deployment("reviews")
	d.Spec.Replicas = ptr.To[int32](4)
	if err := h.c.Update(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	h.settle("reviews")
	if n := ptr.Deref(h.deployment("reviews-primary").Spec.Replicas, 0); n != 4 {
		t.Fatalf("primary replicas %d, want the target's new 4", n)
	}
	if n := ptr.Deref(h.deployment("reviews").Spec.Replicas, -1); n != 0 {
		t.Fatalf("target replicas %d, want 0", n)
	}
}

// A change to a ConfigMap the target reads is a new revision: the rollout starts, and the
// promoted primary's pod template changes with it, so its pods restart with the new config.
func TestCanaryTracksConfigMaps(t *testing.T) {
	h := newHarness(t)
	h.create(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "reviews-config"}, Data: map[string]string{"stars": "black"}})
	d := deployment("reviews", "reviews:v1", 2)
	d.Spec.Template.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "reviews-config"},
	}}}
	c := reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)})
	h.create(d, c)
	h.settle("reviews")
	h.markReady("reviews-primary")
	h.settle("reviews")
	c = h.tick(time.Minute)
	expectPhase(t, c, meshv1.PhaseInitialized)
	before := c.Status.CurrentRevision

	cm := &corev1.ConfigMap{}
	if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews-config"}, cm); err != nil {
		t.Fatal(err)
	}
	cm.Data["stars"] = "red"
	if err := h.c.Update(t.Context(), cm); err != nil {
		t.Fatal(err)
	}
	c = h.settle("reviews")
	expectPhase(t, c, meshv1.PhaseProgressing)
	if c.Status.CurrentRevision == before {
		t.Fatal("the ConfigMap change did not make a new revision")
	}
}

// A Canary whose spec is refused is Stalled, and says which generation it judged: kstatus,
// Argo CD's health check and kubectl wait otherwise show it "in progress" forever.
func TestCanaryStalledReportsTheObservedGeneration(t *testing.T) {
	h := newHarness(t)
	c := reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)})
	c.Spec.Service.Timeout = "0s" // the CRD accepts it; the renderer refuses a zero timeout
	h.create(deployment("reviews", "reviews:v1", 2), c)
	got := h.reconcileRefused("reviews")
	if !meta.IsStatusConditionTrue(got.Status.Conditions, meshv1.ConditionStalled) {
		t.Fatalf("a Canary with an invalid timeout is not Stalled: %v", got.Status.Conditions)
	}
	if got.Status.ObservedGeneration != got.Generation {
		t.Errorf("Stalled at generation %d with observedGeneration %d", got.Generation, got.Status.ObservedGeneration)
	}

	// A new spec that is refused again: the new generation is observed.
	got.Spec.Service.Timeout = "1500us"
	if err := h.c.Update(h.t.Context(), got); err != nil {
		t.Fatal(err)
	}
	got = h.reconcileRefused("reviews")
	if got.Generation < 2 || got.Status.ObservedGeneration != got.Generation {
		t.Errorf("after a second invalid spec: generation %d, observedGeneration %d", got.Generation, got.Status.ObservedGeneration)
	}
}

// reconcileRefused runs one reconcile that must end in a terminal error (a refused spec) and
// returns the Canary as it is afterwards.
func (h *harness) reconcileRefused(name string) *meshv1.Canary {
	h.t.Helper()
	_, err := h.r.Reconcile(h.t.Context(), ctrl.Request{NamespacedName: client.ObjectKey{Namespace: h.ns, Name: name}})
	if !errors.Is(err, reconcile.TerminalError(nil)) {
		h.t.Fatalf("reconcile: want a terminal error, got %v", err)
	}
	c := &meshv1.Canary{}
	if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: name}, c); err != nil {
		h.t.Fatal(err)
	}
	return c
}

// Two Canaries on one Deployment: the older owns it; the later one is Stalled with reason
// Conflict naming the owner, writes nothing, and deleting it leaves the owner's rollout
// alone (issue 20, item 2).
func TestCanarySecondCanaryOfATargetIsAConflict(t *testing.T) {
	h := newHarness(t)
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	vsBefore := h.virtualService().ResourceVersion

	second := reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](20)})
	second.Name = "reviews-again"
	h.create(second)
	got, _ := h.reconcile("reviews-again")
	cond := meta.FindStatusCondition(got.Status.Conditions, meshv1.ConditionStalled)
	if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != meshv1.ReasonConflict || !strings.Contains(cond.Message, "Canary reviews,") {
		t.Fatalf("the second Canary's Stalled condition: %+v, want Conflict naming reviews", cond)
	}
	if got.Status.ObservedGeneration != got.Generation {
		t.Errorf("observedGeneration %d of %d", got.Status.ObservedGeneration, got.Generation)
	}
	if vs := h.virtualService(); vs.ResourceVersion != vsBefore || metav1.GetControllerOf(vs).Name != "reviews" {
		t.Fatalf("the second Canary wrote the VirtualService: version %s (was %s), controller %v", vs.ResourceVersion, vsBefore, metav1.GetControllerOf(vs))
	}

	// Deleting it touches neither the target nor what the owner generated.
	if err := h.c.Delete(h.t.Context(), got); err != nil {
		t.Fatal(err)
	}
	if _, err := h.r.Reconcile(h.t.Context(), reconcileRequest(h.ns, "reviews-again")); err != nil {
		t.Fatalf("reconcile on deletion: %v", err)
	}
	if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews-again"}, &meshv1.Canary{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the refused Canary is still there: %v", err)
	}
	if n := ptr.Deref(h.deployment("reviews").Spec.Replicas, -1); n != 0 {
		t.Errorf("the target has %d replicas after the refused Canary went, want the owner's 0", n)
	}
	if vs := h.virtualService(); vs.ResourceVersion != vsBefore {
		t.Errorf("the owner's VirtualService changed when the refused Canary went")
	}
	// The owner goes on.
	h.startRollout("reviews:v2")
	h.expectWeights(90, 10)
}

// A readiness threshold lets a large primary or canary count as ready before every replica
// is available, as Flagger's primaryReadyThreshold and canaryReadyThreshold do (issue 20,
// item 9); the default, 100, waits for all of them.
func TestCanaryReadinessThresholds(t *testing.T) {
	h := newHarness(t)
	c := reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10), PrimaryReadyThreshold: 75, CanaryReadyThreshold: 50})
	h.create(deployment("reviews", "reviews:v1", 4), c)
	expectPhase(t, h.settle("reviews"), meshv1.PhaseInitializing)
	h.markAvailable("reviews-primary", 2)
	expectPhase(t, h.settle("reviews"), meshv1.PhaseInitializing) // 2 of 4 < 75%
	h.markAvailable("reviews-primary", 3)
	expectPhase(t, h.settle("reviews"), meshv1.PhaseInitialized) // 3 of 4 = 75%
	h.tick(time.Minute)

	h.setImage("reviews", "reviews:v2")
	expectPhase(t, h.settle("reviews"), meshv1.PhaseProgressing)
	h.markAvailable("reviews", 1)
	h.settle("reviews")
	h.expectWeights(100, 0) // 1 of 4 < 50%: no traffic yet
	h.markAvailable("reviews", 2)
	h.settle("reviews")
	h.expectWeights(90, 10) // 2 of 4 = 50%
}
