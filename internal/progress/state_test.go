package progress

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// reword rewrites every condition's reason and message, as another version of canopy (or a
// translation) could: what the machine remembers between reconciles is not in that text.
func (r *rollout) reword() {
	for i := range r.status.Conditions {
		r.status.Conditions[i].Reason = "Reworded"
		r.status.Conditions[i].Message = "some other words for the same state"
	}
}

// eventCount counts the rollout's events of a reason.
func (r *rollout) eventCount(reason string) int {
	n := 0
	for _, e := range r.events {
		if e.Reason == reason {
			n++
		}
	}
	return n
}

// A wait for the canary keeps the step's clock across reconciles whatever the Ready condition
// says: the deadline counts from when the canary stopped being ready, not from the reconcile
// that found a reworded message.
func TestRewordingTheReadyConditionKeepsTheCanaryDeadline(t *testing.T) {
	spec := weightedSpec()
	spec.Analysis.Interval = "30m"
	spec.ProgressDeadlineSeconds = ptr[int32](120)
	r := newRollout(t, spec)
	r.deploy("v2")
	r.waitForWeight(10, time.Minute)
	r.wait(25 * time.Minute)

	r.crashCanary()
	crashed := r.now
	if r.status.WaitingForCanarySince == nil || !r.status.WaitingForCanarySince.Time.Equal(crashed) {
		t.Fatalf("waitingForCanarySince %v, want the crash at %s", r.status.WaitingForCanarySince, crashed)
	}
	for range 3 {
		r.wait(30 * time.Second)
		r.reword()
		r.step()
	}
	r.waitForPhase(meshv1.PhaseRollingBack, time.Hour)
	if waited := r.now.Sub(crashed); waited != 120*time.Second {
		t.Fatalf("rolled back %s after the crash, want 120s", waited)
	}
	if r.status.WaitingForCanarySince != nil {
		t.Fatalf("waitingForCanarySince %v after the rollback began", r.status.WaitingForCanarySince)
	}
}

// A suspension is announced once and restarts the step's clock when it ends, whatever the
// conditions say meanwhile.
func TestRewordingTheReadyConditionKeepsTheSuspension(t *testing.T) {
	r := newRollout(t, weightedSpec())
	r.deploy("v2")
	r.waitForWeight(20, 5*time.Minute)

	r.edit(func(s *meshv1.CanarySpec) { s.Suspend = true })
	r.wait(30 * time.Minute)
	r.reword()
	r.step()
	r.reword()
	r.edit(func(s *meshv1.CanarySpec) { s.Suspend = false })
	r.expect(meshv1.PhaseProgressing, 20) // not advanced at once for the time suspended
	r.expectCondition(meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonProgressing)
	r.wait(time.Minute)
	r.expect(meshv1.PhaseProgressing, 30)
	if n := r.eventCount(meshv1.ReasonSuspended); n != 1 {
		t.Fatalf("%d Suspended events, want 1", n)
	}
}
