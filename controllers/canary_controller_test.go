package controllers

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/testenv"
)

func reviewsCanary(analysis meshv1.CanaryAnalysis) *meshv1.Canary {
	if analysis.Interval == "" {
		analysis.Interval = "1m"
	}
	if analysis.Threshold == 0 {
		analysis.Threshold = 2
	}
	if analysis.MaxWeight == 0 {
		analysis.MaxWeight = 30
	}
	if analysis.Metrics == nil {
		analysis.Metrics = []meshv1.CanaryMetric{{
			Name: "request-success-rate", ThresholdRange: meshv1.ThresholdRange{Min: ptr.To(99.0)}, OnError: meshv1.OnErrorHold, HoldTimeout: "10m",
		}}
	}
	return &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews"},
		Spec: meshv1.CanarySpec{
			TargetRef: meshv1.TargetRef{APIVersion: "apps/v1", Kind: "Deployment", Name: "reviews"},
			Service:   meshv1.CanaryService{Port: 9080},
			Analysis:  analysis,
		},
	}
}

// weights reads the apex VirtualService's split as the mesh would route it.
func (h *harness) weights() (int32, int32) {
	h.t.Helper()
	vs := h.virtualService()
	p, c, ok := render.ObservedWeights(vs, "reviews")
	if !ok {
		h.t.Fatalf("VirtualService reviews has no primary/canary split: %v", vs.Spec.String())
	}
	return p, c
}

func (h *harness) virtualService() *istionetv1.VirtualService {
	h.t.Helper()
	vs := &istionetv1.VirtualService{}
	if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews"}, vs); err != nil {
		h.t.Fatalf("reading VirtualService reviews: %v", err)
	}
	return vs
}

func (h *harness) expectWeights(primary, canary int32) {
	h.t.Helper()
	if p, c := h.weights(); p != primary || c != canary {
		b, _ := json.Marshal(h.virtualService().Spec.Http)
		h.t.Fatalf("VirtualService reviews routes %d/%d, want %d/%d: %s", p, c, primary, canary, b)
	}
}

func expectPhase(t *testing.T, c *meshv1.Canary, phase meshv1.CanaryPhase) {
	t.Helper()
	if c.Status.Phase != phase {
		t.Fatalf("phase is %q, want %q (conditions: %+v)", c.Status.Phase, phase, c.Status.Conditions)
	}
}

// initialize takes a new Canary to Initialized: primary generated, ready, target at zero.
func (h *harness) initialize(c *meshv1.Canary) {
	h.t.Helper()
	h.create(deployment("reviews", "reviews:v1", 2), c)
	got := h.settle("reviews")
	expectPhase(h.t, got, meshv1.PhaseInitializing)
	// Until the primary is ready, the target's own pods keep serving (through the canary
	// Service), so that initialization never routes to pods that are not there yet.
	h.expectWeights(0, 100)
	for _, name := range []string{"reviews", "reviews-primary", "reviews-canary"} {
		if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: name}, &corev1.Service{}); err != nil {
			h.t.Fatalf("Service %s: %v", name, err)
		}
	}
	for _, name := range []string{"reviews-primary", "reviews-canary"} {
		if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: name}, &istionetv1.DestinationRule{}); err != nil {
			h.t.Fatalf("DestinationRule %s: %v", name, err)
		}
	}
	h.markReady("reviews-primary")
	got = h.settle("reviews")
	expectPhase(h.t, got, meshv1.PhaseInitialized)
	h.expectWeights(100, 0)
	h.tick(time.Minute) // the target is scaled down once its traffic drained
	if n := ptr.Deref(h.deployment("reviews").Spec.Replicas, -1); n != 0 {
		h.t.Fatalf("target has %d replicas after initialization, want 0", n)
	}
	if n := ptr.Deref(h.deployment("reviews-primary").Spec.Replicas, -1); n != 2 {
		h.t.Fatalf("primary has %d replicas, want the target's 2", n)
	}
}

// startRollout changes the image and brings the canary up.
func (h *harness) startRollout(image string) *meshv1.Canary {
	h.t.Helper()
	h.setImage("reviews", image)
	got := h.settle("reviews")
	expectPhase(h.t, got, meshv1.PhaseProgressing)
	if n := ptr.Deref(h.deployment("reviews").Spec.Replicas, -1); n != 2 {
		h.t.Fatalf("canary scaled to %d replicas, want the primary's 2", n)
	}
	h.markReady("reviews")
	return h.settle("reviews")
}

// tick moves the fake clock by d and reconciles.
func (h *harness) tick(d time.Duration) *meshv1.Canary {
	h.clock.Step(d)
	return h.settle("reviews")
}

func TestCanaryWeightedRolloutIsPromoted(t *testing.T) {
	h := newHarness(t)
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	// Checks need traffic to judge: the first step is taken as soon as the canary is ready.
	h.startRollout("reviews:v2")
	h.expectWeights(90, 10)

	for _, want := range []int32{20, 30} {
		c := h.tick(time.Minute)
		expectPhase(t, c, meshv1.PhaseProgressing)
		h.expectWeights(100-want, want)
		if c.Status.CanaryWeight != want {
			t.Fatalf("status weight %d, want %d", c.Status.CanaryWeight, want)
		}
	}
	// The next passing check promotes: the primary gets the canary's template.
	c := h.tick(time.Minute)
	expectPhase(t, c, meshv1.PhasePromoting)
	if img := h.deployment("reviews-primary").Spec.Template.Spec.Containers[0].Image; img != "reviews:v2" {
		t.Fatalf("primary runs %s while promoting, want reviews:v2", img)
	}
	h.markReady("reviews-primary")
	h.tick(time.Minute) // Finalising: traffic back on the primary, the canary drains
	c = h.tick(time.Minute)
	expectPhase(t, c, meshv1.PhaseSucceeded)
	h.expectWeights(100, 0)
	if n := ptr.Deref(h.deployment("reviews").Spec.Replicas, -1); n != 0 {
		t.Fatalf("canary has %d replicas after promotion, want 0", n)
	}
	if c.Status.LastPromotedRevision != c.Status.CurrentRevision || c.Status.CurrentRevision == "" {
		t.Fatalf("revisions after promotion: current %q, last promoted %q", c.Status.CurrentRevision, c.Status.LastPromotedRevision)
	}
	if !meta.IsStatusConditionTrue(c.Status.Conditions, meshv1.ConditionReady) {
		t.Fatalf("Ready is not True after promotion: %+v", c.Status.Conditions)
	}
	h.expectEvent(meshv1.ReasonSucceeded)

	h.expectNoWrites()
}

// expectNoWrites says a reconcile with nothing to do sends no write request at all.
func (h *harness) expectNoWrites() {
	h.t.Helper()
	h.writes.Store(0)
	h.reconcile("reviews")
	if n := h.writes.Load(); n != 0 {
		h.t.Fatalf("a no-op reconcile sent %d write requests, want 0", n)
	}
}

func TestCanaryFailingRevisionIsRolledBack(t *testing.T) {
	h := newHarness(t)
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	h.startRollout("reviews:v3")
	h.expectWeights(90, 10)

	h.analyzer.set(meshv1.OutcomeFail, "80.00")
	c := h.tick(time.Minute)
	if c.Status.FailedChecks != 1 {
		t.Fatalf("failed checks %d, want 1", c.Status.FailedChecks)
	}
	h.expectWeights(90, 10) // a failed check does not move traffic
	h.tick(time.Minute)     // second failure: the threshold is reached, rolling back
	c = h.tick(time.Minute)
	expectPhase(t, c, meshv1.PhaseFailed)
	h.expectWeights(100, 0)
	if n := ptr.Deref(h.deployment("reviews").Spec.Replicas, -1); n != 0 {
		t.Fatalf("canary has %d replicas after rollback, want 0", n)
	}
	if img := h.deployment("reviews-primary").Spec.Template.Spec.Containers[0].Image; img != "reviews:v1" {
		t.Fatalf("primary runs %s after rollback, want reviews:v1 untouched", img)
	}
	ready := meta.FindStatusCondition(c.Status.Conditions, meshv1.ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionFalse || !strings.Contains(ready.Message, "request-success-rate") || !strings.Contains(ready.Message, "80.00") {
		t.Fatalf("Ready condition should name the failing metric and its value: %+v", ready)
	}
	h.expectEvent(meshv1.ReasonRolledBack)

	// The same bad revision is not tried again...
	c = h.tick(time.Minute)
	expectPhase(t, c, meshv1.PhaseFailed)
	// ...unless retried.
	h.analyzer.set(meshv1.OutcomePass, "100")
	h.annotate("reviews", meshv1.AnnotationRequest, "retry:1")
	c = h.settle("reviews")
	expectPhase(t, c, meshv1.PhaseProgressing)
}

func (h *harness) expectEvent(reason string) {
	h.t.Helper()
	testenv.Eventually(h.t, 30*time.Second, func() error {
		list := &eventsv1.EventList{}
		if err := h.c.List(h.t.Context(), list, client.InNamespace(h.ns)); err != nil {
			return err
		}
		var seen []string
		for _, e := range list.Items {
			if e.Reason == reason && e.Regarding.Kind == "Canary" {
				return nil
			}
			seen = append(seen, e.Reason)
		}
		return &hookError{"no event with reason " + reason + "; seen " + strings.Join(seen, ",")}
	})
}

func TestMergeEventsKeepsEveryMessage(t *testing.T) {
	got := mergeEvents([]progress.Event{
		{Type: progress.EventWarning, Reason: meshv1.ReasonCheckFailed, Message: "Check failed (2 of 2)"},
		{Type: progress.EventNormal, Reason: meshv1.ReasonRollingBack, Message: "Routing all traffic to the primary"},
		{Type: progress.EventWarning, Reason: meshv1.ReasonCheckFailed, Message: "Rolled back"},
	})
	if len(got) != 2 || got[0].Message != "Check failed (2 of 2); Rolled back" || got[1].Reason != meshv1.ReasonRollingBack {
		t.Fatalf("merged events: %+v", got)
	}
}

// The API server refuses an event whose note is over 1 KiB, and the recorder drops it: long
// messages (a provider's error with its whole query) are cut to fit.
func TestEventNoteFitsTheAPILimit(t *testing.T) {
	long := strings.Repeat("é", 700) // 1400 bytes
	got := eventNote(long)
	if len(got) > maxEventNote || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Fatalf("note of %d bytes (valid UTF-8: %t)", len(got), utf8.ValidString(got))
	}
	if eventNote("short") != "short" {
		t.Fatal("a short note was changed")
	}
}

// The time a reconcile spends on its checks is not added to the interval: the next step is
// due one interval after the last, counted from when the progression read the clock.
func TestCanaryRequeueCountsFromTheDecision(t *testing.T) {
	h := newHarness(t)
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	h.startRollout("reviews:v2")
	h.expectWeights(90, 10)

	h.clock.Step(time.Minute)
	h.analyzer.during = func() { h.clock.Step(20 * time.Second) } // a slow Prometheus
	c, res := h.reconcile("reviews")
	h.analyzer.during = nil
	if c.Status.CanaryWeight != 20 {
		t.Fatalf("status weight %d after the interval, want 20", c.Status.CanaryWeight)
	}
	if want := 40 * time.Second; res.RequeueAfter != want {
		t.Fatalf("requeued after %s, want %s: one interval after the step, less the 20 s its checks took", res.RequeueAfter, want)
	}
	// When the reconcile took longer than the wait, the next one is due at once.
	h.clock.Step(time.Minute)
	h.analyzer.during = func() { h.clock.Step(2 * time.Minute) }
	_, res = h.reconcile("reviews")
	h.analyzer.during = nil
	if res.RequeueAfter <= 0 || res.RequeueAfter > time.Second {
		t.Fatalf("requeued after %s, want at once (but not 0, which would mean never)", res.RequeueAfter)
	}
}
