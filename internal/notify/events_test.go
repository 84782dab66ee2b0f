package notify

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func at(d time.Duration) *metav1.Time { t := metav1.NewTime(t0.Add(d)); return &t }

func TestEventsFromTransitions(t *testing.T) {
	progressing := meshv1.CanaryStatus{Phase: meshv1.PhaseProgressing, CanaryWeight: 10, RolloutStarted: at(0), CurrentRevision: "abc"}
	with := func(st meshv1.CanaryStatus, f func(*meshv1.CanaryStatus)) meshv1.CanaryStatus { f(&st); return st }
	for _, tc := range []struct {
		name          string
		before, after meshv1.CanaryStatus
		want          []Kind
	}{
		{"nothing changed", progressing, progressing, nil},
		{"started", meshv1.CanaryStatus{Phase: meshv1.PhaseSucceeded, RolloutStarted: at(-time.Hour)}, progressing, []Kind{Started}},
		{"started behind a gate", meshv1.CanaryStatus{Phase: meshv1.PhaseInitialized},
			with(progressing, func(s *meshv1.CanaryStatus) { s.Phase = meshv1.PhaseWaiting }), []Kind{Started, Paused}},
		{"step", progressing, with(progressing, func(s *meshv1.CanaryStatus) { s.CanaryWeight = 20 }), []Kind{Step}},
		{"A/B iteration", progressing, with(progressing, func(s *meshv1.CanaryStatus) { s.Iterations = 1 }), []Kind{Step}},
		{"paused", progressing, with(progressing, func(s *meshv1.CanaryStatus) { s.Paused = true }), []Kind{Paused}},
		{"still paused", with(progressing, func(s *meshv1.CanaryStatus) { s.Paused = true }),
			with(progressing, func(s *meshv1.CanaryStatus) { s.Paused = true; s.LastStepTime = at(time.Minute) }), nil},
		{"promoting is not yet promoted", progressing, with(progressing, func(s *meshv1.CanaryStatus) { s.Phase = meshv1.PhasePromoting }), nil},
		{"promoted", with(progressing, func(s *meshv1.CanaryStatus) { s.Phase = meshv1.PhaseFinalising }),
			with(progressing, func(s *meshv1.CanaryStatus) { s.Phase = meshv1.PhaseSucceeded }), []Kind{Promoted}},
		{"rolling back", progressing, with(progressing, func(s *meshv1.CanaryStatus) { s.Phase = meshv1.PhaseRollingBack }), []Kind{RolledBack}},
		{"failed", with(progressing, func(s *meshv1.CanaryStatus) { s.Phase = meshv1.PhaseRollingBack }),
			with(progressing, func(s *meshv1.CanaryStatus) { s.Phase = meshv1.PhaseFailed }), []Kind{Failed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &meshv1.Canary{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "reviews"}, Status: tc.after}
			var got []Kind
			for _, e := range Events(&tc.before, c) {
				got = append(got, e.Kind)
				if e.Namespace != "shop" || e.Name != "reviews" || e.Revision != "abc" {
					t.Errorf("event %+v does not name the Canary and its revision", e)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("events %v, want %v", got, tc.want)
			}
		})
	}
}
