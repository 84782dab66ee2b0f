package progress

import (
	"testing"
	"time"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// The harness, for the external tests of this package (desired_test.go), which may import
// what imports progress.

// Story is a rollout told by the harness on its fake clock.
type Story struct{ r *rollout }

// NewStory creates the Canary of spec for a target at revision v1 and lets it initialize;
// onStep sees every reconcile from the first: the time, the status it started from, the
// observation and the decision.
func NewStory(t *testing.T, spec meshv1.CanarySpec, onStep func(now time.Time, before meshv1.CanaryStatus, obs Observation, d Decision)) *Story {
	t.Helper()
	return &Story{newObservedRollout(t, spec, onStep)}
}

// Deploy changes the target's template to revision rev.
func (s *Story) Deploy(rev string) { s.r.t.Helper(); s.r.deploy(rev) }

// Ask sets the request annotation.
func (s *Story) Ask(req string) { s.r.t.Helper(); s.r.ask(req) }

// FailChecks makes every metric measure value, outside its range.
func (s *Story) FailChecks(value string) { s.r.metric = failingWith(value) }

// WaitForPhase reconciles as the controller would until the Canary is in phase p.
func (s *Story) WaitForPhase(p meshv1.CanaryPhase, limit time.Duration) {
	s.r.t.Helper()
	s.r.waitForPhase(p, limit)
}

// Wait lets d pass, reconciling whenever the controller would.
func (s *Story) Wait(d time.Duration) { s.r.t.Helper(); s.r.wait(d) }

// WeightedSpec is a canary moving 10% a minute up to 50%; IterationsSpec a blue/green one
// of n iterations.
// StepsSpec is a rollout spelled out with every kind of explicit step.
func StepsSpec() meshv1.CanarySpec { return stepsSpec() }

func WeightedSpec() meshv1.CanarySpec          { return weightedSpec() }
func IterationsSpec(n int32) meshv1.CanarySpec { return iterationsSpec(n) }
