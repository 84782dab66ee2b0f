package progress

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// initializing generates the primary from the target and waits for it. Until the primary is
// ready the target keeps serving (all traffic to the canary destination), unless the primary
// already serves, as when the status was lost.
func (m *machine) initializing() {
	st := &m.st
	target := m.obs.TargetRevision
	if st.Phase != meshv1.PhaseInitializing {
		m.enter(meshv1.PhaseInitializing)
		st.CanaryWeight = 100
		if m.obs.PrimaryReady {
			st.CanaryWeight = 0
		}
		m.normal(meshv1.ReasonInitializing, "Initializing the primary from revision %s", target)
	}
	if st.CurrentRevision != target {
		st.CurrentRevision = target
		m.changed = true
	}
	if m.obs.PrimaryReady && m.obs.PrimaryRevision == target {
		m.enter(meshv1.PhaseInitialized)
		st.LastPromotedRevision = target
		st.CanaryWeight = 0
		m.normal(meshv1.ReasonInitialized, "Primary runs revision %s and serves all traffic", target)
		return
	}
	deadline := m.spec.deadline()
	if m.elapsed(st.LastStepTime, deadline) {
		if m.readyReason() != meshv1.ReasonProgressDeadline {
			m.warning(meshv1.ReasonProgressDeadline, "Primary not ready with revision %s within %s", target, deadline)
		}
		m.report(false, true, true, meshv1.ReasonProgressDeadline,
			fmt.Sprintf("Primary not ready with revision %s within %s; still waiting", target, deadline))
		m.after(resync)
		return
	}
	m.busy(meshv1.ReasonInitializing, "Waiting for the primary to run revision %s", target)
	m.after(min(resync, m.until(st.LastStepTime, deadline)))
}

// idle starts a rollout when the target carries a revision neither promoted nor rolled back.
func (m *machine) idle() {
	st := &m.st
	target := m.obs.TargetRevision
	if target != st.LastPromotedRevision && target != st.LastFailedRevision {
		m.startRollout()
		return
	}
	if target == st.LastPromotedRevision {
		switch st.Phase {
		case meshv1.PhaseInitialized:
			m.report(true, false, false, meshv1.ReasonInitialized, fmt.Sprintf("Primary runs revision %s", target))
			if !m.elapsed(st.LastTransitionTime, m.spec.drain()) {
				m.after(m.until(st.LastTransitionTime, m.spec.drain()))
			}
		case meshv1.PhaseFailed:
			// The target went back to what the primary runs: nothing is left to deliver.
			m.report(true, false, false, meshv1.ReasonRolledBack,
				fmt.Sprintf("Primary runs revision %s; revision %s was rolled back", target, st.CurrentRevision))
		default:
			m.report(true, false, false, meshv1.ReasonSucceeded, fmt.Sprintf("Revision %s promoted", target))
		}
		return
	}
	// The target carries a revision that was rolled back: it needs a retry request.
	reason, message := meshv1.ReasonRolledBack, fmt.Sprintf("Revision %s was rolled back", target)
	if c := m.promoted(); st.Phase == meshv1.PhaseFailed && st.CurrentRevision == target && c != nil && c.Status == metav1.ConditionFalse {
		reason, message = c.Reason, c.Message
	}
	m.report(false, false, true, reason, message+"; request retry to roll it out again")
}

func (m *machine) promoted() *metav1.Condition {
	return meta.FindStatusCondition(m.st.Conditions, meshv1.ConditionPromoted)
}

// startRollout begins delivering the target's revision from weight 0.
func (m *machine) startRollout() {
	st := &m.st
	target := m.obs.TargetRevision
	previous, restart := st.CurrentRevision, isActive(st.Phase)

	st.CurrentRevision = target
	st.RolloutStarted = m.stampPtr()
	st.CanaryWeight, st.FailedChecks, st.StepIndex, st.Iterations = 0, 0, 0, 0
	st.Checks, st.Gates = nil, nil
	removeCondition(&st.Conditions, meshv1.ConditionAnalysis)
	m.setCondition(meshv1.ConditionPromoted, metav1.ConditionUnknown, meshv1.ReasonProgressing,
		fmt.Sprintf("Rollout of revision %s in progress", target))
	if m.spec.hasHooks(meshv1.WebhookConfirmRollout) {
		m.enter(meshv1.PhaseWaiting)
	} else {
		m.enter(meshv1.PhaseProgressing)
	}

	switch {
	case m.retrying:
		m.retrying = false
		m.normal(meshv1.ReasonRetry, "Retrying revision %s", target)
	case restart:
		m.normal(meshv1.ReasonNewRevision, "New revision %s replaces %s: restarting the analysis", target, previous)
	default:
		m.normal(meshv1.ReasonNewRevision, "New revision %s: starting the rollout", target)
	}
}

// retarget handles a target that changed during a rollout: a new revision restarts the
// analysis; going back to the promoted revision, or to one rolled back before, cancels it.
func (m *machine) retarget() {
	st := &m.st
	target := m.obs.TargetRevision
	switch target {
	case st.LastPromotedRevision:
		m.rollBack(meshv1.ReasonNewRevision, false,
			"Target went back to the promoted revision %s: rollout of %s cancelled", target, st.CurrentRevision)
	case st.LastFailedRevision:
		m.rollBack(meshv1.ReasonNewRevision, false,
			"Target went back to revision %s, which was rolled back: rollout of %s cancelled", target, st.CurrentRevision)
	default:
		m.startRollout()
	}
}

// waiting holds a new revision until its confirm-rollout gates open.
func (m *machine) waiting() {
	st := &m.st
	if m.obs.TargetRevision != st.CurrentRevision {
		m.retarget()
		return
	}
	if st.Paused {
		m.busy(meshv1.ReasonPaused, "Paused before the rollout of revision %s", st.CurrentRevision)
		m.after(m.spec.interval())
		return
	}
	if m.rollbackAsked() {
		return
	}
	if m.obs.RoutingHeld != "" {
		m.routingHeld()
		return
	}
	last := m.lastGateAttempt(meshv1.WebhookConfirmRollout)
	if !m.elapsed(last, m.spec.interval()) {
		m.waitingForGate(meshv1.WebhookConfirmRollout)
		m.after(m.until(last, m.spec.interval()))
		return
	}
	wasClosed := m.closedGate(meshv1.WebhookConfirmRollout) != nil
	open, reported := m.gate(meshv1.WebhookConfirmRollout)
	switch {
	case open:
		m.enter(meshv1.PhaseProgressing)
		m.normal(meshv1.ReasonProgressing, "Rollout of revision %s confirmed", st.CurrentRevision)
	case reported:
		if !wasClosed {
			m.normal(meshv1.ReasonWaitingForGate, "Revision %s waits for the confirm-rollout webhooks", st.CurrentRevision)
		}
		m.waitingForGate(meshv1.WebhookConfirmRollout)
		m.after(m.spec.interval())
	default:
		m.waitingForGate(meshv1.WebhookConfirmRollout)
		m.after(m.spec.poll())
	}
}

// routingHeld holds a rollout whose canary may get no traffic (Observation.RoutingHeld):
// the step's clock restarts, so that once the hold ends the canary is analysed for a whole
// interval at the weight it had before the next step is taken.
func (m *machine) routingHeld() {
	st := &m.st
	if st.Phase == meshv1.PhaseProgressing && !st.LastStepTime.Equal(&m.stamp) {
		m.restartStep()
	}
	m.busy(meshv1.ReasonPolicyNotComposed, "Holding revision %s with all traffic on the primary: %s", st.CurrentRevision, m.obs.RoutingHeld)
	m.after(m.spec.interval())
}

func (m *machine) waitingForGate(t meshv1.WebhookType) {
	name := ""
	if g := m.closedGate(t); g != nil {
		name = " " + g.Name
	}
	m.busy(meshv1.ReasonWaitingForGate, "Revision %s waits for the %s webhook%s", m.st.CurrentRevision, t, name)
}

// progressing moves traffic step by step while the checks pass.
func (m *machine) progressing() {
	st := &m.st
	if m.obs.TargetRevision != st.CurrentRevision {
		m.retarget()
		return
	}
	if st.Paused {
		m.busy(meshv1.ReasonPaused, "Paused: %s", lowerFirst(m.where()))
		m.after(m.spec.interval())
		return
	}
	if m.rollbackAsked() {
		return
	}
	if m.obs.RoutingHeld != "" {
		m.routingHeld()
		return
	}
	if !m.obs.CanaryReady {
		m.waitForCanary()
		return
	}
	if !m.obs.PrimaryReady {
		// The primary's health is not the canary's fault: wait, without a deadline.
		m.busy(meshv1.ReasonWaitingForPrimary, "Waiting for the primary to be available; %s", lowerFirst(m.where()))
		m.after(resync)
		return
	}
	if m.spec.strategy() == stepped && st.StepIndex > 0 && !m.atAnalysisStep() && !m.spec.SkipAnalysis {
		m.stepped()
		return
	}
	due, wait := m.analysisDue()
	if !due {
		m.reportProgress()
		m.after(wait)
		return
	}

	// Ask for the checks and the gate together, before either is consumed.
	var (
		expected []expectedCheck
		metrics  bool
		hook     meshv1.WebhookType
	)
	switch {
	case m.spec.SkipAnalysis:
	case st.StepIndex == 0:
		expected, hook = m.spec.startChecks(), meshv1.WebhookPreRollout
	default:
		expected, metrics, hook = m.spec.stepChecks(), len(m.spec.Analysis.Metrics) > 0, meshv1.WebhookRollout
	}
	if hook != "" {
		m.needChecks(metrics, hook)
	}
	gateType := m.nextGate()
	if gateType != "" {
		m.needGate(gateType)
	}

	res := m.evaluate(expected, metrics, hook)
	if res.verdict == notRun {
		m.reportProgress()
		m.after(m.spec.poll())
		return
	}
	open, reported := true, true
	wasClosed := gateType != "" && m.closedGate(gateType) != nil
	if gateType != "" {
		open, reported = m.gate(gateType)
	}
	switch res.verdict { //nolint:exhaustive // notRun and passed go on below
	case overLimit:
		m.checkOverLimit(res.culprit, res.limit)
		return
	case failed:
		m.checkFailed(res.culprit)
		return
	case inconclusive:
		m.checkInconclusive(res.culprit, res.limit)
		return
	case holding:
		msg := fmt.Sprintf("Holding the step: %s", describeCheck(res.culprit))
		m.setCondition(meshv1.ConditionAnalysis, metav1.ConditionUnknown, meshv1.ReasonCheckHolding, msg)
		if res.newHold {
			m.warning(meshv1.ReasonCheckHolding, "%s", msg)
		}
		m.reportProgress()
		m.after(m.spec.interval())
		return
	}
	if len(expected) > 0 {
		results := make([]string, 0, len(st.Checks))
		for _, c := range st.Checks {
			results = append(results, describeCheck(c))
		}
		m.setCondition(meshv1.ConditionAnalysis, metav1.ConditionTrue, meshv1.ReasonCheckPassed,
			fmt.Sprintf("Passed at step %d: %s", st.StepIndex, strings.Join(results, ", ")))
	}
	if !open {
		m.gateClosed(gateType, reported, wasClosed)
		return
	}
	m.advance()
}

// gateClosed holds a step whose gate of type t did not open: it announces a gate that just
// closed, and looks again an interval later (a poll later when the gate was not called).
func (m *machine) gateClosed(t meshv1.WebhookType, reported, wasClosed bool) {
	if g := m.closedGate(t); reported && g != nil && !wasClosed {
		m.normal(meshv1.ReasonWaitingForGate, "%s waits for the %s webhook %s", m.where(), t, g.Name)
	}
	m.reportProgress()
	if reported {
		m.after(m.spec.interval())
	} else {
		m.after(m.spec.poll())
	}
}

// waitForCanary waits for the canary to be ready, at most progressDeadlineSeconds from the
// moment it was first seen not ready in this step. That moment is kept as the step's start,
// and status.waitingForCanarySince says that the last reconcile already waited.
func (m *machine) waitForCanary() {
	st := &m.st
	if st.WaitingForCanarySince == nil && !st.LastStepTime.Equal(&m.stamp) {
		m.restartStep()
	}
	deadline := m.spec.deadline()
	if m.elapsed(st.LastStepTime, deadline) {
		m.rollBack(meshv1.ReasonProgressDeadline, true, "Canary %s not ready with revision %s within %s",
			m.spec.TargetRef.Name, st.CurrentRevision, deadline)
		return
	}
	m.busy(meshv1.ReasonWaitingForCanary, "Waiting for the canary %s to run revision %s with all replicas available; %s",
		m.spec.TargetRef.Name, st.CurrentRevision, lowerFirst(m.where()))
	since := *st.LastStepTime
	st.WaitingForCanarySince = &since
	m.after(min(resync, m.until(st.LastStepTime, deadline)))
}

// reportProgress reports where the rollout stands, from the status alone.
func (m *machine) reportProgress() {
	st := &m.st
	for i := range st.Checks {
		if c := st.Checks[i]; c.HoldingSince != nil {
			m.busy(meshv1.ReasonCheckHolding, "%s; holding since %s: %s",
				m.where(), c.HoldingSince.UTC().Format("2006-01-02T15:04:05Z"), describeCheck(c))
			return
		}
	}
	if t := m.nextGate(); t != "" {
		if g := m.closedGate(t); g != nil {
			m.busy(meshv1.ReasonWaitingForGate, "%s; waiting for the %s webhook %s", m.where(), t, g.Name)
			return
		}
	}
	m.busy(meshv1.ReasonProgressing, "%s; %d of %d failed checks", m.where(), st.FailedChecks, m.spec.threshold())
}

func (m *machine) checkFailed(culprit meshv1.CheckStatus) {
	st := &m.st
	st.FailedChecks++
	what := describeCheck(culprit)
	m.setCondition(meshv1.ConditionAnalysis, metav1.ConditionFalse, meshv1.ReasonCheckFailed,
		fmt.Sprintf("Check failed at step %d: %s", st.StepIndex, what))
	m.warning(meshv1.ReasonCheckFailed, "Check failed (%d of %d): %s", st.FailedChecks, m.spec.threshold(), what)
	if st.FailedChecks >= m.spec.threshold() {
		m.rollBack(meshv1.ReasonCheckFailed, true, "Rolled back revision %s after %d failed checks: %s",
			st.CurrentRevision, st.FailedChecks, what)
		return
	}
	m.reportProgress()
	m.after(m.spec.interval())
}

// checkOverLimit rolls back at once: a check went past its failureLimit or
// consecutiveErrorLimit, whatever the Canary's threshold says.
func (m *machine) checkOverLimit(culprit meshv1.CheckStatus, limit string) {
	st := &m.st
	st.FailedChecks++
	what := describeCheck(culprit)
	m.setCondition(meshv1.ConditionAnalysis, metav1.ConditionFalse, meshv1.ReasonCheckFailed,
		fmt.Sprintf("Check %s %s at step %d: %s", culprit.Name, limit, st.StepIndex, what))
	m.rollBack(meshv1.ReasonCheckFailed, true, "Rolled back revision %s: check %s %s: %s",
		st.CurrentRevision, culprit.Name, limit, what)
}

// checkInconclusive pauses the rollout, as Argo Rollouts does for an inconclusive analysis:
// a person decides, with a resume (go on) or abort request.
func (m *machine) checkInconclusive(culprit meshv1.CheckStatus, limit string) {
	st := &m.st
	st.Paused = true
	msg := fmt.Sprintf("Check %s %s: paused at step %d; request resume to go on or abort to roll back", culprit.Name, limit, st.StepIndex)
	m.setCondition(meshv1.ConditionAnalysis, metav1.ConditionUnknown, meshv1.ReasonPaused, msg)
	m.warning(meshv1.ReasonPaused, "%s", msg)
	m.busy(meshv1.ReasonPaused, "Paused: %s", lowerFirst(m.where()))
	m.after(m.spec.interval())
}

// advance takes the step a passing analysis (and open gate) earned.
func (m *machine) advance() {
	st := &m.st
	if m.spec.SkipAnalysis {
		m.promote(meshv1.ReasonPromoting, "Analysis skipped: promoting revision %s", st.CurrentRevision)
		return
	}
	kind := m.spec.strategy()
	if kind == stepped {
		m.advanceStep()
		return
	}
	if st.StepIndex == 0 {
		st.StepIndex = 1
		m.restartStep()
		switch {
		case kind == weighted:
			st.CanaryWeight = m.spec.nextWeight(0)
			m.normal(meshv1.ReasonWeightIncreased, "Routing %d%% of the traffic to the canary", st.CanaryWeight)
		case kind == abTesting:
			m.normal(meshv1.ReasonProgressing, "Routing the requests that match to the canary")
		case m.spec.Analysis.Mirror:
			m.normal(meshv1.ReasonProgressing, "Mirroring %d%% of the traffic to the canary", m.spec.mirrorWeight())
		default:
			m.normal(meshv1.ReasonProgressing, "Starting the analysis of revision %s", st.CurrentRevision)
		}
		return
	}
	if kind == weighted {
		if st.CanaryWeight >= m.spec.maxWeight() {
			m.promote(meshv1.ReasonPromoting, "Analysis passed at %d%%: promoting revision %s", st.CanaryWeight, st.CurrentRevision)
			return
		}
		st.CanaryWeight = m.spec.nextWeight(st.CanaryWeight)
		st.StepIndex++
		m.restartStep()
		m.normal(meshv1.ReasonWeightIncreased, "Routing %d%% of the traffic to the canary", st.CanaryWeight)
		return
	}
	st.Iterations++
	st.StepIndex++
	m.restartStep()
	m.normal(meshv1.ReasonCheckPassed, "Iteration %d of %d passed", st.Iterations, m.spec.iterations())
	if st.Iterations >= m.spec.iterations() {
		m.promote(meshv1.ReasonPromoting, "Analysis passed %d iterations: promoting revision %s", st.Iterations, st.CurrentRevision)
	}
}

// promote starts copying the canary's revision to the primary. Traffic stays where it is,
// except for blue/green, which switches all of it to the (ready) canary while the primary rolls.
func (m *machine) promote(reason, format string, args ...any) {
	st := &m.st
	m.enter(meshv1.PhasePromoting)
	if m.spec.strategy() == blueGreen && m.obs.CanaryReady {
		st.CanaryWeight = 100
	}
	m.normal(reason, format, args...)
}

// promoting waits for the primary to run the promoted revision.
func (m *machine) promoting() {
	st := &m.st
	rev := st.CurrentRevision
	if st.LastPromotedRevision == rev && !m.obs.PrimaryReady {
		// Traffic is moving to the promoted primary step by step: its health is not the
		// canary's fault, and the canary still serves the rest.
		m.busy(meshv1.ReasonWaitingForPrimary, "Waiting for the primary to be available; canary weight %d%%", st.CanaryWeight)
		m.after(resync)
		return
	}
	if m.obs.PrimaryReady && m.obs.PrimaryRevision == rev {
		if m.promoteGradually() {
			return
		}
		m.enter(meshv1.PhaseFinalising)
		st.LastPromotedRevision = rev
		st.CanaryWeight = 0
		m.normal(meshv1.ReasonPromoted, "Primary runs revision %s: routing all traffic to it", rev)
		return
	}
	if m.obs.TargetRevision != rev && m.obs.PrimaryRevision != rev {
		// The target moved on before its revision reached the primary: it cannot be copied any more.
		m.rollBack(meshv1.ReasonNewRevision, false,
			"Target changed to revision %s before revision %s was copied to the primary: promotion cancelled", m.obs.TargetRevision, rev)
		return
	}
	deadline := m.spec.deadline()
	if m.elapsed(st.LastStepTime, deadline) {
		m.rollBack(meshv1.ReasonProgressDeadline, true, "Primary not ready with revision %s within %s", rev, deadline)
		return
	}
	m.busy(meshv1.ReasonPromoting, "Waiting for the primary to run revision %s", rev)
	m.after(min(resync, m.until(st.LastStepTime, deadline)))
}

// promoteGradually moves traffic from the canary to the primary, which runs the promoted
// revision, by stepWeightPromotion percent each interval (Flagger's gradual promotion), and
// reports whether traffic is still on the canary. The first step is taken as soon as the
// primary is ready; status.lastPromotedRevision says it was.
func (m *machine) promoteGradually() bool {
	st := &m.st
	step, rev := m.spec.promotionStep(), st.CurrentRevision
	if step == 0 || st.CanaryWeight == 0 {
		return false
	}
	if st.LastPromotedRevision == rev && !m.elapsed(st.LastStepTime, m.spec.interval()) {
		m.busy(meshv1.ReasonPromoting, "Primary runs revision %s; canary weight %d%%, %d%% moving to the primary every %s",
			rev, st.CanaryWeight, step, m.spec.interval())
		m.after(m.until(st.LastStepTime, m.spec.interval()))
		return true
	}
	st.LastPromotedRevision = rev
	st.CanaryWeight = max(st.CanaryWeight-step, 0)
	m.restartStep()
	if st.CanaryWeight == 0 {
		return false
	}
	m.normal(meshv1.ReasonPromoting, "Primary runs revision %s: routing %d%% of the traffic to it", rev, 100-st.CanaryWeight)
	m.busy(meshv1.ReasonPromoting, "Primary runs revision %s; canary weight %d%%, %d%% moving to the primary every %s",
		rev, st.CanaryWeight, step, m.spec.interval())
	m.after(m.spec.interval())
	return true
}

// finalising lets traffic drain from the canary before it is scaled down.
func (m *machine) finalising() {
	st := &m.st
	if m.elapsed(st.LastStepTime, m.spec.drain()) {
		m.enter(meshv1.PhaseSucceeded)
		m.setCondition(meshv1.ConditionPromoted, metav1.ConditionTrue, meshv1.ReasonSucceeded,
			fmt.Sprintf("Revision %s promoted", st.CurrentRevision))
		m.fire(meshv1.WebhookPostRollout)
		m.normal(meshv1.ReasonSucceeded, "Rollout of revision %s succeeded", st.CurrentRevision)
		return
	}
	m.busy(meshv1.ReasonFinalising, "Routing all traffic to the primary before scaling the canary down")
	m.after(m.until(st.LastStepTime, m.spec.drain()))
}

// rollBack routes all traffic back to the primary; markFailed records the revision as failed,
// so that it is not tried again without a retry request. A canary that never got any traffic
// has nothing to drain: it fails at once.
func (m *machine) rollBack(reason string, markFailed bool, format string, args ...any) {
	st := &m.st
	msg := fmt.Sprintf(format, args...)
	r := routingFor(m.spec, st)
	served := r.CanaryWeight > 0 || r.Match || r.Mirror
	st.CanaryWeight = 0
	if markFailed {
		st.LastFailedRevision = st.CurrentRevision
	}
	m.setCondition(meshv1.ConditionPromoted, metav1.ConditionFalse, reason, msg)
	m.warning(reason, "%s", msg)
	if served {
		m.enter(meshv1.PhaseRollingBack)
	} else {
		m.fail()
	}
}

// rollingBack lets traffic drain from the canary before it is scaled down.
func (m *machine) rollingBack() {
	st := &m.st
	if m.elapsed(st.LastStepTime, m.spec.drain()) {
		m.fail()
		return
	}
	msg := "Routing all traffic to the primary"
	if c := m.promoted(); c != nil && c.Status == metav1.ConditionFalse {
		msg = c.Message
	}
	m.busy(meshv1.ReasonRollingBack, "%s", msg)
	m.after(m.until(st.LastStepTime, m.spec.drain()))
}

func (m *machine) fail() {
	m.enter(meshv1.PhaseFailed)
	m.fire(meshv1.WebhookPostRollout)
	m.warning(meshv1.ReasonRolledBack, "Rolled back revision %s", m.st.CurrentRevision)
}

func lowerFirst(s string) string {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return s
	}
	return string(s[0]+'a'-'A') + s[1:]
}
