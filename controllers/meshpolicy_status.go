package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// writeStatus records the reconcile's events and writes the status once, when it changed.
func (r *MeshPolicyReconciler) writeStatus(ctx context.Context, s *policyScope) error {
	st := s.status()
	r.announce(s, st)
	if equality.Semantic.DeepEqual(st, s.before.Status) {
		return nil
	}
	s.policy.Status = st
	// The optimistic lock refuses to write over a status this reconcile did not read.
	patch := client.MergeFromWithOptions(s.before, client.MergeFromWithOptimisticLock{})
	if err := r.Status().Patch(ctx, s.policy, patch); err != nil {
		return fmt.Errorf("writing the status: %w", err)
	}
	r.Applier.Writes().Wrote(s.policy)
	return nil
}

// status is the status this reconcile leaves: the old one, with what it learnt.
func (s *policyScope) status() meshv1.MeshPolicyStatus {
	p := s.policy
	st := *p.Status.DeepCopy()
	if s.objectsKnown {
		st.Objects = s.objects
		st.Certificates = nil
		if s.certStatus != nil {
			st.Certificates = []meshv1.CertificateStatus{*s.certStatus}
		}
	}
	setPolicyConditions(&st.Conditions, s.readyCondition(), s.problem)
	s.rolloutStatus(&st)
	st.ReportedWarnings = s.warningDigests()
	gen := p.Generation
	if !s.transient {
		st.ObservedGeneration = gen
	}
	for i := range st.Conditions {
		st.Conditions[i].ObservedGeneration = gen
	}
	return st
}

// readyCondition is the Ready condition: the problem, else the certificate, else Ready.
func (s *policyScope) readyCondition() metav1.Condition {
	c := metav1.Condition{Type: meshv1.ConditionReady, Status: metav1.ConditionFalse}
	switch {
	case s.problem != nil:
		c.Reason, c.Message = s.problem.reason, s.problem.message
	case s.certReason != "":
		c.Reason = s.certReason
		c.Message = fmt.Sprintf("Certificate %s/%s is not Ready: %s", s.certStatus.Namespace, s.certStatus.Name, s.certStatus.Message)
		if !s.serveHTTPS() {
			c.Message += "; the Gateway serves HTTP only until it is"
		}
	default:
		c.Status, c.Reason = metav1.ConditionTrue, meshv1.ReasonReconciled
		c.Message = fmt.Sprintf("Applied %d objects", len(s.set.Objects()))
		if s.canary != nil {
			c.Message += fmt.Sprintf("; Canary %s writes the Service's VirtualService and DestinationRules with this policy", s.canary.Name)
		}
	}
	if len(s.warnings) > 0 {
		msgs := make([]string, 0, len(s.warnings))
		for _, w := range s.warnings {
			msgs = append(msgs, w.message)
		}
		c.Message += "; warnings: " + strings.Join(msgs, "; ")
	}
	return c
}

// setPolicyConditions sets Ready and the kstatus conditions that go with it: Stalled while
// only a change of some resource can help, Reconciling while canopy (or cert-manager) is
// still working towards Ready, so that kstatus and Flux read the policy right.
func setPolicyConditions(conds *[]metav1.Condition, ready metav1.Condition, problem *policyProblem) {
	meta.SetStatusCondition(conds, ready)
	stalled := problem != nil && problem.stalled
	reconciling := ready.Status != metav1.ConditionTrue && !stalled
	reason, message := ready.Reason, ready.Message
	if ready.Status == metav1.ConditionTrue {
		message = ""
	}
	meta.SetStatusCondition(conds, metav1.Condition{Type: meshv1.ConditionStalled, Status: boolCondition(stalled), Reason: reason, Message: ifTrue(stalled, message)})
	meta.SetStatusCondition(conds, metav1.Condition{Type: meshv1.ConditionReconciling, Status: boolCondition(reconciling), Reason: reason, Message: ifTrue(reconciling, message)})
}

func ifTrue(b bool, s string) string {
	if b {
		return s
	}
	return ""
}

// announce records events: a change of the Ready condition (the event's reason is the
// condition's), the warnings not reported before (status.reportedWarnings), and what was applied or deleted. The
// events API folds events of one reason and action into a series that keeps the first
// note, so each reconcile records at most one event per reason and action.
func (r *MeshPolicyReconciler) announce(s *policyScope, st meshv1.MeshPolicyStatus) {
	p := s.policy
	ready := meta.FindStatusCondition(st.Conditions, meshv1.ConditionReady)
	old := meta.FindStatusCondition(s.before.Status.Conditions, meshv1.ConditionReady)
	if ready != nil && (old == nil || old.Status != ready.Status || old.Reason != ready.Reason || old.Message != ready.Message) {
		eventType := corev1.EventTypeWarning
		if ready.Status == metav1.ConditionTrue {
			eventType = corev1.EventTypeNormal
		}
		r.Recorder.Eventf(p, nil, eventType, ready.Reason, ready.Reason, "%s", eventNote(ready.Message))
	}
	fresh := map[string][]string{}
	var reasons []string
	for _, w := range s.warnings {
		if slices.Contains(s.before.Status.ReportedWarnings, w.digest()) {
			continue
		}
		if fresh[w.reason] == nil {
			reasons = append(reasons, w.reason)
		}
		fresh[w.reason] = append(fresh[w.reason], w.message)
	}
	for _, reason := range reasons {
		r.Recorder.Eventf(p, nil, corev1.EventTypeWarning, reason, reason, "%s", eventNote(strings.Join(fresh[reason], "; ")))
	}
	var changes []string
	if len(s.applied) > 0 {
		changes = append(changes, "Applied "+strings.Join(s.applied, ", "))
	}
	if len(s.deleted) > 0 {
		changes = append(changes, "Deleted "+strings.Join(s.deleted, ", "))
	}
	if len(changes) > 0 {
		r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, meshv1.ReasonReconciled, "Apply", "%s", eventNote(strings.Join(changes, "; ")))
	}
}

// digest names a warning in status.reportedWarnings: its reason and what it says, not how the
// Ready message happens to word the list.
func (w policyWarning) digest() string {
	sum := sha256.Sum256([]byte(w.reason + "\x00" + w.message))
	return hex.EncodeToString(sum[:8])
}

// warningDigests are the digests of the warnings in force, sorted, each once: they are
// reported by this reconcile's events, or were before.
func (s *policyScope) warningDigests() []string {
	var ds []string
	for _, w := range s.warnings {
		ds = append(ds, w.digest())
	}
	slices.Sort(ds)
	return slices.Compact(ds)
}
