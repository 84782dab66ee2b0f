package progress

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

func inconclusiveAt(value string) func(string) meshv1.CheckStatus {
	return func(name string) meshv1.CheckStatus {
		return meshv1.CheckStatus{Name: name, Outcome: meshv1.OutcomeInconclusive, Value: value,
			Threshold: "success: result >= 99.0; failure: result < 90.0"}
	}
}

// A check with failureLimit rolls back when it fails once more than the limit, long before
// the Canary's threshold, and its failures are counted in status.
func TestFailureLimitRollsBackBeforeTheThreshold(t *testing.T) {
	spec := weightedSpec()
	spec.Analysis.Threshold = 10
	spec.Analysis.Metrics[0].FailureLimit = ptr[int32](1)
	r := newRollout(t, spec)
	r.metric = r.failingFrom(20, "87.5")

	r.deploy("v2")
	r.waitForWeight(20, 5*time.Minute)
	r.wait(time.Minute) // the first failure is within the limit
	r.expect(meshv1.PhaseProgressing, 20)
	if c := r.status.Checks[0]; c.Failures != 1 || r.status.FailedChecks != 1 {
		t.Fatalf("after one failure: check %+v, failedChecks %d", c, r.status.FailedChecks)
	}
	r.wait(time.Minute) // the second is one more than the limit
	r.expect(meshv1.PhaseRollingBack, 0)
	if c := r.status.Checks[0]; c.Failures != 2 || r.status.FailedChecks != 2 {
		t.Fatalf("after two failures: check %+v, failedChecks %d", c, r.status.FailedChecks)
	}
	const why = "Rolled back revision v2: check request-success-rate failed 2 times, more than its failureLimit 1"
	r.expectCondition(meshv1.ConditionPromoted, metav1.ConditionFalse, meshv1.ReasonCheckFailed, why)
	r.expectEvent(EventWarning, meshv1.ReasonCheckFailed, why)
	r.waitForPhase(meshv1.PhaseFailed, time.Minute)
	if r.status.LastFailedRevision != "v2" {
		t.Fatalf("lastFailedRevision %q", r.status.LastFailedRevision)
	}

	// The next rollout counts afresh.
	r.metric = nil
	r.deploy("v3")
	if len(r.status.Checks) != 0 {
		t.Fatalf("a new rollout starts with no counters: %+v", r.status.Checks)
	}
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
}

// failureLimit 0 is Argo's default meaning: the first failure rolls back.
func TestFailureLimitZeroRollsBackAtTheFirstFailure(t *testing.T) {
	spec := weightedSpec()
	spec.Analysis.Metrics[0].FailureLimit = ptr[int32](0)
	r := newRollout(t, spec)
	r.metric = failingWith("50")
	r.deploy("v2")
	r.waitForWeight(10, time.Minute)
	r.wait(time.Minute)
	r.expect(meshv1.PhaseRollingBack, 0)
	r.expectCondition(meshv1.ConditionAnalysis, metav1.ConditionFalse, meshv1.ReasonCheckFailed, "more than its failureLimit 0")
}

// consecutiveErrorLimit rolls back a check that cannot be measured, in a row, more times
// than the limit, before its holdTimeout; a measured value in between starts over.
func TestConsecutiveErrorLimit(t *testing.T) {
	spec := weightedSpec()
	spec.Analysis.Metrics[0].ConsecutiveErrorLimit = ptr[int32](2)
	spec.Analysis.Metrics[0].HoldTimeout = "1h"
	r := newRollout(t, spec)
	runs := 0
	r.metric = func(name string) meshv1.CheckStatus {
		if r.status.CanaryWeight < 10 {
			return passing(name)
		}
		runs++
		if runs%3 == 0 { // two errors, then a value: never three in a row
			return passing(name)
		}
		return unmeasurable(name)
	}
	r.deploy("v2")
	r.waitForWeight(10, time.Minute)
	r.wait(6 * time.Minute) // each pass takes a step; no rollback
	r.expect(meshv1.PhaseProgressing, 30)
	if c := r.status.Checks[0]; c.ConsecutiveErrors > 2 {
		t.Fatalf("consecutive errors %d", c.ConsecutiveErrors)
	}

	// From now on nothing is measurable: the third error in a row rolls back.
	r.metric = unmeasurable
	r.waitForPhase(meshv1.PhaseRollingBack, 5*time.Minute)
	if c := r.status.Checks[0]; c.ConsecutiveErrors != 3 {
		t.Fatalf("rolled back after %d errors in a row, want 3", c.ConsecutiveErrors)
	}
	r.expectCondition(meshv1.ConditionPromoted, metav1.ConditionFalse, meshv1.ReasonCheckFailed,
		"not measurable 3 times in a row, more than its consecutiveErrorLimit 2")
}

// inconclusiveLimit pauses the rollout, as Argo does; a resume goes on, counting afresh.
func TestInconclusiveLimitPauses(t *testing.T) {
	spec := weightedSpec()
	spec.Analysis.Metrics[0] = meshv1.CanaryMetric{Name: "request-success-rate",
		SuccessCondition: "result >= 99.0", FailureCondition: "result < 90.0", InconclusiveLimit: ptr[int32](1)}
	r := newRollout(t, spec)
	r.metric = func(name string) meshv1.CheckStatus {
		if r.status.CanaryWeight == 20 {
			return inconclusiveAt("95")(name)
		}
		return passing(name)
	}
	r.deploy("v2")
	r.waitForWeight(20, 5*time.Minute)
	r.wait(time.Minute) // the first inconclusive value holds the step, as no data would
	r.expect(meshv1.PhaseProgressing, 20)
	r.expectCondition(meshv1.ConditionAnalysis, metav1.ConditionUnknown, meshv1.ReasonCheckHolding, "Inconclusive")
	if r.status.Paused || r.status.Checks[0].Inconclusive != 1 {
		t.Fatalf("after one inconclusive value: %+v", r.status)
	}
	r.wait(time.Minute) // the second is more than the limit: paused
	if !r.status.Paused {
		t.Fatalf("not paused after two inconclusive values: %+v", r.status.Checks)
	}
	r.expectCondition(meshv1.ConditionAnalysis, metav1.ConditionUnknown, meshv1.ReasonPaused,
		"inconclusive 2 times, more than its inconclusiveLimit 1")
	r.expectEvent(EventWarning, meshv1.ReasonPaused, "request resume to go on or abort to roll back")
	r.wait(30 * time.Minute) // a pause waits for a person, with no deadline
	r.expect(meshv1.PhaseProgressing, 20)
	if r.status.FailedChecks != 0 {
		t.Fatalf("an inconclusive check counted as failed: %d", r.status.FailedChecks)
	}

	r.metric = nil
	r.ask("resume")
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
}

// A dry-run check is measured and shown, and never decides: failing, unmeasurable or over
// its limits, the rollout goes on as the other checks say.
func TestDryRunChecksNeverDecide(t *testing.T) {
	spec := weightedSpec()
	spec.Analysis.Threshold = 1
	spec.Analysis.Metrics = append(spec.Analysis.Metrics,
		meshv1.CanaryMetric{Name: "latency", ThresholdRange: meshv1.ThresholdRange{Max: ptr(100.0)}, DryRun: true, FailureLimit: ptr[int32](0)},
		meshv1.CanaryMetric{Name: "errors", ThresholdRange: meshv1.ThresholdRange{Max: ptr(1.0)}, DryRun: true, HoldTimeout: "1s"},
	)
	r := newRollout(t, spec)
	r.metric = func(name string) meshv1.CheckStatus {
		switch name {
		case "latency":
			return failingWith("250")(name)
		case "errors":
			return unmeasurable(name)
		}
		return passing(name)
	}
	r.deploy("v2")
	r.waitForWeight(30, 5*time.Minute)
	st := r.status
	if st.FailedChecks != 0 || len(st.Checks) != 3 {
		t.Fatalf("status %+v", st)
	}
	latency, errs := st.Checks[1], st.Checks[2]
	if !latency.DryRun || latency.Outcome != meshv1.OutcomeFail || latency.Failures < 2 || latency.HoldingSince != nil {
		t.Fatalf("dry-run latency shown as %+v", latency)
	}
	if !errs.DryRun || errs.Outcome != meshv1.OutcomeNoData || errs.HoldingSince != nil || errs.ConsecutiveErrors < 2 {
		t.Fatalf("dry-run errors shown as %+v", errs)
	}
	r.expectCondition(meshv1.ConditionAnalysis, metav1.ConditionTrue, meshv1.ReasonCheckPassed, "latency (dry run) is 250")
	r.waitForPhase(meshv1.PhaseSucceeded, time.Hour)
	r.expectWeights(0, 10, 20, 30, 40, 50, 0)
}
