package progress

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

func withWebhook(spec meshv1.CanarySpec, name string, t meshv1.WebhookType) meshv1.CanarySpec {
	spec.Analysis.Webhooks = append(spec.Analysis.Webhooks, meshv1.CanaryWebhook{Name: name, Type: t, URL: "http://flagger-loadtester/" + name})
	return spec
}

func TestConfirmRolloutHoldsANewRevisionUntilApproved(t *testing.T) {
	r := newRollout(t, withWebhook(weightedSpec(), "approve", meshv1.WebhookConfirmRollout))

	r.deploy("v2")
	r.expect(meshv1.PhaseWaiting, 0)
	if r.world.targetUp {
		t.Fatal("an unapproved revision does not run")
	}
	r.wait(10 * time.Minute)
	r.expect(meshv1.PhaseWaiting, 0)
	r.expectCondition(meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonWaitingForGate, "confirm-rollout webhook approve")
	if g := r.status.Gates[0]; g.Attempts != 11 || g.Open {
		t.Fatalf("want the gate asked every minute, got %+v", g)
	}
	r.expectEvent(EventNormal, meshv1.ReasonWaitingForGate, "v2 waits for the confirm-rollout webhooks")

	r.gateOpen["approve"] = true
	r.wait(time.Minute)
	r.expect(meshv1.PhaseProgressing, 0)
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	r.expectWeights(0, 10, 20, 30, 40, 50, 0)
}

func TestConfirmTrafficIncreaseHoldsEveryIncrease(t *testing.T) {
	r := newRollout(t, withWebhook(weightedSpec(), "more", meshv1.WebhookConfirmTrafficIncrease))

	r.deploy("v2")
	r.wait(3 * time.Minute)
	r.expect(meshv1.PhaseProgressing, 0) // not even the first 10% without approval
	r.expectCondition(meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonWaitingForGate, "confirm-traffic-increase webhook more")

	r.gateOpen["more"] = true
	r.waitForWeight(30, 5*time.Minute)
	r.gateOpen["more"] = false
	runs := r.checkRuns
	r.wait(5 * time.Minute)
	r.expect(meshv1.PhaseProgressing, 30)
	if r.checkRuns-runs != 5 {
		t.Fatalf("the checks go on while the gate is closed: %d runs in 5m", r.checkRuns-runs)
	}

	r.gateOpen["more"] = true
	r.waitForWeight(50, 3*time.Minute)
	waits := 0
	for _, e := range r.events {
		if e.Reason == meshv1.ReasonWaitingForGate {
			waits++
		}
	}
	if waits != 2 {
		t.Fatalf("%d WaitingForGate events, want one at 0%% and one at 30%%", waits)
	}
	r.gateOpen["more"] = false // promotion is not a traffic increase
	r.waitForPhase(meshv1.PhaseSucceeded, 5*time.Minute)
	r.expectWeights(0, 10, 20, 30, 40, 50, 0)
}

func TestConfirmPromotionHoldsAtMaxWeightWhileTheChecksGoOn(t *testing.T) {
	r := newRollout(t, withWebhook(weightedSpec(), "ship-it", meshv1.WebhookConfirmPromotion))
	r.deploy("v2")
	r.waitForWeight(50, time.Hour)

	r.wait(10 * time.Minute)
	r.expect(meshv1.PhaseProgressing, 50)
	r.expectCondition(meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonWaitingForGate, "confirm-promotion webhook ship-it")
	r.expectEvent(EventNormal, meshv1.ReasonWaitingForGate, "ship-it")

	r.metric = failingWith("80") // a failure while waiting still counts
	r.wait(time.Minute)
	if r.status.FailedChecks != 1 {
		t.Fatalf("failed checks %d", r.status.FailedChecks)
	}
	r.metric = nil
	r.gateOpen["ship-it"] = true
	r.waitForPhase(meshv1.PhasePromoting, time.Minute)
	r.expect(meshv1.PhasePromoting, 50)
}

func TestConfirmPromotionHoldsTheLastIteration(t *testing.T) {
	r := newRollout(t, withWebhook(iterationsSpec(2), "ship-it", meshv1.WebhookConfirmPromotion))
	r.deploy("v2")
	r.wait(10 * time.Minute)
	r.expect(meshv1.PhaseProgressing, 0)
	if r.status.Iterations != 1 {
		t.Fatalf("iterations %d, want the last one held", r.status.Iterations)
	}
	r.gateOpen["ship-it"] = true
	r.waitForPhase(meshv1.PhasePromoting, time.Minute)
	r.expect(meshv1.PhasePromoting, 100)
	if r.status.Iterations != 2 {
		t.Fatalf("iterations %d", r.status.Iterations)
	}
}

func TestPreRolloutWebhooksMustPassBeforeAnyTraffic(t *testing.T) {
	spec := withWebhook(weightedSpec(), "smoke", meshv1.WebhookPreRollout)
	spec.Analysis.Threshold = 2
	r := newRollout(t, spec)
	r.hookOutcome["smoke"] = meshv1.OutcomeFail

	r.deploy("v2")
	r.waitFor("a failed smoke test", func() bool { return r.status.FailedChecks == 1 }, time.Minute)
	r.expect(meshv1.PhaseProgressing, 0)
	r.expectCondition(meshv1.ConditionAnalysis, metav1.ConditionFalse, meshv1.ReasonCheckFailed, "smoke")

	r.waitForPhase(meshv1.PhaseFailed, 5*time.Minute)
	r.expectWeights(0)
	if r.checkRuns != 0 {
		t.Fatalf("metrics ran %d times before any traffic", r.checkRuns)
	}

	delete(r.hookOutcome, "smoke")
	r.ask("retry")
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	if r.hookCalls["smoke"] != 3 {
		t.Fatalf("smoke test called %d times, want 2 failures and 1 pass", r.hookCalls["smoke"])
	}
}

func TestRolloutWebhooksRunWithEveryAnalysis(t *testing.T) {
	spec := withWebhook(weightedSpec(), "load", meshv1.WebhookRollout)
	spec.Analysis.Threshold = 1
	r := newRollout(t, spec)

	r.deploy("v2")
	r.waitForWeight(40, time.Hour)
	if r.hookCalls["load"] != r.checkRuns || r.checkRuns != 3 {
		t.Fatalf("load test called %d times, metrics %d times", r.hookCalls["load"], r.checkRuns)
	}
	r.hookOutcome["load"] = meshv1.OutcomeUnreachable // a webhook never holds
	r.wait(time.Minute)
	r.expect(meshv1.PhaseRollingBack, 0)
	r.expectCondition(meshv1.ConditionPromoted, metav1.ConditionFalse, meshv1.ReasonCheckFailed, "load: Unreachable")
}

func TestEventWebhooksHearEveryEvent(t *testing.T) {
	r := newRollout(t, withWebhook(weightedSpec(), "chat", meshv1.WebhookEvent))
	r.deploy("v2")
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	if n := len(r.notified); n == 0 || n > len(r.events) {
		t.Fatalf("%d event notifications for %d events", n, len(r.events))
	}
	for _, n := range r.notified {
		if n != meshv1.WebhookEvent {
			t.Fatalf("notified %s without a webhook of that type", n)
		}
	}
}

func TestARollbackWebhookRollsBackWhenItAnswers2xx(t *testing.T) {
	r := newRollout(t, withWebhook(weightedSpec(), "halt", meshv1.WebhookRollback))

	r.deploy("v2")
	r.waitForWeight(20, 5*time.Minute)
	if g := r.status.Gates; len(g) != 1 || g[0].Type != meshv1.WebhookRollback || g[0].Open || g[0].LastAttempt == nil {
		t.Fatalf("want the rollback webhook asked with the analysis, got %+v", g)
	}
	r.gateOpen["halt"] = true
	r.waitForPhase(meshv1.PhaseRollingBack, time.Minute)
	r.expect(meshv1.PhaseRollingBack, 0)
	const why = "Rollback webhook halt asked for a rollback: rolled back revision v2"
	r.expectCondition(meshv1.ConditionPromoted, metav1.ConditionFalse, meshv1.ReasonRollbackWebhook, why)
	r.expectEvent(EventWarning, meshv1.ReasonRollbackWebhook, why)
	r.waitForPhase(meshv1.PhaseFailed, time.Minute)
	if st := r.status; st.LastFailedRevision != "v2" || r.world.primary != "v1" || r.world.targetUp {
		t.Fatalf("want v2 failed and v1 serving, got %+v %+v", st, r.world)
	}
	r.expectWeights(0, 10, 20, 0)
	if len(r.notified) != 0 {
		t.Fatalf("a rollback webhook is a gate, not told of the rollback: notified %v", r.notified)
	}
}

func TestARollbackWebhookIsAskedWhileARevisionWaitsForApproval(t *testing.T) {
	spec := withWebhook(withWebhook(weightedSpec(), "approve", meshv1.WebhookConfirmRollout), "halt", meshv1.WebhookRollback)
	r := newRollout(t, spec)

	r.deploy("v2")
	r.wait(3 * time.Minute)
	r.expect(meshv1.PhaseWaiting, 0)
	r.gateOpen["halt"] = true
	r.wait(time.Minute)
	r.expect(meshv1.PhaseFailed, 0) // the canary never served: nothing to drain
	r.expectCondition(meshv1.ConditionPromoted, metav1.ConditionFalse, meshv1.ReasonRollbackWebhook, "revision v2")
	if r.status.LastFailedRevision != "v2" || r.world.targetUp {
		t.Fatalf("want v2 failed and not running, got %+v %+v", r.status, r.world)
	}
}

func TestARollbackWebhookThatNeverAnswers2xxChangesNothing(t *testing.T) {
	r := newRollout(t, withWebhook(weightedSpec(), "halt", meshv1.WebhookRollback))

	r.deploy("v2")
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	r.expectWeights(0, 10, 20, 30, 40, 50, 0)
}
