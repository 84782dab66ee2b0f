package metrics

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// Rollouts records what a Canary's status transition says happened: the phase entered, the
// end of a rollout and its duration, the checks measured. It is fed each status the
// reconciler wrote, after the write succeeded, so a reconcile retried after a failed write
// counts nothing twice, and a restarted operator (whose first reconcile finds the status
// already written) counts nothing again.
type Rollouts struct{}

// ObserveRollout records the transition from before to after (after is the Canary as written).
func (Rollouts) ObserveRollout(_ context.Context, before *meshv1.CanaryStatus, after *meshv1.Canary) {
	ns, name, st := after.Namespace, after.Name, &after.Status
	if st.Phase != before.Phase && st.Phase != "" {
		phaseTransitions.WithLabelValues(ns, name, string(st.Phase)).Inc()
		if outcome := rolloutOutcome(st.Phase); outcome != "" && st.RolloutStarted != nil && st.LastTransitionTime != nil {
			d := st.LastTransitionTime.Sub(st.RolloutStarted.Time)
			rolloutDuration.WithLabelValues(ns, outcome).Observe(max(d.Seconds(), 0))
		}
	}
	for _, c := range Measured(before, st) {
		checkResults.WithLabelValues(ns, name, c.Name, string(c.Outcome)).Inc()
	}
}

// ForgetCanary drops the series of a Canary that is gone, so that Canaries created and
// deleted (preview environments, renamed services) do not pile up series in memory.
func (Rollouts) ForgetCanary(namespace, name string) {
	l := prometheus.Labels{labelNamespace: namespace, labelName: name}
	phaseTransitions.DeletePartialMatch(l)
	checkResults.DeletePartialMatch(l)
}

// rolloutOutcome names the end of a rollout a phase marks, "" when it marks none.
func rolloutOutcome(p meshv1.CanaryPhase) string {
	switch p {
	case meshv1.PhaseSucceeded:
		return "promoted"
	case meshv1.PhaseFailed:
		return "failed"
	default:
		return ""
	}
}

// Measured returns the checks of after measured since before: those whose lastMeasured moved.
func Measured(before, after *meshv1.CanaryStatus) []meshv1.CheckStatus {
	old := map[string]meshv1.CheckStatus{}
	for _, c := range before.Checks {
		old[c.Name] = c
	}
	var out []meshv1.CheckStatus
	for _, c := range after.Checks {
		if c.LastMeasured == nil {
			continue
		}
		if o, ok := old[c.Name]; ok && o.LastMeasured != nil && o.LastMeasured.Equal(c.LastMeasured) {
			continue
		}
		out = append(out, c)
	}
	return out
}
