package progress

import (
	"fmt"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

var insiders = []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{"x-canary": {Exact: ptr("insider")}}}}

// stepsSpec is a rollout spelled out with every kind of step.
func stepsSpec() meshv1.CanarySpec {
	spec := weightedSpec()
	spec.Analysis.StepWeight = nil
	spec.Analysis.Steps = []meshv1.CanaryStep{
		{SetCanaryScale: &meshv1.StepCanaryScale{Replicas: ptr[int32](1)}},  // 1
		{SetWeight: ptr[int32](10)},                                         // 2
		{Pause: &meshv1.StepPause{Duration: "30s"}},                         // 3
		{SetHeaderRoute: &meshv1.StepHeaderRoute{Match: insiders}},          // 4
		{Analysis: &meshv1.StepAnalysis{Intervals: 2}},                      // 5
		{SetMirrorRoute: &meshv1.StepMirrorRoute{Percent: ptr[int32](50)}},  // 6
		{SetWeight: ptr[int32](40)},                                         // 7
		{Pause: &meshv1.StepPause{}},                                        // 8
		{SetCanaryScale: &meshv1.StepCanaryScale{MatchTrafficWeight: true}}, // 9
		{SetHeaderRoute: &meshv1.StepHeaderRoute{}},                         // 10
		{SetWeight: ptr[int32](60)},                                         // 11
		{SetMirrorRoute: &meshv1.StepMirrorRoute{Percent: ptr[int32](0)}},   // 12
		{Analysis: &meshv1.StepAnalysis{Intervals: 1}},                      // 13
	}
	return spec
}

func (r *rollout) waitForStep(i int32, limit time.Duration) {
	r.t.Helper()
	r.waitFor(fmt.Sprintf("at step %d", i), func() bool { return r.status.StepIndex == i }, limit)
}

func TestExplicitStepsRunInOrder(t *testing.T) {
	r := newRollout(t, stepsSpec())
	r.deploy("v2")

	r.waitForStep(1, time.Minute)
	if w := r.last.Workload; !w.CanaryScaledUp || w.CanaryReplicas != 1 || r.last.Routing.CanaryWeight != 0 {
		t.Fatalf("setCanaryScale: workload %+v routing %+v", w, r.last.Routing)
	}
	r.waitForStep(3, time.Minute)
	r.expect(meshv1.PhaseProgressing, 10)
	entered := r.now
	r.waitForStep(4, time.Minute)
	if d := r.now.Sub(entered); d < 30*time.Second {
		t.Fatalf("the pause of 30s lasted %s", d)
	}
	if r.last.Routing.HeaderRoute != 4 || r.last.Routing.CanaryWeight != 10 {
		t.Fatalf("setHeaderRoute: routing %+v", r.last.Routing)
	}
	runs := r.checkRuns
	r.waitForStep(6, 5*time.Minute)
	if got := r.checkRuns - runs; got != 2 {
		t.Fatalf("the analysis step ran the checks %d times, want 2 intervals", got)
	}
	if want := (Routing{PrimaryWeight: 90, CanaryWeight: 10, HeaderRoute: 4, Mirror: true, MirrorWeight: 50}); r.last.Routing != want {
		t.Fatalf("setMirrorRoute: routing %+v, want %+v", r.last.Routing, want)
	}

	r.waitForStep(8, time.Minute)
	if !r.status.Paused {
		t.Fatal("a pause without duration sets status.paused")
	}
	r.wait(time.Hour)
	r.expect(meshv1.PhaseProgressing, 40)
	if r.status.StepIndex != 8 {
		t.Fatalf("step %d after an hour paused, want 8", r.status.StepIndex)
	}
	r.expectCondition(meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonPaused, "step 8 of 13 (pause until resumed)")
	r.ask("resume")
	r.waitForStep(9, time.Minute)
	if w := r.last.Workload; w.CanaryReplicas != 0 || w.CanaryPercent != 40 {
		t.Fatalf("matchTrafficWeight at 40%%: workload %+v", w)
	}
	r.waitForStep(10, time.Minute)
	if w := r.last.Workload; w.CanaryPercent != 60 || r.last.Routing.CanaryWeight != 40 || r.last.Routing.HeaderRoute != 0 {
		t.Fatalf("matchTrafficWeight scales for the next setWeight before traffic moves, the header route is gone: %+v %+v", w, r.last.Routing)
	}
	r.waitForStep(11, time.Minute)
	if w := r.last.Workload; w.CanaryPercent != 60 || r.last.Routing.CanaryWeight != 60 {
		t.Fatalf("matchTrafficWeight at 60%%: %+v %+v", w, r.last.Routing)
	}
	r.waitForPhase(meshv1.PhaseSucceeded, 10*time.Minute)
	r.expectWeights(0, 10, 40, 60, 0)
	r.expectEvent(EventNormal, meshv1.ReasonPromoting, "All 13 steps passed")
	if r.world.primary != "v2" || r.world.targetUp {
		t.Fatalf("%+v", r.world)
	}
	if !slices.Contains(r.routings, Routing{PrimaryWeight: 40, CanaryWeight: 60}) {
		t.Fatalf("mirroring stops at step 12: %+v", r.routings)
	}
}

func TestAnExplicitAnalysisStepRollsBackOnFailedChecks(t *testing.T) {
	spec := weightedSpec()
	spec.Analysis.StepWeight = nil
	spec.Analysis.Threshold = 2
	spec.Analysis.Steps = []meshv1.CanaryStep{
		{SetWeight: ptr[int32](20)},
		{Analysis: &meshv1.StepAnalysis{Intervals: 5}},
		{SetWeight: ptr[int32](50)},
	}
	r := newRollout(t, spec)
	r.metric = failingWith("80")
	r.deploy("v2")
	r.waitForPhase(meshv1.PhaseFailed, time.Hour)
	r.expectWeights(0, 20, 0)
	if r.status.FailedChecks != 2 {
		t.Fatalf("failed checks %d, want the threshold 2", r.status.FailedChecks)
	}
}

func TestExplicitStepsWaitForTheirGates(t *testing.T) {
	spec := weightedSpec()
	spec.Analysis.StepWeight = nil
	spec.Analysis.Metrics = nil
	spec.Analysis.Steps = []meshv1.CanaryStep{{SetWeight: ptr[int32](20)}, {SetWeight: ptr[int32](10)}}
	spec.Analysis.Webhooks = []meshv1.CanaryWebhook{
		{Name: "more", Type: meshv1.WebhookConfirmTrafficIncrease, URL: "http://gate"},
		{Name: "ship", Type: meshv1.WebhookConfirmPromotion, URL: "http://gate"},
	}
	r := newRollout(t, spec)
	r.deploy("v2")
	r.wait(10 * time.Minute)
	r.expect(meshv1.PhaseProgressing, 0)
	r.gateOpen["more"] = true
	r.waitForStep(2, 2*time.Minute) // lowering the weight asks no gate
	r.wait(10 * time.Minute)
	r.expect(meshv1.PhaseProgressing, 10)
	r.gateOpen["ship"] = true
	r.waitForPhase(meshv1.PhaseSucceeded, 10*time.Minute)
	r.expectWeights(0, 20, 10, 0)
}

// gradualRollout promotes by 20%, and stands at its first promotion step: 30% on the canary.
func gradualRollout(t *testing.T) *rollout {
	t.Helper()
	spec := weightedSpec()
	spec.Analysis.StepWeightPromotion = ptr[int32](20)
	r := newRollout(t, spec)
	r.deploy("v2")
	r.waitForPhase(meshv1.PhasePromoting, time.Hour)
	r.waitFor("the first promotion step", func() bool { return r.last.Routing.CanaryWeight == 30 }, time.Hour)
	return r
}

func TestGradualPromotionMovesTrafficToThePrimaryStepByStep(t *testing.T) {
	r := gradualRollout(t)
	r.expect(meshv1.PhasePromoting, 30)
	if r.status.LastPromotedRevision != "v2" || r.world.primary != "v2" {
		t.Fatalf("the primary runs the new revision before traffic moves to it: %+v", r.status)
	}
	r.expectCondition(meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonPromoting, "canary weight 30%")
	r.wait(59 * time.Second)
	r.expect(meshv1.PhasePromoting, 30)
	r.wait(time.Second)
	r.expect(meshv1.PhasePromoting, 10)
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	r.expectWeights(0, 10, 20, 30, 40, 50, 30, 10, 0)
	if r.world.targetUp {
		t.Fatal("the canary is scaled down after the promotion")
	}
}

func TestGradualPromotionOfBlueGreenStartsFromAllTraffic(t *testing.T) {
	spec := iterationsSpec(1)
	spec.Analysis.StepWeightPromotion = ptr[int32](40)
	r := newRollout(t, spec)
	r.deploy("v2")
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	r.expectWeights(0, 100, 60, 20, 0)
}

func TestGradualPromotionWaitsForAnUnavailablePrimary(t *testing.T) {
	r := gradualRollout(t)
	r.world.primaryDown = true
	r.wait(30 * time.Minute) // longer than the progress deadline: no rollback
	r.expect(meshv1.PhasePromoting, 30)
	r.world.primaryDown = false
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	r.expectWeights(0, 10, 20, 30, 40, 50, 30, 10, 0)
}

// An operator away for a while at any step resumes at that step: it takes at most one step
// when it comes back, and the rollout goes through the same weights and routes.
func TestAnOperatorAwayAtEveryExplicitStepResumesThere(t *testing.T) {
	ref := newRollout(t, stepsSpec())
	ref.deploy("v2")
	ref.waitForStep(8, time.Hour)
	ref.ask("resume")
	ref.waitForPhase(meshv1.PhaseSucceeded, time.Hour)

	for k := int32(1); k <= int32(len(stepsSpec().Analysis.Steps)); k++ {
		r := newRollout(t, stepsSpec())
		r.deploy("v2")
		r.waitForStep(min(k, 8), time.Hour)
		if k > 8 {
			r.ask("resume")
			r.waitForStep(k, time.Hour)
		}
		r.now = r.now.Add(7 * time.Minute)
		r.step()
		if r.status.StepIndex != k && r.status.StepIndex != k+1 {
			t.Fatalf("away at step %d: back at step %d", k, r.status.StepIndex)
		}
		if k <= 8 {
			r.waitForStep(8, time.Hour)
			r.ask("resume")
		}
		r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
		if !slices.Equal(r.weights, ref.weights) {
			t.Fatalf("away at step %d: weights %v, want %v", k, r.weights, ref.weights)
		}
		for _, rt := range ref.routings {
			if !slices.Contains(r.routings, rt) {
				t.Fatalf("away at step %d: routing %+v never applied: %+v", k, rt, r.routings)
			}
		}
	}
}
