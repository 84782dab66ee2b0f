package notify

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// Kind is a kind of rollout event.
type Kind string

// The rollout events, each read from a Canary's status transition.
const (
	// Started: a new rollout began (status.rolloutStarted moved).
	Started Kind = "started"
	// Step: the canary's weight (or the count of passed A/B iterations) went up.
	Step Kind = "step"
	// Paused: a pause request took effect, or the rollout waits at a confirm-rollout gate.
	Paused Kind = "paused"
	// Promoted: the rollout succeeded; the primary runs the new revision.
	Promoted Kind = "promoted"
	// RolledBack: the rollout is being rolled back; traffic returns to the primary.
	RolledBack Kind = "rolledBack"
	// Failed: the rollout ended failed.
	Failed Kind = "failed"
)

// Kinds lists every kind.
var Kinds = []Kind{Started, Step, Paused, Promoted, RolledBack, Failed}

// Event is a rollout event; the generic webhook receives it as JSON.
type Event struct {
	Kind         Kind               `json:"event"`
	Namespace    string             `json:"namespace"`
	Name         string             `json:"name"`
	Phase        meshv1.CanaryPhase `json:"phase"`
	Weight       int32              `json:"weight"`
	Revision     string             `json:"revision,omitempty"`
	FailedChecks int32              `json:"failedChecks"`
	Message      string             `json:"message,omitempty"`
	Time         time.Time          `json:"time"`
}

// Events reads the rollout events from a status transition: before is the status replaced,
// after the Canary as written. Being a function of the two statuses only, it reports a
// transition exactly once however often the Canary is reconciled or the operator restarts.
func Events(before *meshv1.CanaryStatus, after *meshv1.Canary) []Event {
	st := &after.Status
	var kinds []Kind
	entered := func(p meshv1.CanaryPhase) bool { return st.Phase == p && before.Phase != p }
	if st.RolloutStarted != nil && (before.RolloutStarted == nil || !before.RolloutStarted.Equal(st.RolloutStarted)) {
		kinds = append(kinds, Started)
	}
	if st.Phase == meshv1.PhaseProgressing && before.Phase == meshv1.PhaseProgressing &&
		(st.CanaryWeight > before.CanaryWeight || st.Iterations > before.Iterations) {
		kinds = append(kinds, Step)
	}
	if (st.Paused && !before.Paused) || entered(meshv1.PhaseWaiting) {
		kinds = append(kinds, Paused)
	}
	if entered(meshv1.PhaseSucceeded) {
		kinds = append(kinds, Promoted)
	}
	if entered(meshv1.PhaseRollingBack) {
		kinds = append(kinds, RolledBack)
	}
	if entered(meshv1.PhaseFailed) {
		kinds = append(kinds, Failed)
	}
	if len(kinds) == 0 {
		return nil
	}
	when := time.Time{}
	if st.LastStepTime != nil {
		when = st.LastStepTime.Time
	}
	if st.LastTransitionTime != nil && st.LastTransitionTime.After(when) {
		when = st.LastTransitionTime.Time
	}
	msg := ""
	if c := meta.FindStatusCondition(st.Conditions, meshv1.ConditionReady); c != nil {
		msg = c.Message
	}
	out := make([]Event, 0, len(kinds))
	for _, k := range kinds {
		out = append(out, Event{
			Kind: k, Namespace: after.Namespace, Name: after.Name, Phase: st.Phase, Weight: st.CanaryWeight,
			Revision: st.CurrentRevision, FailedChecks: st.FailedChecks, Message: msg, Time: when.UTC(),
		})
	}
	return out
}
