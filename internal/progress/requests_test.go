package progress

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

func TestManualPromotionSkipsTheRemainingSteps(t *testing.T) {
	r := newRollout(t, weightedSpec())
	r.deploy("v2")
	r.waitForWeight(20, 5*time.Minute)

	r.ask("promote")
	r.expect(meshv1.PhasePromoting, 20)
	r.expectEvent(EventNormal, meshv1.ReasonManualPromotion, "Promotion requested")
	r.waitForPhase(meshv1.PhaseSucceeded, time.Minute)
	r.expectWeights(0, 10, 20, 0)
	if r.status.LastPromotedRevision != "v2" || r.status.LastHandledRequest != "promote" {
		t.Fatalf("%+v", r.status)
	}

	// The annotation is still there when v3 comes: it was handled, it does not promote v3.
	r.deploy("v3")
	r.waitForWeight(20, 5*time.Minute)
	r.expect(meshv1.PhaseProgressing, 20)
}

func TestAbortRollsBackAndRemembersTheRevision(t *testing.T) {
	r := newRollout(t, weightedSpec())
	r.deploy("v2")
	r.waitForWeight(30, 5*time.Minute)

	r.ask("abort")
	r.expect(meshv1.PhaseRollingBack, 0)
	r.waitForPhase(meshv1.PhaseFailed, time.Minute)
	if r.status.LastFailedRevision != "v2" {
		t.Fatalf("%+v", r.status)
	}
	r.expectCondition(meshv1.ConditionPromoted, metav1.ConditionFalse, meshv1.ReasonAborted, "Abort requested")
	r.expectCondition(meshv1.ConditionStalled, metav1.ConditionTrue, meshv1.ReasonAborted)
}

func TestAbortWhileWaitingForApprovalNeverStartsTheCanary(t *testing.T) {
	r := newRollout(t, withWebhook(weightedSpec(), "approve", meshv1.WebhookConfirmRollout))
	r.deploy("v2")
	r.wait(5 * time.Minute)

	r.ask("abort")
	r.expect(meshv1.PhaseFailed, 0)
	if r.world.targetUp || r.status.LastFailedRevision != "v2" {
		t.Fatalf("%+v %+v", r.status, r.world)
	}
	for _, rt := range r.routings {
		if rt != (Routing{PrimaryWeight: 100}) {
			t.Fatalf("routing %+v", rt)
		}
	}
}

func TestPauseFreezesTheRolloutUntilResumed(t *testing.T) {
	r := newRollout(t, weightedSpec())
	r.deploy("v2")
	r.waitForWeight(20, 5*time.Minute)

	r.ask("pause")
	runs := r.checkRuns
	r.wait(time.Hour)
	r.expect(meshv1.PhaseProgressing, 20)
	if !r.status.Paused || r.checkRuns != runs {
		t.Fatalf("a paused rollout runs no checks: paused %v, %d runs", r.status.Paused, r.checkRuns-runs)
	}
	r.expectCondition(meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonPaused)
	r.expectCondition(meshv1.ConditionReconciling, metav1.ConditionTrue, meshv1.ReasonPaused)
	if r.last.RequeueAfter == 0 {
		t.Fatal("a paused rollout is still active")
	}

	r.ask("resume")
	r.expect(meshv1.PhaseProgressing, 20) // the step starts over: a full interval at 20%
	r.wait(59 * time.Second)
	r.expect(meshv1.PhaseProgressing, 20)
	r.wait(time.Second)
	r.expect(meshv1.PhaseProgressing, 30)

	r.ask("pause") // a new value after resume: pause again
	if !r.status.Paused {
		t.Fatal("not paused again")
	}
}

func TestRequestsThatDoNotApplyAreDroppedWithAWarning(t *testing.T) {
	r := newRollout(t, weightedSpec())

	r.ask("promote")
	r.expectEvent(EventWarning, meshv1.ReasonManualPromotion, "no rollout to promote")
	r.ask("abort:1")
	r.expectEvent(EventWarning, meshv1.ReasonAborted, "no rollout to abort")
	// A confirm-deletion before any deletion: recorded as handled, so that it confirms no
	// later deletion that its author never saw.
	r.ask("confirm-deletion:1")
	r.expectEvent(EventWarning, meshv1.ReasonDeletionConfirmed, "not being deleted")
	r.ask("rollback")
	r.expectEvent(EventWarning, meshv1.ReasonInvalidSpec, `"rollback" ignored`)
	r.expect(meshv1.PhaseInitialized, 0)
	if r.status.LastHandledRequest != "rollback" {
		t.Fatalf("lastHandledRequest %q", r.status.LastHandledRequest)
	}
}

func TestSuspendHoldsEverythingAndResumesWhereItWas(t *testing.T) {
	r := newRollout(t, weightedSpec())
	r.deploy("v2")
	r.waitForWeight(20, 5*time.Minute)

	r.edit(func(s *meshv1.CanarySpec) { s.Suspend = true })
	runs := r.checkRuns
	r.expectCondition(meshv1.ConditionReconciling, metav1.ConditionFalse, meshv1.ReasonSuspended)
	r.expectCondition(meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonSuspended)
	if r.last.RequeueAfter != 0 || !r.last.Workload.CanaryScaledUp || r.last.Routing.CanaryWeight != 20 {
		t.Fatalf("a suspended Canary keeps its routing and workload and waits for a change: %s", dump(r.last))
	}
	r.ask("promote") // not acted on while suspended...
	r.wait(time.Hour)
	r.step()
	r.expect(meshv1.PhaseProgressing, 20)
	if r.checkRuns != runs || r.status.LastHandledRequest != "" {
		t.Fatalf("nothing may move while suspended: %+v", r.status)
	}

	r.edit(func(s *meshv1.CanarySpec) { s.Suspend = false })
	r.expect(meshv1.PhasePromoting, 20) // ...but once the suspension ends
	r.waitForPhase(meshv1.PhaseSucceeded, time.Minute)
	if n := r.eventCount(meshv1.ReasonSuspended); n != 1 {
		t.Fatalf("%d Suspended events, want 1", n)
	}
}

func TestResumingAfterASuspensionRestartsTheStepClock(t *testing.T) {
	r := newRollout(t, weightedSpec())
	r.deploy("v2")
	r.waitForWeight(20, 5*time.Minute)

	r.edit(func(s *meshv1.CanarySpec) { s.Suspend = true })
	r.wait(30 * time.Minute)
	r.edit(func(s *meshv1.CanarySpec) { s.Suspend = false })
	r.expect(meshv1.PhaseProgressing, 20) // not advanced at once for the time suspended
	r.wait(time.Minute)
	r.expect(meshv1.PhaseProgressing, 30)
}
