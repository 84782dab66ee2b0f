package progress

import (
	"fmt"
	"time"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// Explicit steps (spec.analysis.steps, Argo Rollouts' steps). The rollout is at
// steps[stepIndex-1]; stepIndex 0 is the start, where the pre-rollout webhooks are judged as in
// any rollout. setWeight, setHeaderRoute, setMirrorRoute and setCanaryScale take effect when
// the rollout enters them (the routing and workload derive from the steps passed) and end at
// the next reconcile, a second or more later, which sees the canary as they left it; a pause
// ends after its duration or, without one, with a resume request (it sets status.paused); an
// analysis step ends after its intervals passed checks (status.iterations counts them). The
// transition into a setWeight that raises the weight waits for the confirm-traffic-increase
// gates, the one after the last step for the confirm-promotion gates.

// currentStep is the step the rollout is at, nil before the first and after the last.
func (m *machine) currentStep() *meshv1.CanaryStep {
	steps := m.spec.Analysis.Steps
	if i := int(m.st.StepIndex) - 1; i >= 0 && i < len(steps) {
		return &steps[i]
	}
	return nil
}

// atAnalysisStep: the rollout is at an analysis step, which the analysis path of progressing
// runs and ends (advance).
func (m *machine) atAnalysisStep() bool {
	s := m.currentStep()
	return s != nil && s.Analysis != nil
}

// stepped runs the current step of an explicit rollout, when it is not an analysis step.
func (m *machine) stepped() {
	st := &m.st
	s := m.currentStep()
	switch {
	case s == nil:
		// Past the last step (the steps were shortened during the rollout): promote.
	case s.Pause != nil && s.Pause.Duration == "":
		// Entered paused (status.paused); a resume request cleared it.
	case s.Pause != nil:
		d := parseDuration(s.Pause.Duration, minInterval, minInterval)
		if !m.elapsed(st.LastStepTime, d) {
			m.busy(meshv1.ReasonPaused, "%s; %s left", m.where(), m.until(st.LastStepTime, d).Round(time.Second))
			m.after(m.until(st.LastStepTime, d))
			return
		}
	default:
		// setWeight, setHeaderRoute, setMirrorRoute, setCanaryScale took effect when entered:
		// the step ends once a later reconcile saw the canary ready as they left it.
		if st.LastStepTime.Equal(&m.stamp) {
			m.reportProgress()
			m.after(minPoll)
			return
		}
	}
	m.leaveStep()
}

// stepGate is the gate of the transition out of the current step.
func (m *machine) stepGate() meshv1.WebhookType {
	steps := m.spec.Analysis.Steps
	next := int(m.st.StepIndex)
	if next >= len(steps) {
		return meshv1.WebhookConfirmPromotion
	}
	if w := steps[next].SetWeight; w != nil && *w > m.st.CanaryWeight {
		return meshv1.WebhookConfirmTrafficIncrease
	}
	return ""
}

// leaveStep ends the current (non-analysis) step once its gate is open: the webhooks of a
// closed gate are asked again an interval after they were last asked.
func (m *machine) leaveStep() {
	if t := m.stepGate(); t != "" && m.spec.hasHooks(t) {
		closed := m.closedGate(t)
		if last := m.lastGateAttempt(t); closed != nil && !m.elapsed(last, m.spec.interval()) {
			m.reportProgress()
			m.after(m.until(last, m.spec.interval()))
			return
		}
		if open, reported := m.gate(t); !open {
			m.gateClosed(t, reported, closed != nil)
			return
		}
	}
	m.nextStep()
}

// nextStep enters the step after the current one, or promotes after the last.
func (m *machine) nextStep() {
	st := &m.st
	steps := m.spec.Analysis.Steps
	if int(st.StepIndex) >= len(steps) {
		m.promote(meshv1.ReasonPromoting, "All %d steps passed: promoting revision %s", len(steps), st.CurrentRevision)
		return
	}
	st.StepIndex++
	st.Iterations = 0
	m.restartStep()
	s := &steps[st.StepIndex-1]
	n := st.StepIndex
	switch {
	case s.SetWeight != nil:
		reason := meshv1.ReasonWeightIncreased
		if *s.SetWeight <= st.CanaryWeight {
			reason = meshv1.ReasonProgressing
		}
		st.CanaryWeight = *s.SetWeight
		m.normal(reason, "Step %d: routing %d%% of the traffic to the canary", n, st.CanaryWeight)
	case s.Pause != nil && s.Pause.Duration == "":
		st.Paused = true
		m.normal(meshv1.ReasonPaused, "Step %d: paused until a resume request", n)
	case s.Pause != nil:
		m.normal(meshv1.ReasonProgressing, "Step %d: pausing for %s", n, s.Pause.Duration)
	case s.Analysis != nil:
		m.normal(meshv1.ReasonProgressing, "Step %d: analysing revision %s for %d intervals", n, st.CurrentRevision, s.Analysis.Intervals)
	case s.SetHeaderRoute != nil && len(s.SetHeaderRoute.Match) == 0:
		m.normal(meshv1.ReasonProgressing, "Step %d: no request is routed to the canary by header any more", n)
	case s.SetHeaderRoute != nil:
		m.normal(meshv1.ReasonProgressing, "Step %d: routing the requests that match to the canary", n)
	case s.SetMirrorRoute != nil && mirrorPercent(s.SetMirrorRoute) == 0:
		m.normal(meshv1.ReasonProgressing, "Step %d: mirroring stopped", n)
	case s.SetMirrorRoute != nil:
		m.normal(meshv1.ReasonProgressing, "Step %d: mirroring %d%% of the requests to the canary", n, mirrorPercent(s.SetMirrorRoute))
	case s.SetCanaryScale != nil:
		m.normal(meshv1.ReasonProgressing, "Step %d: scaling the canary to %s", n, describeScale(s.SetCanaryScale))
	}
}

// advanceStep counts a passed run of the current analysis step and leaves it after the last.
func (m *machine) advanceStep() {
	st := &m.st
	if st.StepIndex == 0 {
		m.nextStep()
		return
	}
	s := m.currentStep()
	st.Iterations++
	m.restartStep()
	if s == nil || s.Analysis == nil || st.Iterations >= s.Analysis.Intervals {
		m.normal(meshv1.ReasonCheckPassed, "Step %d: analysis passed %d intervals", st.StepIndex, st.Iterations)
		m.nextStep()
		return
	}
	m.normal(meshv1.ReasonCheckPassed, "Step %d: analysis %d of %d passed", st.StepIndex, st.Iterations, s.Analysis.Intervals)
}

// steppedGate is the gate a passing analysis of the current step leads to.
func (m *machine) steppedGate() meshv1.WebhookType {
	if s := m.currentStep(); s != nil && s.Analysis != nil && m.st.Iterations+1 < s.Analysis.Intervals {
		return ""
	}
	return m.stepGate()
}

// whereStep describes the step an explicit rollout is at.
func (m *machine) whereStep() string {
	st := &m.st
	total := len(m.spec.Analysis.Steps)
	s := m.currentStep()
	if s == nil {
		return fmt.Sprintf("Step %d of %d at canary weight %d%%", st.StepIndex, total, st.CanaryWeight)
	}
	return fmt.Sprintf("Step %d of %d (%s) at canary weight %d%%", st.StepIndex, total, DescribeStep(s, st.Iterations), st.CanaryWeight)
}

// DescribeStep says what a step does, for conditions and the kubectl plugin; runs is the
// passed runs of an analysis step.
func DescribeStep(s *meshv1.CanaryStep, runs int32) string {
	switch {
	case s.SetWeight != nil:
		return fmt.Sprintf("setWeight %d", *s.SetWeight)
	case s.Pause != nil && s.Pause.Duration == "":
		return "pause until resumed"
	case s.Pause != nil:
		return "pause " + string(s.Pause.Duration)
	case s.Analysis != nil:
		return fmt.Sprintf("analysis %d of %d", min(runs+1, s.Analysis.Intervals), s.Analysis.Intervals)
	case s.SetHeaderRoute != nil:
		return "setHeaderRoute"
	case s.SetMirrorRoute != nil:
		return fmt.Sprintf("setMirrorRoute %d%%", mirrorPercent(s.SetMirrorRoute))
	case s.SetCanaryScale != nil:
		return "setCanaryScale " + describeScale(s.SetCanaryScale)
	default:
		return "empty step"
	}
}

func mirrorPercent(r *meshv1.StepMirrorRoute) int32 {
	if r.Percent == nil {
		return defaultMirrorWeight
	}
	return min(max(*r.Percent, 0), 100)
}

func describeScale(s *meshv1.StepCanaryScale) string {
	switch {
	case s.Replicas != nil:
		return fmt.Sprintf("%d replicas", *s.Replicas)
	case s.Weight != nil:
		return fmt.Sprintf("%d%% of the primary's replicas", *s.Weight)
	default:
		return "its traffic weight's share of the primary's replicas"
	}
}

// stepRoutes adds to r the header and mirror routes the passed steps left in place.
func stepRoutes(s specView, st *meshv1.CanaryStatus, r *Routing) {
	steps := s.Analysis.Steps
	for i := 0; i < min(int(st.StepIndex), len(steps)); i++ {
		if h := steps[i].SetHeaderRoute; h != nil {
			r.HeaderRoute = 0
			if len(h.Match) > 0 {
				r.HeaderRoute = int32(i + 1)
			}
		}
		if mr := steps[i].SetMirrorRoute; mr != nil {
			r.Mirror, r.MirrorWeight, r.MirrorRoute = false, 0, 0
			if p := mirrorPercent(mr); p > 0 {
				r.Mirror, r.MirrorWeight = true, p
				if len(mr.Match) > 0 {
					r.MirrorRoute = int32(i + 1)
				}
			}
		}
	}
	if r.CanaryWeight >= 100 {
		r.Mirror, r.MirrorWeight, r.MirrorRoute = false, 0, 0
	}
}

// stepScale sets the canary's count the last setCanaryScale passed asks for. With
// matchTrafficWeight, the canary is scaled for the weight of a setWeight that comes next
// already, so that the step before it ends only once the canary is ready at that count:
// traffic never reaches a canary scaled for less.
func stepScale(s specView, st *meshv1.CanaryStatus, w *Workload) {
	steps := s.Analysis.Steps
	match := false
	for i := 0; i < min(int(st.StepIndex), len(steps)); i++ {
		sc := steps[i].SetCanaryScale
		switch {
		case sc == nil:
		case sc.Replicas != nil:
			w.CanaryReplicas, w.CanaryPercent, match = max(*sc.Replicas, 1), 0, false
		case sc.Weight != nil:
			w.CanaryReplicas, w.CanaryPercent, match = 0, min(max(*sc.Weight, 1), 100), false
		default:
			match = true
		}
	}
	if match {
		weight := st.CanaryWeight
		if next := int(st.StepIndex); next < len(steps) && steps[next].SetWeight != nil {
			weight = max(weight, *steps[next].SetWeight)
		}
		w.CanaryReplicas, w.CanaryPercent = 0, min(max(weight, 1), 100)
	}
}
