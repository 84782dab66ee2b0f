package controllers

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/budget"
	"canopy.dev/canopy/internal/hooks"
	"canopy.dev/canopy/internal/progress"
)

// status is the one status this reconcile writes: the decision's when there is one, else the
// old status with the conditions the reconcile set on the way.
func (s *canaryScope) status() meshv1.CanaryStatus {
	st := s.canary.Status
	if s.decision != nil {
		st = s.decision.Status
	}
	gen := s.canary.Generation
	// A decision, or a verdict that only a new spec can change (Stalled), is this
	// generation's outcome: kstatus, Argo CD's health check and kubectl wait read
	// observedGeneration to know that the spec they see was judged.
	if s.decision != nil || meta.IsStatusConditionTrue(st.Conditions, meshv1.ConditionStalled) {
		st.ObservedGeneration = gen
	}
	for i := range st.Conditions {
		st.Conditions[i].ObservedGeneration = gen
	}
	return st
}

// patchStatus writes the status once, and only when it changed.
func (r *CanaryReconciler) patchStatus(ctx context.Context, s *canaryScope) error {
	st := s.status()
	if equality.Semantic.DeepEqual(st, s.before.Status) {
		return nil
	}
	s.canary.Status = st
	// The optimistic lock refuses to write over a status this reconcile did not read.
	patch := client.MergeFromWithOptions(s.before, client.MergeFromWithOptimisticLock{})
	if err := r.Status().Patch(ctx, s.canary, patch); err != nil {
		return fmt.Errorf("writing the status: %w", err)
	}
	r.Applier.Writes().Wrote(s.canary)
	r.observed(ctx, &s.before.Status, s.canary)
	return nil
}

// setNotReady reports a problem that keeps the Canary from progressing. stalled marks a
// problem only a change of the spec can fix.
func (s *canaryScope) setNotReady(reason, message string, stalled bool) {
	st := &s.canary.Status
	// The rollout is not waiting for the canary now: a later wait starts the step's clock anew.
	st.WaitingForCanarySince = nil
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: meshv1.ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: message})
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: meshv1.ConditionStalled, Status: boolCondition(stalled), Reason: reason, Message: message})
	if stalled {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: meshv1.ConditionReconciling, Status: metav1.ConditionFalse, Reason: reason, Message: message})
	}
}

// fail drops the decision of a reconcile that could not be carried out, so that the status
// keeps describing what is in force, and says why.
func (s *canaryScope) fail(err error) {
	if s.decision == nil && meta.IsStatusConditionTrue(s.canary.Status.Conditions, meshv1.ConditionStalled) {
		return
	}
	s.decision = nil
	s.setNotReady(reasonOf(err), err.Error(), false)
}

func boolCondition(b bool) metav1.ConditionStatus {
	if b {
		return metav1.ConditionTrue
	}
	return metav1.ConditionFalse
}

// announce records the decision's events and calls the notification webhooks. It runs once
// the routing and the status are written, so a rollback is in force before any webhook is
// called; the webhooks have a budget of their own (budget.Limits), so that a rollback
// decided on checks that spent the reconcile's is still announced.
func (r *CanaryReconciler) announce(ctx context.Context, s *canaryScope) {
	if s.decision == nil {
		return
	}
	ctx = budget.NewContext(ctx, budget.Start(r.Clock, r.Limits))
	c, d := s.canary, s.decision
	events := d.Events
	if s.canary.Generation != s.before.Status.ObservedGeneration {
		// Settings that render but are probably unintended: said once per spec change.
		for _, w := range s.warnings {
			events = append(events, progress.Event{Type: progress.EventWarning, Reason: meshv1.ReasonInconsistent, Message: w.String()})
		}
	}
	if now := meta.FindStatusCondition(d.Status.Conditions, meshv1.ConditionMeshPolicy); now != nil && now.Status == metav1.ConditionFalse {
		// Said once for each new reason the policy does not compose.
		if was := meta.FindStatusCondition(s.before.Status.Conditions, meshv1.ConditionMeshPolicy); was == nil || was.Status != now.Status || was.Message != now.Message {
			events = append(events, progress.Event{Type: progress.EventWarning, Reason: now.Reason, Message: now.Message})
		}
	}
	for _, e := range mergeEvents(events) {
		r.Recorder.Eventf(c, nil, e.Type, e.Reason, e.Reason, "%s", eventNote(e.Message))
	}
	for _, t := range d.Notify {
		for _, h := range webhooksOf(c, t) {
			if t == meshv1.WebhookEvent {
				for _, e := range d.Events {
					r.notify(ctx, s, h, e.Message)
				}
				continue
			}
			r.notify(ctx, s, h, "")
		}
	}
}

// maxEventNote is the longest note events.k8s.io accepts; a longer event is refused by
// the API server, and the recorder drops it silently.
const maxEventNote = 1024

// eventNote fits a message into an event's note, cutting it on a character boundary.
func eventNote(msg string) string {
	if len(msg) <= maxEventNote {
		return msg
	}
	const ellipsis = "…"
	cut := maxEventNote - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + ellipsis
}

// mergeEvents joins the messages of events of one reconcile that share a type and reason.
// The events recorder counts such events as a series of one event and keeps one message only,
// so the last failed check and the rollback it caused would otherwise lose one of the two.
func mergeEvents(events []progress.Event) []progress.Event {
	var out []progress.Event
	index := map[[2]string]int{}
	for _, e := range events {
		key := [2]string{e.Type, e.Reason}
		if i, ok := index[key]; ok {
			out[i].Message += "; " + e.Message
			continue
		}
		index[key] = len(out)
		out = append(out, e)
	}
	return out
}

func (r *CanaryReconciler) payload(s *canaryScope, h meshv1.CanaryWebhook, message string) hooks.Payload {
	st := s.canary.Status
	if s.decision != nil {
		st = s.decision.Status
	}
	return hooks.Payload{
		Name: s.canary.Name, Namespace: s.canary.Namespace, Phase: st.Phase, Weight: st.CanaryWeight,
		Revision: st.CurrentRevision, Type: h.Type, Message: message, Metadata: h.Metadata,
	}
}

func (r *CanaryReconciler) notify(ctx context.Context, s *canaryScope, h meshv1.CanaryWebhook, message string) {
	if r.Hooks == nil {
		return
	}
	if budget.FromContext(ctx).Spent() {
		ctrl.LoggerFrom(ctx).Info("Notification webhook not called", "webhook", h.Name, "type", h.Type, "error", budget.ErrNotRun.Error())
		return
	}
	if err := r.Hooks.Call(ctx, h, r.payload(s, h, message)); err != nil {
		ctrl.LoggerFrom(ctx).Info("Notification webhook failed", "webhook", h.Name, "type", h.Type, "error", err.Error())
	}
}

// callCheckHook calls a pre-rollout or rollout webhook; its answer is judged like a check.
// One the reconcile's budget did not reach, or cut, is a Timeout (a failed check, as any
// webhook that did not answer 2xx).
func (r *CanaryReconciler) callCheckHook(ctx context.Context, s *canaryScope, h meshv1.CanaryWebhook) meshv1.CheckStatus {
	now := metav1.NewTime(s.now)
	res := meshv1.CheckStatus{Name: h.Name, Outcome: meshv1.OutcomePass, Threshold: "2xx", LastMeasured: &now}
	note, err := r.callHook(ctx, s, h)
	switch {
	case errors.Is(err, budget.ErrSpent):
		res.Outcome, res.Message = meshv1.OutcomeTimeout, err.Error()
	case err != nil:
		res.Outcome, res.Message = meshv1.OutcomeFail, err.Error()
	}
	res.Message = budget.WithNote(res.Message, note)
	return res
}

// callGate calls a confirm-* webhook: the gate is open when it answers 2xx. One the
// reconcile's budget did not reach stays closed.
func (r *CanaryReconciler) callGate(ctx context.Context, s *canaryScope, h meshv1.CanaryWebhook) meshv1.GateStatus {
	now := metav1.NewTime(s.now)
	g := meshv1.GateStatus{Name: h.Name, Type: h.Type, Open: true, LastAttempt: &now}
	note, err := r.callHook(ctx, s, h)
	if err != nil {
		g.Open, g.Message = false, err.Error()
	}
	g.Message = budget.WithNote(g.Message, note)
	return g
}

var errNoCaller = errors.New("no webhook caller is configured")

// callHook calls h within the budget ctx carries: not at all once it is spent. note says
// how the operator's ceiling lowered the hook's timeout, for its status.
func (r *CanaryReconciler) callHook(ctx context.Context, s *canaryScope, h meshv1.CanaryWebhook) (note string, err error) {
	b := budget.FromContext(ctx)
	if timeout, err := hooks.Timeout(h); err == nil {
		note = b.Cap(budget.Webhook, timeout).Note()
	}
	switch {
	case r.Hooks == nil:
		return note, errNoCaller
	case b.Spent():
		return note, fmt.Errorf("webhook %s: %w", h.Name, budget.ErrNotRun)
	}
	return note, r.Hooks.Call(ctx, h, r.payload(s, h, ""))
}
