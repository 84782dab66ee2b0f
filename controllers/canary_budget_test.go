package controllers

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/budget"
	"canopy.dev/canopy/internal/render"
)

// slowHooksCanary has five rollout webhooks asking for 10m each, and a rollback one.
func slowHooksCanary() *meshv1.Canary {
	c := reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10), Threshold: 3})
	for i := range 5 {
		c.Spec.Analysis.Webhooks = append(c.Spec.Analysis.Webhooks, meshv1.CanaryWebhook{
			Name: fmt.Sprintf("load-%d", i), Type: meshv1.WebhookRollout, URL: "http://hooks.example/", Timeout: "10m", Retries: ptr.To[int32](10),
		})
	}
	c.Spec.Analysis.Webhooks = append(c.Spec.Analysis.Webhooks, meshv1.CanaryWebhook{
		Name: "page-oncall", Type: meshv1.WebhookEvent, URL: "http://hooks.example/", Timeout: "10m",
	})
	return c
}

// slowHooksRollout runs slowHooksCanary to its first step under limits, every rollout
// webhook answering 2xx, and returns the rollout webhooks called so far.
func (h *harness) slowHooksRollout(limits budget.Limits) int {
	h.t.Helper()
	h.r.Limits = limits
	for i := range 5 {
		h.hooks.open[fmt.Sprintf("load-%d", i)] = true
	}
	h.initialize(slowHooksCanary())
	h.startRollout("reviews:v2")
	h.expectWeights(90, 10)
	return h.hooks.calls[meshv1.WebhookRollout]
}

// Issue 19, item 3, in the reconciler: a Canary's webhooks share one budget per reconcile,
// on the injected clock. Five hooks taking 10s each in a 30s budget: three are called, each
// saying that the operator's ceiling lowered its 10m timeout, and the two the budget did not
// reach report Timeout ("not run") and count as failed, as any webhook that did not answer.
func TestCanaryWebhooksShareTheReconcileBudget(t *testing.T) {
	h := newHarness(t)
	before := h.slowHooksRollout(budget.Limits{Reconcile: 30 * time.Second, MaxWebhookTimeout: 20 * time.Second})

	h.hooks.during = func(meshv1.CanaryWebhook) { h.clock.Step(10 * time.Second) }
	c := h.tick(time.Minute)

	if n := h.hooks.calls[meshv1.WebhookRollout] - before; n != 3 {
		t.Errorf("%d rollout webhooks were called, want the 3 the budget holds", n)
	}
	for i := range 5 {
		name := fmt.Sprintf("load-%d", i)
		var ch *meshv1.CheckStatus
		for j := range c.Status.Checks {
			if c.Status.Checks[j].Name == name {
				ch = &c.Status.Checks[j]
			}
		}
		switch {
		case ch == nil:
			t.Errorf("no check %s in the status: %+v", name, c.Status.Checks)
		case i < 3 && (ch.Outcome != meshv1.OutcomePass || !strings.Contains(ch.Message, "webhook timeout 10m0s lowered to the operator's ceiling 20s (--max-webhook-timeout)")):
			t.Errorf("check %s: %s %q, want a pass that names the ceiling", name, ch.Outcome, ch.Message)
		case i >= 3 && (ch.Outcome != meshv1.OutcomeTimeout || !strings.Contains(ch.Message, "not run: the reconcile's time budget")):
			t.Errorf("check %s: %s %q, want a Timeout: not run", name, ch.Outcome, ch.Message)
		}
	}
	if c.Status.FailedChecks != 1 {
		t.Errorf("failed checks %d, want 1: a webhook the budget did not reach never passes", c.Status.FailedChecks)
	}
	h.expectWeights(90, 10)
}

// An abort is carried out at once, however slow the Canary's webhooks: the reconcile that
// takes it runs no check, writes the routing back to the primary, and only then calls the
// event webhook, which finds the traffic already on the primary.
func TestCanaryAbortDoesNotWaitForSlowWebhooks(t *testing.T) {
	h := newHarness(t)
	rollouts := h.slowHooksRollout(budget.Limits{Reconcile: 30 * time.Second})

	var seenByEvent []string
	h.hooks.during = func(w meshv1.CanaryWebhook) {
		h.clock.Step(10 * time.Minute)
		if w.Type == meshv1.WebhookEvent {
			p, c, _ := render.ObservedWeights(h.virtualService(), "reviews")
			seenByEvent = append(seenByEvent, fmt.Sprintf("%d/%d", p, c))
		}
	}
	h.annotate("reviews", meshv1.AnnotationRequest, "abort")
	c := h.settle("reviews")

	if c.Status.Phase != meshv1.PhaseRollingBack && c.Status.Phase != meshv1.PhaseFailed {
		t.Fatalf("phase %s after the abort, want RollingBack or Failed", c.Status.Phase)
	}
	h.expectWeights(100, 0)
	if n := h.hooks.calls[meshv1.WebhookRollout] - rollouts; n != 0 {
		t.Errorf("the abort called %d rollout webhooks, want none", n)
	}
	if len(seenByEvent) == 0 || slices.ContainsFunc(seenByEvent, func(s string) bool { return s != "100/0" }) {
		t.Errorf("the event webhook saw the routing %v, want it called after 100/0 was written", seenByEvent)
	}
}
