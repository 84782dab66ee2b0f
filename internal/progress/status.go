package progress

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// setCondition sets a condition, keeping the ObservedGeneration the caller gave it.
func (m *machine) setCondition(t string, s metav1.ConditionStatus, reason, message string) {
	if t == meshv1.ConditionReady {
		// Whatever the machine reports now, it is not (or no longer) a wait for the canary;
		// waitForCanary sets the field again after its report.
		m.st.WaitingForCanarySince = nil
	}
	c := metav1.Condition{Type: t, Status: s, Reason: reason, Message: message, LastTransitionTime: m.stamp}
	if old := meta.FindStatusCondition(m.st.Conditions, t); old != nil {
		c.ObservedGeneration = old.ObservedGeneration
	}
	meta.SetStatusCondition(&m.st.Conditions, c)
}

// readyReason is the reason of the Ready condition: only whether a ProgressDeadline warning
// was already announced is decided by it (waits and suspensions are status fields).
func (m *machine) readyReason() string {
	if c := meta.FindStatusCondition(m.st.Conditions, meshv1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

func boolStatus(b bool) metav1.ConditionStatus {
	if b {
		return metav1.ConditionTrue
	}
	return metav1.ConditionFalse
}

// report sets the kstatus conditions: Ready, Reconciling and Stalled share one reason and
// message, the one thing the Canary is doing or waiting for. What a later reconcile must know
// of it is kept in status fields (waitingForCanarySince, suspendedSince), never read back
// from the text.
func (m *machine) report(ready, reconciling, stalled bool, reason, message string) {
	m.setCondition(meshv1.ConditionReady, boolStatus(ready), reason, message)
	m.setCondition(meshv1.ConditionReconciling, boolStatus(reconciling), reason, message)
	m.setCondition(meshv1.ConditionStalled, boolStatus(stalled), reason, message)
}

// busy reports a rollout (or initialization) at work.
func (m *machine) busy(reason, format string, args ...any) {
	m.report(false, true, false, reason, fmt.Sprintf(format, args...))
}

func (m *machine) event(typ, reason, format string, args ...any) {
	m.events = append(m.events, Event{Type: typ, Reason: reason, Message: fmt.Sprintf(format, args...)})
}

func (m *machine) normal(reason, format string, args ...any) {
	m.event(EventNormal, reason, format, args...)
}

func (m *machine) warning(reason, format string, args ...any) {
	m.event(EventWarning, reason, format, args...)
}

// describeCheck says what a check measured, for conditions and events:
// "request-success-rate is 87.5 (threshold >= 99)" or "request-duration: NoData: no samples".
func describeCheck(c meshv1.CheckStatus) string {
	s := c.Name
	if c.DryRun {
		s += " (dry run)"
	}
	if c.Value != "" {
		s += " is " + c.Value
		if c.Threshold != "" {
			s += " (threshold " + c.Threshold + ")"
		}
	}
	if c.Outcome != meshv1.OutcomePass && c.Outcome != meshv1.OutcomeFail {
		s += ": " + string(c.Outcome)
	}
	if c.Message != "" {
		s += ": " + c.Message
	}
	return s
}

// where describes the step the rollout stands at.
func (m *machine) where() string {
	st := &m.st
	switch {
	case st.StepIndex == 0 && m.spec.SkipAnalysis:
		return fmt.Sprintf("Revision %s skips analysis", st.CurrentRevision)
	case st.StepIndex == 0:
		return fmt.Sprintf("Starting the analysis of revision %s", st.CurrentRevision)
	}
	switch m.spec.strategy() {
	case stepped:
		return m.whereStep()
	case weighted:
		return fmt.Sprintf("Canary weight %d%% at step %d", st.CanaryWeight, st.StepIndex)
	case abTesting:
		return fmt.Sprintf("A/B testing iteration %d of %d", st.Iterations, m.spec.iterations())
	default:
		return fmt.Sprintf("Blue/green iteration %d of %d", st.Iterations, m.spec.iterations())
	}
}
