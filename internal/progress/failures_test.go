package progress

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// withNotifications adds a rollback webhook that never asks for a rollback and a
// post-rollout webhook to a spec.
func withNotifications(spec meshv1.CanarySpec) meshv1.CanarySpec {
	spec.Analysis.Webhooks = append(spec.Analysis.Webhooks,
		meshv1.CanaryWebhook{Name: "page", Type: meshv1.WebhookRollback, URL: "http://pager"},
		meshv1.CanaryWebhook{Name: "report", Type: meshv1.WebhookPostRollout, URL: "http://report"},
	)
	return spec
}

func TestFailingChecksRollBackAtTheThreshold(t *testing.T) {
	r := newRollout(t, withNotifications(weightedSpec()))
	// The new revision copes with a little traffic, not with 20%.
	r.metric = r.failingFrom(20, "87.5")

	r.deploy("v2")
	r.waitForWeight(20, 5*time.Minute)
	r.wait(time.Minute)
	r.expect(meshv1.PhaseProgressing, 20) // the weight holds on a failed check
	r.expectCondition(meshv1.ConditionAnalysis, metav1.ConditionFalse, meshv1.ReasonCheckFailed, "request-success-rate is 87.5 (threshold >= 99)")
	r.expectEvent(EventWarning, meshv1.ReasonCheckFailed, "Check failed (1 of 3): request-success-rate is 87.5 (threshold >= 99)")

	r.waitForPhase(meshv1.PhaseRollingBack, 5*time.Minute)
	r.expect(meshv1.PhaseRollingBack, 0)
	if !r.world.targetUp {
		t.Fatal("the canary must drain before it is scaled down")
	}
	r.waitForPhase(meshv1.PhaseFailed, time.Minute)
	r.expectWeights(0, 10, 20, 0)
	if st := r.status; st.LastFailedRevision != "v2" || st.LastPromotedRevision != "v1" || st.FailedChecks != 3 || r.world.targetUp || r.world.primary != "v1" {
		t.Fatalf("want v2 rolled back and v1 still serving, got %+v %+v", st, r.world)
	}
	const why = "Rolled back revision v2 after 3 failed checks: request-success-rate is 87.5 (threshold >= 99)"
	r.expectCondition(meshv1.ConditionPromoted, metav1.ConditionFalse, meshv1.ReasonCheckFailed, why)
	r.expectCondition(meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonCheckFailed, why, "retry")
	r.expectCondition(meshv1.ConditionStalled, metav1.ConditionTrue, meshv1.ReasonCheckFailed, why)
	r.expectCondition(meshv1.ConditionReconciling, metav1.ConditionFalse, meshv1.ReasonCheckFailed)
	r.expectEvent(EventWarning, meshv1.ReasonCheckFailed, why)
	r.expectEvent(EventWarning, meshv1.ReasonRolledBack, "v2")
	// A rollback webhook is a gate (as in Flagger), not told of the rollback.
	if want := []meshv1.WebhookType{meshv1.WebhookPostRollout}; !slices.Equal(r.notified, want) {
		t.Fatalf("notified %v, want %v", r.notified, want)
	}
	if r.last.RequeueAfter != 0 {
		t.Fatalf("a failed Canary waits for a change, not a timer; requeue %s", r.last.RequeueAfter)
	}
}

func TestAHoldingCheckWaitsAndRecovers(t *testing.T) {
	r := newRollout(t, weightedSpec())
	noData := 3
	r.metric = func(name string) meshv1.CheckStatus {
		if r.status.CanaryWeight == 10 && noData > 0 {
			noData--
			return unmeasurable(name)
		}
		return passing(name)
	}

	r.deploy("v2")
	r.waitForWeight(10, time.Minute)
	r.wait(time.Minute) // first check at 10%: no data
	holdStart := r.now
	r.expect(meshv1.PhaseProgressing, 10)
	r.expectCondition(meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonCheckHolding, "request-success-rate: NoData: no samples in 1m")
	r.expectCondition(meshv1.ConditionAnalysis, metav1.ConditionUnknown, meshv1.ReasonCheckHolding)
	if c := r.status.Checks[0]; c.HoldingSince == nil || !c.HoldingSince.Time.Equal(holdStart) {
		t.Fatalf("holdingSince %v, want %s", c.HoldingSince, holdStart)
	}

	r.wait(2 * time.Minute) // two more runs without data: the step waits, nothing counts
	r.expect(meshv1.PhaseProgressing, 10)
	if r.status.FailedChecks != 0 || !r.status.Checks[0].HoldingSince.Time.Equal(holdStart) {
		t.Fatalf("a hold must not count as a failure nor restart: %+v", r.status)
	}

	r.wait(time.Minute) // data again: the step is taken
	r.expect(meshv1.PhaseProgressing, 20)
	if r.status.Checks[0].HoldingSince != nil {
		t.Fatal("a passing check no longer holds")
	}
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	r.expectWeights(0, 10, 20, 30, 40, 50, 0)
	holds := 0
	for _, e := range r.events {
		if e.Reason == meshv1.ReasonCheckHolding {
			holds++
		}
	}
	if holds != 1 {
		t.Fatalf("%d CheckHolding events, want one when the hold began", holds)
	}
}

func TestAHoldLongerThanTheHoldTimeoutFails(t *testing.T) {
	spec := weightedSpec()
	spec.Analysis.Threshold = 2
	spec.Analysis.Metrics[0].HoldTimeout = "3m"
	r := newRollout(t, spec)
	r.metric = func(name string) meshv1.CheckStatus {
		if r.status.CanaryWeight >= 10 {
			return unmeasurable(name)
		}
		return passing(name)
	}

	r.deploy("v2")
	r.waitForWeight(10, time.Minute)
	r.wait(time.Minute)
	holdStart := r.now
	r.wait(2 * time.Minute)
	if r.status.FailedChecks != 0 {
		t.Fatalf("failed checks %d within the hold timeout", r.status.FailedChecks)
	}
	r.wait(time.Minute) // 3m on hold: from now on it fails
	if r.status.FailedChecks != 1 || r.now.Sub(holdStart) != 3*time.Minute {
		t.Fatalf("failed checks %d after %s on hold", r.status.FailedChecks, r.now.Sub(holdStart))
	}
	r.waitForPhase(meshv1.PhaseFailed, 5*time.Minute)
	r.expectCondition(meshv1.ConditionPromoted, metav1.ConditionFalse, meshv1.ReasonCheckFailed,
		"request-success-rate: NoData: no samples in 1m; not measurable for longer than the hold timeout 3m0s")
}

func TestOnErrorFailCountsAnUnmeasurableCheckAtOnce(t *testing.T) {
	spec := weightedSpec()
	spec.Analysis.Threshold = 2
	spec.Analysis.Metrics[0].OnError = meshv1.OnErrorFail
	r := newRollout(t, spec)
	r.metric = func(name string) meshv1.CheckStatus {
		return meshv1.CheckStatus{Name: name, Outcome: meshv1.OutcomeUnreachable, Message: "dial tcp: connection refused"}
	}

	r.deploy("v2")
	r.waitForWeight(10, time.Minute)
	r.wait(time.Minute)
	if r.status.FailedChecks != 1 || r.status.Checks[0].HoldingSince != nil {
		t.Fatalf("want a failure at once, got %+v", r.status)
	}
	r.wait(time.Minute)
	r.expect(meshv1.PhaseRollingBack, 0)
	r.expectCondition(meshv1.ConditionPromoted, metav1.ConditionFalse, meshv1.ReasonCheckFailed,
		"request-success-rate: Unreachable: dial tcp: connection refused")
}

func TestACanaryThatNeverBecomesReadyHitsTheDeadline(t *testing.T) {
	r := newRollout(t, withNotifications(weightedSpec()))
	r.world.canaryDown = true

	r.deploy("v2")
	start := r.now
	// The canary never got traffic: there is nothing to drain, it fails at once.
	r.waitForPhase(meshv1.PhaseFailed, time.Hour)
	if waited := r.now.Sub(start); waited != 600*time.Second {
		t.Fatalf("rolled back after %s, want the default 600s", waited)
	}
	r.expectCondition(meshv1.ConditionPromoted, metav1.ConditionFalse, meshv1.ReasonProgressDeadline, "Canary podinfo not ready with revision v2 within 10m0s")
	r.expectWeights(0)
	if r.world.targetUp {
		t.Fatal("the canary is scaled to zero")
	}
	r.expectCondition(meshv1.ConditionStalled, metav1.ConditionTrue, meshv1.ReasonProgressDeadline)
	if r.checkRuns != 0 || r.status.LastFailedRevision != "v2" {
		t.Fatalf("checks ran %d times; lastFailedRevision %q", r.checkRuns, r.status.LastFailedRevision)
	}
}

func TestTheCanaryDeadlineCountsFromWhenItStoppedBeingReady(t *testing.T) {
	spec := weightedSpec()
	spec.Analysis.Interval = "30m" // long steps...
	spec.ProgressDeadlineSeconds = ptr[int32](120)
	r := newRollout(t, spec)

	r.deploy("v2")
	r.waitForWeight(10, time.Minute)
	r.wait(25 * time.Minute) // ...far longer than the deadline into the step

	r.crashCanary()
	r.expect(meshv1.PhaseProgressing, 10)
	r.expectCondition(meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonWaitingForCanary)
	r.wait(90 * time.Second)
	r.healCanary() // back within the deadline: the step goes on, its clock restarted
	r.waitFor("ready again", func() bool { return readyReason(r.status) != meshv1.ReasonWaitingForCanary }, time.Minute)
	r.wait(29 * time.Minute)
	r.expect(meshv1.PhaseProgressing, 20)

	r.crashCanary()
	crashed := r.now
	r.waitForPhase(meshv1.PhaseRollingBack, time.Hour)
	if r.now.Sub(crashed) != 120*time.Second {
		t.Fatalf("rolled back %s after the crash, want 120s", r.now.Sub(crashed))
	}
	r.expectCondition(meshv1.ConditionPromoted, metav1.ConditionFalse, meshv1.ReasonProgressDeadline, "within 2m0s")
}

func TestAPrimaryThatCannotRollOutTheRevisionHitsTheDeadline(t *testing.T) {
	r := newRollout(t, weightedSpec())
	r.deploy("v2")
	r.waitForWeight(50, time.Hour)
	r.world.primaryDelay = 24 * time.Hour // the primary's new pods never become available

	r.waitForPhase(meshv1.PhasePromoting, 2*time.Minute)
	promoting := r.now
	r.expect(meshv1.PhasePromoting, 50) // the canary keeps its share while the primary tries
	r.waitForPhase(meshv1.PhaseRollingBack, time.Hour)
	if r.now.Sub(promoting) != 600*time.Second {
		t.Fatalf("rolled back %s after the promotion began", r.now.Sub(promoting))
	}
	r.expectCondition(meshv1.ConditionPromoted, metav1.ConditionFalse, meshv1.ReasonProgressDeadline, "Primary not ready with revision v2 within 10m0s")
	r.waitForPhase(meshv1.PhaseFailed, time.Minute)
	if r.status.LastFailedRevision != "v2" || r.status.LastPromotedRevision != "v1" {
		t.Fatalf("%+v", r.status)
	}
}

func TestReapplyingAFailedRevisionDoesNotRestartIt(t *testing.T) {
	r := newRollout(t, weightedSpec())
	r.metric = failingWith("50")
	r.deploy("v2")
	r.waitForPhase(meshv1.PhaseFailed, time.Hour)
	events := len(r.events)

	r.deploy("v2") // kubectl apply of the same template, or a GitOps sync
	r.wait(time.Hour)
	r.expect(meshv1.PhaseFailed, 0)
	if len(r.events) != events || r.world.targetUp {
		t.Fatalf("nothing may happen: %+v", r.events[events:])
	}
	r.expectCondition(meshv1.ConditionStalled, metav1.ConditionTrue, meshv1.ReasonCheckFailed, "retry")

	r.deploy("v1") // the owner reverts the Deployment: what runs is what is wanted
	r.expect(meshv1.PhaseFailed, 0)
	r.expectCondition(meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonRolledBack, "Primary runs revision v1")
	r.expectCondition(meshv1.ConditionStalled, metav1.ConditionFalse, meshv1.ReasonRolledBack)

	r.metric = nil
	r.deploy("v3") // and a fix rolls out as usual
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	if r.status.LastPromotedRevision != "v3" || r.status.LastFailedRevision != "v2" {
		t.Fatalf("%+v", r.status)
	}
}

func TestRetryRollsOutAFailedRevisionAgain(t *testing.T) {
	r := newRollout(t, weightedSpec())
	r.metric = failingWith("50") // say Prometheus had a bad day
	r.deploy("v2")
	r.waitForPhase(meshv1.PhaseFailed, time.Hour)

	r.metric = nil
	r.ask("retry")
	r.expect(meshv1.PhaseProgressing, 0)
	if r.status.LastFailedRevision != "" || r.status.CurrentRevision != "v2" || r.status.FailedChecks != 0 || r.status.LastHandledRequest != "retry" {
		t.Fatalf("%+v", r.status)
	}
	r.expectEvent(EventNormal, meshv1.ReasonRetry, "Retrying revision v2")
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	r.expectWeights(0, 10, 0, 10, 20, 30, 40, 50, 0)

	events := len(r.events)
	r.step() // the annotation stays; it was acted on once
	r.ask("retry")
	if len(r.events) != events {
		t.Fatalf("a handled request acted again: %+v", r.events[events:])
	}
	r.ask("retry:2") // a new token is a new request, and nothing failed to retry
	r.expectEvent(EventWarning, meshv1.ReasonRetry, `"retry:2" ignored`)
}

func TestGoingBackToThePromotedRevisionCancelsTheRollout(t *testing.T) {
	r := newRollout(t, weightedSpec())
	r.deploy("v2")
	r.waitForWeight(30, time.Hour)

	r.deploy("v1")
	r.expect(meshv1.PhaseRollingBack, 0)
	r.waitForPhase(meshv1.PhaseFailed, time.Minute)
	if r.status.LastFailedRevision != "" {
		t.Fatalf("a cancelled revision did not fail: %+v", r.status)
	}
	r.expectCondition(meshv1.ConditionPromoted, metav1.ConditionFalse, meshv1.ReasonNewRevision, "cancelled")
	r.expectCondition(meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonRolledBack)

	r.deploy("v2") // v2 did not fail: it may roll out again
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
}

func TestACrashBeforeTheStatusWriteRepeatsTheCheckWithoutCountingItTwice(t *testing.T) {
	r := newRollout(t, weightedSpec())
	r.metric = failingWith("42")
	r.deploy("v2")
	r.waitForWeight(10, time.Minute)
	r.now = r.now.Add(time.Minute)

	saved := r.status
	r.step() // the check runs and fails...
	if r.status.FailedChecks != 1 {
		t.Fatalf("failed checks %d", r.status.FailedChecks)
	}
	r.status = saved // ...and the operator dies before writing the status.
	r.now = r.now.Add(3 * time.Second)
	r.step()
	if r.status.FailedChecks != 1 {
		t.Fatalf("failed checks %d after the repeat, want 1", r.status.FailedChecks)
	}
}

// A MeshPolicy that cannot be composed with the Canary's routing: all traffic goes back to
// the primary, the rollout holds at its step (the analysis waits), and once the policy is
// fixed the canary gets its weight back and a whole interval of analysis before the next
// step. A rollback still lands while the routing is held.
func TestARoutingHoldSendsEverythingToThePrimaryAndHolds(t *testing.T) {
	r := newRollout(t, weightedSpec())
	r.deploy("v2")
	r.waitForWeight(20, 5*time.Minute)

	const why = "MeshPolicy/reviews spec.routes[0].port: 8080 is not the Canary's port 9080"
	r.world.routingHeld = why
	r.step()                             // the MeshPolicy's watch event
	r.expect(meshv1.PhaseProgressing, 0) // all traffic on the primary...
	if r.status.CanaryWeight != 20 || r.last.Routing.PrimaryWeight != 100 {
		t.Fatalf("status weight %d, routing %+v: the status keeps the step", r.status.CanaryWeight, r.last.Routing) // ...the step stays
	}
	r.expectCondition(meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonPolicyNotComposed, why)
	runs := r.checkRuns
	r.wait(10 * time.Minute)
	r.expect(meshv1.PhaseProgressing, 0)
	if r.checkRuns != runs || r.status.CanaryWeight != 20 {
		t.Fatalf("%d analyses ran while the canary had no traffic", r.checkRuns-runs)
	}

	r.world.routingHeld = ""
	r.step()
	fixed := r.now
	r.waitForWeight(30, 5*time.Minute)
	if waited := r.now.Sub(fixed); waited < time.Minute {
		t.Fatalf("the next step came %s after the hold ended, want a whole interval", waited)
	}
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	r.expectWeights(0, 10, 20, 0, 20, 30, 40, 50, 0)

	// While held, an abort still rolls back.
	r.deploy("v3")
	r.waitForWeight(10, 5*time.Minute)
	r.world.routingHeld = why
	r.step()
	r.request = "abort:1"
	r.waitForPhase(meshv1.PhaseFailed, 5*time.Minute)
	if r.status.LastFailedRevision != "v3" || r.world.targetUp {
		t.Fatalf("want v3 rolled back, got %+v %+v", r.status, r.world)
	}
}
