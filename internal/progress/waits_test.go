package progress

import (
	"testing"
	"time"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// A Canary waiting for a Deployment is brought back by the Deployment's watch when it becomes
// ready: its timer is only a safety net, so that thousands of waiting Canaries cost nothing
// (a 1 s poll made 1000 waiting Canaries cost 1000 reconciles a second, docs/scaling.md).
func TestAWaitForADeploymentIsEndedByItsWatchNotByATimer(t *testing.T) {
	spec := weightedSpec()
	spec.Analysis.Interval = "1s"
	r := &rollout{
		t: t, spec: spec, now: t0,
		world: world{target: "v1", targetUp: true, targetSince: t0.Add(-time.Hour), canaryDelay: 40 * time.Second, primaryDelay: 45 * time.Second},
	}
	waits := func(what string, from int) {
		t.Helper()
		// The reconcile that starts the wait and the one its Deployment's watch brings.
		if n := r.reconcile - from; n != 2 {
			t.Errorf("%s: %d reconciles, want 2 (the wait's start and the watch event)", what, n)
		}
	}

	r.step()
	start := r.reconcile - 1
	if d := r.last.RequeueAfter; d != resync {
		t.Errorf("waiting for the primary: requeue after %s, want the %s safety net", d, resync)
	}
	r.waitForPhase(meshv1.PhaseInitialized, time.Minute)
	waits("initializing", start)
	r.waitFor("target scaled down", func() bool { return !r.world.targetUp }, time.Minute)

	start = r.reconcile
	r.deploy("v2") // the canary takes 40s to be available
	r.expect(meshv1.PhaseProgressing, 0)
	if d := r.last.RequeueAfter; d != resync {
		t.Errorf("waiting for the canary: requeue after %s, want the %s safety net", d, resync)
	}
	r.waitForWeight(10, time.Minute)
	waits("waiting for the canary", start)

	r.waitForPhase(meshv1.PhasePromoting, time.Minute)
	start = r.reconcile - 1
	if d := r.last.RequeueAfter; d != resync {
		t.Errorf("promoting: requeue after %s, want the %s safety net", d, resync)
	}
	r.waitForPhase(meshv1.PhaseFinalising, time.Minute)
	waits("promoting", start)
	r.waitForPhase(meshv1.PhaseSucceeded, time.Minute)
}

// The safety net never outlasts a deadline: a Deployment that does not become ready is judged
// when progressDeadlineSeconds run out, not a timer later.
func TestAWaitForADeploymentEndsAtItsDeadline(t *testing.T) {
	spec := weightedSpec()
	spec.ProgressDeadlineSeconds = ptr[int32](20)
	r := newRollout(t, spec)
	r.world.canaryDown = true
	r.deploy("v2")
	started := r.now
	if d := r.last.RequeueAfter; d != 20*time.Second {
		t.Fatalf("waiting for the canary with a 20s deadline: requeue after %s", d)
	}
	r.waitForPhase(meshv1.PhaseFailed, time.Minute)
	if took := r.now.Sub(started); took != 20*time.Second {
		t.Fatalf("rolled back %s after the rollout started, want at the 20s deadline", took)
	}
}
