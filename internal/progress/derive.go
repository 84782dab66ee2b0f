package progress

import (
	"time"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// routingFor is the traffic split a status stands for. It depends on nothing else, so that a
// restarted operator, or a suspended Canary, routes exactly as before.
func routingFor(s specView, st *meshv1.CanaryStatus) Routing {
	w := min(max(st.CanaryWeight, 0), 100)
	r := Routing{PrimaryWeight: 100 - w, CanaryWeight: w}
	// The canary gets matching or mirrored requests only once the first step was taken,
	// that is once it was ready and the pre-rollout webhooks passed.
	started := st.StepIndex > 0
	analysing := st.Phase == meshv1.PhaseProgressing && started
	if s.strategy() == abTesting && started && (analysing || st.Phase == meshv1.PhasePromoting) {
		r.Match = true
	}
	if s.Analysis.Mirror && analysing && w < 100 {
		r.Mirror = true
		r.MirrorWeight = s.mirrorWeight()
	}
	if s.strategy() == stepped && analysing {
		stepRoutes(s, st, &r)
	}
	return r
}

// workloadFor is what the Deployments must look like in the status's phase.
func workloadFor(s specView, st *meshv1.CanaryStatus, obs Observation, now time.Time) Workload {
	switch st.Phase {
	case meshv1.PhaseInitializing:
		return Workload{Initialize: true}
	case meshv1.PhaseInitialized:
		// Traffic may have just left the target for the primary: let it drain first.
		if lt := st.LastTransitionTime; lt == nil || !now.Before(lt.Add(s.drain())) {
			return Workload{ScaleTargetToZero: true}
		}
		return Workload{}
	case meshv1.PhaseWaiting, meshv1.PhaseSucceeded, meshv1.PhaseFailed:
		return Workload{ScaleTargetToZero: true}
	case meshv1.PhaseProgressing:
		w := Workload{CanaryScaledUp: true}
		if s.strategy() == stepped {
			stepScale(s, st, &w)
		}
		return w
	case meshv1.PhaseFinalising, meshv1.PhaseRollingBack:
		return Workload{CanaryScaledUp: true}
	case meshv1.PhasePromoting:
		// The target's template is the promoted revision only while the target still carries it.
		return Workload{CanaryScaledUp: true, PromotePrimary: obs.TargetRevision == st.CurrentRevision}
	case meshv1.PhaseTerminating:
		return Workload{} // the controller's finalizer decides
	default:
		return Workload{} // a new Canary, not yet stepped
	}
}
