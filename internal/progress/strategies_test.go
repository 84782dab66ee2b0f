package progress

import (
	"slices"
	"testing"
	"time"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

func iterationsSpec(n int32) meshv1.CanarySpec {
	spec := weightedSpec()
	spec.Analysis.StepWeight = nil
	spec.Analysis.Iterations = ptr(n)
	return spec
}

func TestABTestingRoutesMatchingRequestsThenPromotes(t *testing.T) {
	spec := iterationsSpec(3)
	spec.Analysis.Match = []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{"x-canary": {Exact: ptr("insider")}}}}
	r := newRollout(t, spec)

	r.deploy("v2")
	if r.last.Routing.Match {
		t.Fatal("no matching request may reach a canary that is not ready")
	}
	r.waitFor("routing insiders", func() bool { return r.last.Routing.Match }, time.Minute)
	if want := (Routing{PrimaryWeight: 100, Match: true}); r.last.Routing != want {
		t.Fatalf("routing %+v, want %+v", r.last.Routing, want)
	}
	r.wait(2 * time.Minute)
	if r.status.Iterations != 2 {
		t.Fatalf("iterations %d after two minutes, want 2", r.status.Iterations)
	}
	r.waitForPhase(meshv1.PhasePromoting, 2*time.Minute)
	if !r.last.Routing.Match || r.status.Iterations != 3 {
		t.Fatalf("insiders stay on the canary while the primary rolls: %+v, iterations %d", r.last.Routing, r.status.Iterations)
	}
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	want := []Routing{{PrimaryWeight: 100}, {PrimaryWeight: 100, Match: true}, {PrimaryWeight: 100}}
	if !slices.Equal(r.routings, want) {
		t.Fatalf("routings %+v, want %+v", r.routings, want)
	}
	r.expectEvent(EventNormal, meshv1.ReasonCheckPassed, "Iteration 3 of 3 passed")
}

func TestBlueGreenAnalysesWithoutTrafficThenSwitchesAllAtOnce(t *testing.T) {
	r := newRollout(t, iterationsSpec(2))

	r.deploy("v2")
	r.waitForPhase(meshv1.PhasePromoting, 10*time.Minute)
	if r.checkRuns != 2 {
		t.Fatalf("checks ran %d times, want 2 iterations", r.checkRuns)
	}
	// All traffic goes to the analysed canary while the primary rolls, then back to the primary.
	r.expect(meshv1.PhasePromoting, 100)
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	want := []Routing{{PrimaryWeight: 100}, {CanaryWeight: 100}, {PrimaryWeight: 100}}
	if !slices.Equal(r.routings, want) {
		t.Fatalf("routings %+v, want %+v", r.routings, want)
	}
	if r.world.primary != "v2" || r.world.targetUp {
		t.Fatalf("%+v", r.world)
	}
}

func TestBlueGreenWithMirroringCopiesTrafficDuringTheAnalysis(t *testing.T) {
	spec := iterationsSpec(2)
	spec.Analysis.Mirror = true
	r := newRollout(t, spec)

	r.deploy("v2")
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	want := []Routing{
		{PrimaryWeight: 100},
		{PrimaryWeight: 100, Mirror: true, MirrorWeight: 100}, // from the first step, once the canary is ready
		{CanaryWeight: 100}, // promotion: mirroring stops, the canary serves
		{PrimaryWeight: 100},
	}
	if !slices.Equal(r.routings, want) {
		t.Fatalf("routings %+v, want %+v", r.routings, want)
	}
}

func TestBlueGreenRollsBackOnFailedIterations(t *testing.T) {
	spec := iterationsSpec(5)
	spec.Analysis.Threshold = 2
	r := newRollout(t, spec)
	r.metric = failingWith("12")

	r.deploy("v2")
	r.waitForPhase(meshv1.PhaseFailed, time.Hour)
	r.expectWeights(0)
	if r.status.Iterations != 0 || r.status.FailedChecks != 2 {
		t.Fatalf("%+v", r.status)
	}
}
