package progress

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// Every reconcile of every story reads the status back from JSON, as a restarted operator
// would, and repeats Step on its own output to see that nothing moves twice. These stories
// add the operator being away for a while.

func TestAnOperatorAwayForMinutesTakesOneStepWhenItComesBack(t *testing.T) {
	r := newRollout(t, weightedSpec())
	r.deploy("v2")
	r.waitForWeight(20, 5*time.Minute)

	r.now = r.now.Add(5 * time.Minute) // nobody reconciles for five intervals
	r.step()
	r.expect(meshv1.PhaseProgressing, 30) // one step, not four
	r.step()
	r.expect(meshv1.PhaseProgressing, 30)
	r.wait(59 * time.Second)
	r.expect(meshv1.PhaseProgressing, 30) // and the next one a full interval later
	r.wait(time.Second)
	r.expect(meshv1.PhaseProgressing, 40)
}

func TestAnOperatorAwayDuringThePromotionFinishesIt(t *testing.T) {
	r := newRollout(t, weightedSpec())
	r.deploy("v2")
	r.waitForPhase(meshv1.PhasePromoting, time.Hour)

	r.now = r.now.Add(20 * time.Minute) // longer than the deadline, but the primary is ready
	r.step()
	r.expect(meshv1.PhaseFinalising, 0)
	r.waitForPhase(meshv1.PhaseSucceeded, time.Minute)
}

func TestAnOperatorAwayWhileTheCanaryStartsCountsTheDeadlineFromTheStatus(t *testing.T) {
	r := newRollout(t, weightedSpec())
	r.world.canaryDown = true
	r.deploy("v2")
	r.now = r.now.Add(11 * time.Minute)
	r.step()
	r.expect(meshv1.PhaseFailed, 0)
	r.expectCondition(meshv1.ConditionPromoted, metav1.ConditionFalse, meshv1.ReasonProgressDeadline)
}
