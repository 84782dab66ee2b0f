package progress

import (
	"fmt"

	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

var reasons = map[string]bool{}

func init() {
	for _, r := range []string{
		meshv1.ReasonInitializing, meshv1.ReasonInitialized, meshv1.ReasonNewRevision, meshv1.ReasonWaitingForGate,
		meshv1.ReasonWaitingForCanary, meshv1.ReasonWaitingForPrimary, meshv1.ReasonProgressing, meshv1.ReasonWeightIncreased,
		meshv1.ReasonCheckPassed, meshv1.ReasonCheckFailed, meshv1.ReasonCheckHolding, meshv1.ReasonPromoting,
		meshv1.ReasonPromoted, meshv1.ReasonFinalising, meshv1.ReasonSucceeded, meshv1.ReasonRollingBack,
		meshv1.ReasonRolledBack, meshv1.ReasonProgressDeadline, meshv1.ReasonPaused, meshv1.ReasonSuspended,
		meshv1.ReasonAborted, meshv1.ReasonManualPromotion, meshv1.ReasonRetry, meshv1.ReasonInvalidSpec, meshv1.ReasonRollbackWebhook,
		meshv1.ReasonDeletionConfirmed,
	} {
		reasons[r] = true
	}
}

// invariants are what every decision must satisfy, whatever the spec and the observations.
func invariants(spec *meshv1.CanarySpec, before meshv1.CanaryStatus, d Decision) error {
	st, r := d.Status, d.Routing
	if r.PrimaryWeight < 0 || r.PrimaryWeight > 100 || r.CanaryWeight < 0 || r.CanaryWeight > 100 || r.PrimaryWeight+r.CanaryWeight != 100 {
		return fmt.Errorf("routing %d/%d is not a split of 100", r.PrimaryWeight, r.CanaryWeight)
	}
	if r.Mirror != (r.MirrorWeight > 0) || r.MirrorWeight > 100 {
		return fmt.Errorf("mirror %v with weight %d", r.Mirror, r.MirrorWeight)
	}
	if st.CanaryWeight < 0 || st.CanaryWeight > 100 {
		return fmt.Errorf("status weight %d", st.CanaryWeight)
	}
	w := d.Workload
	if w.ScaleTargetToZero && w.CanaryScaledUp {
		return fmt.Errorf("target both scaled up and to zero")
	}
	if w.CanaryScaledUp == false && (r.CanaryWeight > 0 || r.Match || r.Mirror) && st.Phase != meshv1.PhaseInitializing {
		return fmt.Errorf("traffic %+v to a canary that is not scaled up", r)
	}

	// No step skipped or repeated: counters move by one, or start over with a new rollout.
	restarted := !st.RolloutStarted.Equal(before.RolloutStarted) || st.CurrentRevision != before.CurrentRevision ||
		(isIdle(before.Phase) && !isIdle(st.Phase))
	stepped := (specView{spec}).strategy() == stepped
	// An explicit step starts its analysis runs afresh.
	nextStep := stepped && st.StepIndex == before.StepIndex+1 && st.Iterations == 0
	for _, c := range []struct {
		name          string
		before, after int32
	}{
		{"stepIndex", before.StepIndex, st.StepIndex},
		{"iterations", before.Iterations, st.Iterations},
		{"failedChecks", before.FailedChecks, st.FailedChecks},
	} {
		if c.after != c.before && c.after != c.before+1 && (!restarted || c.after > 1) && !(nextStep && c.name == "iterations") {
			return fmt.Errorf("%s went from %d to %d", c.name, c.before, c.after)
		}
	}
	if before.Phase == meshv1.PhaseProgressing && st.Phase == meshv1.PhaseProgressing && !restarted &&
		st.CanaryWeight != before.CanaryWeight {
		if !stepped && st.CanaryWeight != (specView{spec}).nextWeight(before.CanaryWeight) {
			return fmt.Errorf("weight jumped from %d to %d", before.CanaryWeight, st.CanaryWeight)
		}
		if s := spec.Analysis.Steps; stepped && (!nextStep || s[st.StepIndex-1].SetWeight == nil || *s[st.StepIndex-1].SetWeight != st.CanaryWeight) {
			return fmt.Errorf("weight went from %d to %d at step %d, not by a setWeight step", before.CanaryWeight, st.CanaryWeight, st.StepIndex)
		}
	}
	if before.Phase == meshv1.PhasePromoting && st.Phase == meshv1.PhasePromoting && st.CanaryWeight > before.CanaryWeight &&
		before.LastPromotedRevision == st.CurrentRevision {
		return fmt.Errorf("weight went up from %d to %d during a gradual promotion", before.CanaryWeight, st.CanaryWeight)
	}

	suspended := spec.Suspend
	if !suspended && !isIdle(st.Phase) && st.Phase != "" && st.Phase != meshv1.PhaseTerminating && d.RequeueAfter <= 0 {
		return fmt.Errorf("no requeue in phase %s", st.Phase)
	}
	if suspended && d.RequeueAfter != 0 {
		return fmt.Errorf("requeue %s while suspended", d.RequeueAfter)
	}
	if errs := metav1validation.ValidateConditions(st.Conditions, field.NewPath("status", "conditions")); len(errs) > 0 {
		return fmt.Errorf("invalid conditions: %v", errs.ToAggregate())
	}
	for _, e := range d.Events {
		if (e.Type != EventNormal && e.Type != EventWarning) || !reasons[e.Reason] || e.Message == "" {
			return fmt.Errorf("bad event %+v", e)
		}
	}
	for _, n := range d.Notify {
		switch n {
		case meshv1.WebhookPostRollout, meshv1.WebhookEvent:
		default:
			return fmt.Errorf("notify %s is a gate or a check", n)
		}
	}
	return nil
}
