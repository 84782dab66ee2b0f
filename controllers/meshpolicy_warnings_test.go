package controllers

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// reasonRecorder passes events on and keeps their reasons.
type reasonRecorder struct {
	events.EventRecorder
	mu      sync.Mutex
	reasons []string
}

func (r *reasonRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	r.mu.Lock()
	r.reasons = append(r.reasons, reason)
	r.mu.Unlock()
	r.EventRecorder.Eventf(regarding, related, eventtype, reason, action, note, args...)
}

func (r *reasonRecorder) count(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, got := range r.reasons {
		if got == reason {
			n++
		}
	}
	return n
}

// A warning is reported once, when it appears; which warnings were reported is a status field,
// so a Ready message worded differently (by another version of canopy, say) reports none again.
func TestAMeshPolicyWarningIsReportedOnceWhateverTheMessageSays(t *testing.T) {
	h := newPolicyHarness(t)
	rec := &reasonRecorder{EventRecorder: h.pr.Recorder}
	h.pr.Recorder = rec
	p := simplePolicy("authz", "authz")
	p.Spec.Authorization = &meshv1.Authorization{Rules: []meshv1.AuthorizationRule{{
		From: []meshv1.AuthorizationSource{{ServiceAccounts: []string{h.ns + "/ghost"}}},
	}}}
	h.create(service("authz", 8080), p)
	p = h.settlePolicy("authz")
	expectReady(t, p, "ghost does not exist")
	if n := rec.count(meshv1.ReasonServiceAccountNotFound); n != 1 || len(p.Status.ReportedWarnings) != 1 {
		t.Fatalf("%d ServiceAccountNotFound events, reportedWarnings %q; want 1 and 1", n, p.Status.ReportedWarnings)
	}

	for i := range p.Status.Conditions {
		p.Status.Conditions[i].Message = fmt.Sprintf("reworded %d", i)
	}
	if err := h.c.Status().Update(h.t.Context(), p); err != nil {
		t.Fatal(err)
	}
	p = h.settlePolicy("authz")
	if c := meta.FindStatusCondition(p.Status.Conditions, meshv1.ConditionReady); c == nil || strings.HasPrefix(c.Message, "reworded") {
		t.Fatalf("the Ready condition was not written again: %+v", c)
	}
	if n := rec.count(meshv1.ReasonServiceAccountNotFound); n != 1 {
		t.Fatalf("%d ServiceAccountNotFound events after the message was reworded, want 1", n)
	}

	h.create(serviceAccount("ghost"))
	if p = h.settlePolicy("authz"); len(p.Status.ReportedWarnings) != 0 {
		t.Fatalf("reportedWarnings %q after the warning went", p.Status.ReportedWarnings)
	}
}
