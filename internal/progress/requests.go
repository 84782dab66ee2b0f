package progress

import (
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// The actions of the meshv1.AnnotationRequest annotation.
const (
	ActionPromote = "promote"
	ActionAbort   = "abort"
	ActionPause   = "pause"
	ActionResume  = "resume"
	ActionRetry   = "retry"
	// ActionConfirmDeletion accepts the target's revision for the hand-over of a Canary being
	// deleted (the controller's finalizer handles it; the progression only ignores it).
	ActionConfirmDeletion = "confirm-deletion"
)

// request acts once on each distinct value of the request annotation. A request that does not
// apply to the current phase is dropped with a warning rather than kept for later: acting on
// it in some later rollout would surprise whoever asked.
func (m *machine) request() {
	st := &m.st
	req := m.obs.Request
	if req == "" || req == st.LastHandledRequest {
		return
	}
	st.LastHandledRequest = req
	action, _, _ := strings.Cut(req, ":")
	rolling := isActive(st.Phase) && m.obs.TargetRevision == st.CurrentRevision

	switch action {
	case ActionPromote:
		if !rolling {
			m.warning(meshv1.ReasonManualPromotion, "Request %q ignored: no rollout to promote in phase %s", req, st.Phase)
			return
		}
		m.promote(meshv1.ReasonManualPromotion, "Promotion requested: promoting revision %s", st.CurrentRevision)
	case ActionAbort:
		if !rolling {
			m.warning(meshv1.ReasonAborted, "Request %q ignored: no rollout to abort in phase %s", req, st.Phase)
			return
		}
		m.rollBack(meshv1.ReasonAborted, true, "Abort requested: rolled back revision %s", st.CurrentRevision)
	case ActionPause:
		if !st.Paused {
			st.Paused = true
			m.normal(meshv1.ReasonPaused, "Paused in phase %s", st.Phase)
		}
	case ActionResume:
		if st.Paused {
			st.Paused = false
			m.restartActiveStep()
			m.normal(meshv1.ReasonProgressing, "Resumed in phase %s", st.Phase)
		}
	case ActionRetry:
		if st.Phase != meshv1.PhaseFailed || st.LastFailedRevision == "" || st.LastFailedRevision != m.obs.TargetRevision {
			m.warning(meshv1.ReasonRetry, "Request %q ignored: the target does not carry a rolled back revision", req)
			return
		}
		st.LastFailedRevision = ""
		m.retrying = true
	case ActionConfirmDeletion:
		m.warning(meshv1.ReasonDeletionConfirmed, "Request %q ignored: the Canary is not being deleted", req)
	default:
		m.warning(meshv1.ReasonInvalidSpec, "Request %q ignored: the actions are promote, abort, pause, resume, retry and confirm-deletion", req)
	}
}

// suspended keeps everything as it is. status.suspendedSince is how the next reconcile knows
// that the suspension ended.
func (m *machine) suspended() {
	st := &m.st
	if st.SuspendedSince == nil {
		m.normal(meshv1.ReasonSuspended, "Suspended in phase %s", st.Phase)
		st.SuspendedSince = m.stampPtr()
	}
	ready := metav1.ConditionFalse
	if c := meta.FindStatusCondition(st.Conditions, meshv1.ConditionReady); c != nil {
		ready = c.Status
	}
	msg := "Suspended in phase " + string(st.Phase)
	m.setCondition(meshv1.ConditionReady, ready, meshv1.ReasonSuspended, msg)
	m.setCondition(meshv1.ConditionReconciling, metav1.ConditionFalse, meshv1.ReasonSuspended, msg)
}

// unsuspended restarts the current step's clock after a suspension, so that the time spent
// suspended counts against no interval, deadline or hold timeout.
func (m *machine) unsuspended() {
	if m.st.SuspendedSince != nil {
		m.st.SuspendedSince = nil
		m.restartActiveStep()
	}
}

// restartActiveStep restarts the clock of a step that was held from outside (pause, suspend).
func (m *machine) restartActiveStep() {
	switch p := m.st.Phase; p {
	case meshv1.PhaseWaiting, meshv1.PhaseProgressing, meshv1.PhasePromoting, meshv1.PhaseInitializing:
		m.restartStep()
		for i := range m.st.Checks {
			m.st.Checks[i].HoldingSince = nil
		}
	case meshv1.PhaseInitialized, meshv1.PhaseSucceeded, meshv1.PhaseFailed, meshv1.PhaseTerminating,
		meshv1.PhaseFinalising, meshv1.PhaseRollingBack:
		// Nothing waits against a deadline here (draining phases end by themselves).
	default:
	}
}

func removeCondition(conds *[]metav1.Condition, t string) {
	meta.RemoveStatusCondition(conds, t)
}
