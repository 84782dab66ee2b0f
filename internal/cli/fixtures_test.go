package cli

import (
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// fixedNow is the clock of the formatting tests.
var fixedNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) *metav1.Time {
	t := metav1.NewTime(fixedNow.Add(-d))
	return &t
}

// fixtureCanary is a Canary of Bookinfo's reviews in a fixed state.
func fixtureCanary(state string) *meshv1.Canary {
	c := &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{
			Name: "reviews", Namespace: "bookinfo", Generation: 1, UID: "uid-reviews",
			CreationTimestamp: *at(49 * time.Hour),
		},
		Spec: meshv1.CanarySpec{
			TargetRef: meshv1.TargetRef{Name: "reviews"},
			Service:   meshv1.CanaryService{Port: 9080},
			Analysis: meshv1.CanaryAnalysis{
				Interval: "30s", Threshold: 3, StepWeight: ptr.To[int32](10), MaxWeight: 50,
				Metrics: []meshv1.CanaryMetric{
					{Name: "request-success-rate", ThresholdRange: meshv1.ThresholdRange{Min: ptr.To(99.0)}},
					{Name: "request-duration", ThresholdRange: meshv1.ThresholdRange{Max: ptr.To(500.0)}},
				},
			},
		},
	}
	st := &c.Status
	st.ObservedGeneration = 1
	cond := func(typ string, status metav1.ConditionStatus, reason, msg string, since time.Duration) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: 1, LastTransitionTime: *at(since)}
	}
	switch state {
	case "progressing":
		*st = meshv1.CanaryStatus{
			ObservedGeneration: 1, Phase: meshv1.PhaseProgressing, CanaryWeight: 30, StepIndex: 3, FailedChecks: 1,
			CurrentRevision: "7f9c2d1e4b5a", LastPromotedRevision: "1a2b3c4d5e6f",
			Checks: []meshv1.CheckStatus{
				{Name: "request-success-rate", Outcome: meshv1.OutcomePass, Value: "99.87", Threshold: ">= 99", LastMeasured: at(12 * time.Second)},
				{Name: "request-duration", Outcome: meshv1.OutcomeFail, Value: "612", Threshold: "<= 500", Message: "p99 above the threshold", LastMeasured: at(12 * time.Second)},
			},
			Gates: []meshv1.GateStatus{
				{Name: "approve", Type: meshv1.WebhookConfirmTrafficIncrease, Attempts: 3, Message: "gate closed", LastAttempt: at(5 * time.Second)},
				{Name: "incident", Type: meshv1.WebhookRollback, Attempts: 4, Message: "no incident open", LastAttempt: at(5 * time.Second)},
			},
			Conditions: []metav1.Condition{
				cond(meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonProgressing, "Routing 30% of the traffic to the canary", 95*time.Second),
				cond(meshv1.ConditionReconciling, metav1.ConditionTrue, meshv1.ReasonProgressing, "Rollout of revision 7f9c2d1e4b5a in progress", 95*time.Second),
			},
		}
	case "paused":
		*st = *fixtureCanary("progressing").Status.DeepCopy()
		st.Paused = true
		st.Gates, st.Checks, st.Conditions = nil, nil, nil
	case "abtesting":
		c.Spec.Analysis.StepWeight = nil
		c.Spec.Analysis.Iterations = ptr.To[int32](5)
		c.Spec.Analysis.Match = []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{"x-canary": {Exact: ptr.To("insider")}}}}
		*st = meshv1.CanaryStatus{
			ObservedGeneration: 1, Phase: meshv1.PhaseProgressing, StepIndex: 3, Iterations: 2,
			CurrentRevision: "7f9c2d1e4b5a", LastPromotedRevision: "1a2b3c4d5e6f",
			Checks: []meshv1.CheckStatus{
				{Name: "request-success-rate", Outcome: meshv1.OutcomeNoData, Message: "no requests in 1m", LastMeasured: at(3 * time.Second), HoldingSince: at(63 * time.Second)},
			},
		}
	case "failed":
		*st = meshv1.CanaryStatus{
			ObservedGeneration: 1, Phase: meshv1.PhaseFailed, FailedChecks: 3,
			CurrentRevision: "7f9c2d1e4b5a", LastPromotedRevision: "1a2b3c4d5e6f", LastFailedRevision: "7f9c2d1e4b5a",
			Conditions: []metav1.Condition{
				cond(meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonRolledBack, "Revision 7f9c2d1e4b5a was rolled back after 3 failed checks; request retry to roll it out again", 10*time.Minute),
				cond(meshv1.ConditionPromoted, metav1.ConditionFalse, meshv1.ReasonRolledBack, "Revision 7f9c2d1e4b5a was rolled back after 3 failed checks", 10*time.Minute),
			},
		}
	case "succeeded":
		*st = meshv1.CanaryStatus{
			ObservedGeneration: 1, Phase: meshv1.PhaseSucceeded,
			CurrentRevision: "7f9c2d1e4b5a", LastPromotedRevision: "7f9c2d1e4b5a",
			Conditions: []metav1.Condition{
				cond(meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonSucceeded, "Revision 7f9c2d1e4b5a promoted", 2*time.Hour),
			},
		}
	case "deletionblocked":
		c.DeletionTimestamp = at(time.Minute)
		msg := "Deletion waits: Deployment reviews carries revision 7f9c2d1e4b5a (image reviews:v2), which was not promoted"
		*st = meshv1.CanaryStatus{
			ObservedGeneration: 1, Phase: meshv1.PhaseTerminating,
			CurrentRevision: "7f9c2d1e4b5a", LastPromotedRevision: "1a2b3c4d5e6f",
			Conditions: []metav1.Condition{
				cond(meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonDeletionBlocked, msg, time.Minute),
			},
		}
	case "new":
		*st = meshv1.CanaryStatus{}
		c.CreationTimestamp = *at(4 * time.Second)
	default:
		panic("no fixture " + state)
	}
	return c
}

// fixtureEvents are events of c, newest last, and one of an older Canary of the same name.
func fixtureEvents(c *meshv1.Canary) []eventsv1.Event {
	ev := func(name, typ, reason, note string, ago time.Duration, uid string) eventsv1.Event {
		return eventsv1.Event{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace},
			EventTime:  metav1.NewMicroTime(fixedNow.Add(-ago)),
			Type:       typ, Reason: reason, Note: note,
		}
	}
	return []eventsv1.Event{
		ev("e3", "Normal", meshv1.ReasonWeightIncreased, "Routing 30% of the traffic to the canary", 15*time.Second, ""),
		ev("e1", "Normal", meshv1.ReasonNewRevision, "New revision 7f9c2d1e4b5a: starting the rollout", 2*time.Minute, ""),
		ev("e2", "Warning", meshv1.ReasonCheckFailed, "request-duration 612 outside <= 500", 45*time.Second, ""),
	}
}

func fixtureCondition(typ, reason, msg string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: reason, Message: msg, ObservedGeneration: 1, LastTransitionTime: *at(time.Minute)}
}
