package progress

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

func TestInitializationKeepsTheTargetServingUntilThePrimaryIsReady(t *testing.T) {
	r := &rollout{
		t: t, spec: weightedSpec(), now: t0,
		// The app already serves through the Service canopy adopts.
		world: world{target: "v1", targetUp: true, targetSince: t0.Add(-time.Hour), canaryDelay: 20 * time.Second, primaryDelay: 45 * time.Second},
	}

	r.step()
	r.expect(meshv1.PhaseInitializing, 100) // all traffic stays on the target...
	if !r.last.Workload.Initialize || r.world.primary != "v1" {
		t.Fatalf("want the primary generated from v1, got %+v %+v", r.last.Workload, r.world)
	}
	r.expectCondition(meshv1.ConditionReconciling, metav1.ConditionTrue, meshv1.ReasonInitializing)

	r.waitForPhase(meshv1.PhaseInitialized, time.Minute)
	r.expect(meshv1.PhaseInitialized, 0) // ...until the primary is ready to take it,
	if r.now != t0.Add(45*time.Second) || !r.world.targetUp {
		t.Fatalf("want the primary serving at +45s with the target still up, got +%s, %+v", r.now.Sub(t0), r.world)
	}
	r.waitFor("target scaled down", func() bool { return !r.world.targetUp }, time.Minute)
	if drained := r.now.Sub(t0.Add(45 * time.Second)); drained != 10*time.Second { // ...then drains and scales down.
		t.Fatalf("target scaled down %s after traffic left it, want 10s", drained)
	}
	if r.status.LastPromotedRevision != "v1" || r.status.CurrentRevision != "v1" || r.last.RequeueAfter != 0 {
		t.Fatalf("want v1 promoted and nothing to do, got %+v requeue %s", r.status, r.last.RequeueAfter)
	}
	r.expectCondition(meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonInitialized)
	r.expectCondition(meshv1.ConditionReconciling, metav1.ConditionFalse, meshv1.ReasonInitialized)
	r.expectWeights(100, 0)
	if got := r.reasons(); !slices.Equal(got, []string{meshv1.ReasonInitializing, meshv1.ReasonInitialized}) {
		t.Fatalf("events %v", got)
	}
}

func TestInitializationStallsButKeepsWaitingForABrokenPrimary(t *testing.T) {
	r := &rollout{t: t, spec: weightedSpec(), now: t0,
		world: world{target: "v1", targetUp: true, targetSince: t0.Add(-time.Hour), primaryDown: true}}
	r.step()
	r.wait(10 * time.Minute)
	r.expect(meshv1.PhaseInitializing, 100)
	r.expectCondition(meshv1.ConditionStalled, metav1.ConditionTrue, meshv1.ReasonProgressDeadline, "v1")
	if r.last.RequeueAfter == 0 {
		t.Fatal("a stalled initialization must still be looked at")
	}

	r.world.primaryDown = false
	r.wait(time.Minute)
	r.expect(meshv1.PhaseInitialized, 0)
	r.expectCondition(meshv1.ConditionStalled, metav1.ConditionFalse, meshv1.ReasonInitialized)
}

func TestWeightedRolloutPromotesStepByStep(t *testing.T) {
	r := newRollout(t, weightedSpec())

	r.deploy("v2")
	r.expect(meshv1.PhaseProgressing, 0)
	r.expectCondition(meshv1.ConditionPromoted, metav1.ConditionUnknown, meshv1.ReasonProgressing, "v2")
	started := r.now

	// The canary takes 20s to be available: then it gets its first 10% at once, and 10% more
	// every minute while the checks pass, up to 50%.
	r.waitForWeight(10, time.Minute)
	if r.now != started.Add(20*time.Second) {
		t.Fatalf("first step at +%s, want +20s", r.now.Sub(started))
	}
	r.waitForWeight(20, 2*time.Minute)
	if r.now != started.Add(80*time.Second) {
		t.Fatalf("second step at +%s, want +80s", r.now.Sub(started))
	}
	r.expectCondition(meshv1.ConditionAnalysis, metav1.ConditionTrue, meshv1.ReasonCheckPassed)

	// One more passing check at 50% promotes; the primary rolls while the canary keeps its 50%.
	r.waitForPhase(meshv1.PhasePromoting, 5*time.Minute)
	r.expect(meshv1.PhasePromoting, 50)
	if !r.last.Workload.PromotePrimary || !r.last.Workload.CanaryScaledUp {
		t.Fatalf("promoting: %+v", r.last.Workload)
	}
	r.waitForPhase(meshv1.PhaseFinalising, time.Minute)
	r.expect(meshv1.PhaseFinalising, 0)
	if !r.world.targetUp || r.status.LastPromotedRevision != "v2" {
		t.Fatal("the canary must drain before it is scaled down")
	}

	r.waitForPhase(meshv1.PhaseSucceeded, time.Minute)
	r.expectWeights(0, 10, 20, 30, 40, 50, 0)
	if r.world.primary != "v2" || r.world.targetUp || r.last.RequeueAfter != 0 {
		t.Fatalf("want v2 on the primary, the canary scaled to zero and nothing to do, got %+v requeue %s", r.world, r.last.RequeueAfter)
	}
	if r.checkRuns != 5 {
		t.Fatalf("checks ran %d times, want once at each of 10..50%%", r.checkRuns)
	}
	r.expectCondition(meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonSucceeded)
	r.expectCondition(meshv1.ConditionReconciling, metav1.ConditionFalse, meshv1.ReasonSucceeded)
	r.expectCondition(meshv1.ConditionStalled, metav1.ConditionFalse, meshv1.ReasonSucceeded)
	r.expectCondition(meshv1.ConditionPromoted, metav1.ConditionTrue, meshv1.ReasonSucceeded, "v2")
	want := []string{
		meshv1.ReasonNewRevision,
		meshv1.ReasonWeightIncreased, meshv1.ReasonWeightIncreased, meshv1.ReasonWeightIncreased,
		meshv1.ReasonWeightIncreased, meshv1.ReasonWeightIncreased,
		meshv1.ReasonPromoting, meshv1.ReasonPromoted, meshv1.ReasonSucceeded,
	}
	if got := r.reasons(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

func TestWeightedRolloutFollowsStepWeights(t *testing.T) {
	spec := weightedSpec()
	spec.Analysis.StepWeight = nil
	spec.Analysis.StepWeights = []int32{5, 25, 60}
	spec.Analysis.MaxWeight = 60
	r := newRollout(t, spec)

	r.deploy("v2")
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	r.expectWeights(0, 5, 25, 60, 0)
	if r.status.StepIndex != 3 {
		t.Fatalf("stepIndex %d, want 3", r.status.StepIndex)
	}
}

func TestWeightedRolloutWithMirroring(t *testing.T) {
	spec := weightedSpec()
	spec.Analysis.Mirror = true
	spec.Analysis.MirrorWeight = ptr[int32](50)
	r := newRollout(t, spec)

	r.deploy("v2")
	r.waitForWeight(10, time.Minute)
	if want := (Routing{PrimaryWeight: 90, CanaryWeight: 10, Mirror: true, MirrorWeight: 50}); r.last.Routing != want {
		t.Fatalf("routing %+v, want %+v", r.last.Routing, want)
	}
	r.waitForPhase(meshv1.PhasePromoting, time.Hour)
	if r.last.Routing.Mirror {
		t.Fatal("mirroring serves the analysis only; it stops with the promotion")
	}
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	r.expectWeights(0, 10, 20, 30, 40, 50, 0)
}

func TestNewRevisionMidRolloutRestartsFromZero(t *testing.T) {
	r := newRollout(t, weightedSpec())
	fails := 1
	r.metric = func(name string) meshv1.CheckStatus {
		if fails > 0 {
			fails--
			return failingWith("97.0")(name)
		}
		return passing(name)
	}

	r.deploy("v2")
	r.waitForWeight(30, 10*time.Minute)
	if r.status.FailedChecks != 1 {
		t.Fatalf("failed checks %d, want 1", r.status.FailedChecks)
	}

	r.deploy("v3")
	r.expect(meshv1.PhaseProgressing, 0)
	if st := r.status; st.CurrentRevision != "v3" || st.FailedChecks != 0 || st.StepIndex != 0 || st.Checks != nil || !st.RolloutStarted.Time.Equal(r.now) {
		t.Fatalf("want a fresh rollout of v3, got %+v", st)
	}
	r.expectEvent(EventNormal, meshv1.ReasonNewRevision, "New revision v3 replaces v2")

	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	r.expectWeights(0, 10, 20, 30, 0, 10, 20, 30, 40, 50, 0)
	if r.status.LastPromotedRevision != "v3" || r.world.primary != "v3" {
		t.Fatalf("want v3 promoted, got %+v", r.status)
	}
}

func TestNewRevisionDuringPromotionWaitsForTheNextRollout(t *testing.T) {
	r := newRollout(t, weightedSpec())
	r.deploy("v2")
	r.waitForPhase(meshv1.PhasePromoting, time.Hour)

	r.deploy("v3")
	r.expect(meshv1.PhasePromoting, 50)
	if r.last.Workload.PromotePrimary {
		t.Fatal("the target carries v3 now: its template must not reach the primary as v2")
	}
	// v2 finishes; v3, already running on the target, starts over from 0% right after.
	r.waitFor("rolling out v3", func() bool { return r.status.CurrentRevision == "v3" }, time.Minute)
	if r.status.LastPromotedRevision != "v2" || r.world.primary != "v2" {
		t.Fatalf("want v2 promoted first, got %+v", r.status)
	}
	r.expectEvent(EventNormal, meshv1.ReasonSucceeded, "v2")
	r.expectEvent(EventNormal, meshv1.ReasonNewRevision, "v3")
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	if r.world.primary != "v3" {
		t.Fatalf("primary runs %s", r.world.primary)
	}
}

func TestSkipAnalysisPromotesOnceTheCanaryIsReady(t *testing.T) {
	spec := weightedSpec()
	spec.SkipAnalysis = true
	r := newRollout(t, spec)

	r.deploy("v2")
	r.expect(meshv1.PhaseProgressing, 0)
	r.waitForPhase(meshv1.PhasePromoting, time.Minute)
	r.waitForPhase(meshv1.PhaseSucceeded, time.Minute)
	r.expectWeights(0)
	if r.checkRuns != 0 || r.world.primary != "v2" {
		t.Fatalf("checks ran %d times, primary %s", r.checkRuns, r.world.primary)
	}
}
