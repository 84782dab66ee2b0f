package progress

import (
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

func TestPlanAsksForWhatIsDue(t *testing.T) {
	now := t0.Add(time.Hour)
	at := func(d time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(-d)); return &t }
	spec := weightedSpec()
	for _, h := range []meshv1.WebhookType{
		meshv1.WebhookConfirmRollout, meshv1.WebhookPreRollout, meshv1.WebhookRollout,
		meshv1.WebhookConfirmTrafficIncrease, meshv1.WebhookConfirmPromotion, meshv1.WebhookPostRollout,
	} {
		spec = withWebhook(spec, string(h), h)
	}
	progressing := func(step, weight int32, sinceStep time.Duration) meshv1.CanaryStatus {
		return meshv1.CanaryStatus{
			Phase: meshv1.PhaseProgressing, CurrentRevision: "v2", LastPromotedRevision: "v1",
			StepIndex: step, CanaryWeight: weight, RolloutStarted: at(time.Hour), LastStepTime: at(sinceStep),
		}
	}
	ready := Observation{TargetRevision: "v2", CanaryReady: true, PrimaryReady: true, PrimaryRevision: "v1"}

	for _, tc := range []struct {
		name string
		st   meshv1.CanaryStatus
		obs  Observation
		mod  func(*meshv1.CanarySpec)
		want Needs
	}{
		{
			name: "nothing while idle",
			st:   meshv1.CanaryStatus{Phase: meshv1.PhaseSucceeded, CurrentRevision: "v1", LastPromotedRevision: "v1"},
			obs:  Observation{TargetRevision: "v1", PrimaryReady: true, PrimaryRevision: "v1"},
		},
		{
			name: "a new revision needs the confirm-rollout gate at once",
			st:   meshv1.CanaryStatus{Phase: meshv1.PhaseSucceeded, CurrentRevision: "v1", LastPromotedRevision: "v1"},
			obs:  Observation{TargetRevision: "v2", PrimaryReady: true, PrimaryRevision: "v1"},
			want: Needs{Gates: []meshv1.WebhookType{meshv1.WebhookConfirmRollout}},
		},
		{
			name: "a closed confirm-rollout gate is asked again an interval later",
			st: meshv1.CanaryStatus{Phase: meshv1.PhaseWaiting, CurrentRevision: "v2", LastPromotedRevision: "v1",
				Gates: []meshv1.GateStatus{{Name: "confirm-rollout", Type: meshv1.WebhookConfirmRollout, Attempts: 1, LastAttempt: at(30 * time.Second)}}},
			obs: Observation{TargetRevision: "v2"},
		},
		{
			name: "nothing before the canary is ready",
			st:   progressing(0, 0, time.Minute),
			obs:  Observation{TargetRevision: "v2", PrimaryReady: true, PrimaryRevision: "v1"},
		},
		{
			name: "the first step runs the pre-rollout webhooks and asks for more traffic",
			st:   progressing(0, 0, time.Minute),
			obs:  ready,
			want: Needs{Hooks: []meshv1.WebhookType{meshv1.WebhookPreRollout}, Gates: []meshv1.WebhookType{meshv1.WebhookConfirmTrafficIncrease}},
		},
		{
			name: "nothing within the interval",
			st:   progressing(2, 20, 30*time.Second),
			obs:  ready,
		},
		{
			name: "checks, rollout webhooks and the traffic gate when the interval is over",
			st:   progressing(2, 20, time.Minute),
			obs:  ready,
			want: Needs{RunChecks: true, Hooks: []meshv1.WebhookType{meshv1.WebhookRollout}, Gates: []meshv1.WebhookType{meshv1.WebhookConfirmTrafficIncrease}},
		},
		{
			name: "the promotion gate at the maximum weight",
			st:   progressing(5, 50, time.Minute),
			obs:  ready,
			want: Needs{RunChecks: true, Hooks: []meshv1.WebhookType{meshv1.WebhookRollout}, Gates: []meshv1.WebhookType{meshv1.WebhookConfirmPromotion}},
		},
		{
			name: "nothing while paused",
			st:   func() meshv1.CanaryStatus { s := progressing(2, 20, time.Hour); s.Paused = true; return s }(),
			obs:  ready,
		},
		{
			name: "nothing while suspended",
			st:   progressing(2, 20, time.Hour),
			obs:  ready,
			mod:  func(s *meshv1.CanarySpec) { s.Suspend = true },
		},
		{
			name: "only the promotion gate when the analysis is skipped",
			st:   progressing(0, 0, time.Minute),
			obs:  ready,
			mod:  func(s *meshv1.CanarySpec) { s.SkipAnalysis = true },
			want: Needs{Gates: []meshv1.WebhookType{meshv1.WebhookConfirmPromotion}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := *spec.DeepCopy()
			if tc.mod != nil {
				tc.mod(&spec)
			}
			st := tc.st.DeepCopy()
			got := Plan(&spec, st, tc.obs, now)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Plan = %+v, want %+v", got, tc.want)
			}
			if !reflect.DeepEqual(*st, tc.st) {
				t.Fatal("Plan changed the status it was given")
			}
		})
	}
}
