package progress

import (
	"time"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// Defaults, as the CRD declares them. They are applied again here because a status written
// by an older CRD, or a spec built in a test, may lack them.
const (
	defaultInterval         = time.Minute
	minInterval             = time.Second
	defaultThreshold        = 5
	defaultMaxWeight        = 50
	defaultMirrorWeight     = 100
	defaultProgressDeadline = 600 * time.Second
	defaultHoldTimeout      = 10 * time.Minute

	// poll is how soon a reconcile comes back for what only a reconcile brings: a gate or a
	// check that this reconcile could not foresee it needs.
	minPoll = time.Second
	maxPoll = 10 * time.Second
	// resync bounds a wait for a Deployment to become ready. Readiness arrives through the
	// watches on the target and the primary, which bring the Canary back at once; this
	// timer is only a safety net, and it stays coarse because a Canary waiting for a
	// Deployment is the common case at scale: a 1 s poll made a thousand waiting Canaries
	// cost a thousand reconciles a second (docs/scaling.md).
	resync = time.Minute
	// maxDrain bounds how long the canary keeps running after traffic left it, so that the
	// mesh's new routes reach every proxy and requests in flight finish.
	maxDrain = 10 * time.Second
)

type strategy int

const (
	weighted  strategy = iota // stepWeight or stepWeights
	abTesting                 // iterations with match
	blueGreen                 // iterations alone
	stepped                   // spec.analysis.steps
)

// specView reads a CanarySpec with its defaults applied.
type specView struct{ *meshv1.CanarySpec }

func (s specView) strategy() strategy {
	a := s.Analysis
	switch {
	case len(a.Steps) > 0:
		return stepped
	case a.StepWeight != nil || len(a.StepWeights) > 0:
		return weighted
	case len(a.Match) > 0:
		return abTesting
	default:
		// Iterations alone; a spec with none of the three is invalid (the CRD rejects it)
		// and is treated as blue/green with one iteration rather than left stuck.
		return blueGreen
	}
}

func (s specView) interval() time.Duration {
	return parseDuration(s.Analysis.Interval, defaultInterval, minInterval)
}

// poll is how soon to look again for a result this reconcile could not ask for.
func (s specView) poll() time.Duration {
	return min(max(s.interval()/10, minPoll), maxPoll)
}

// drain is how long the canary keeps running after traffic was routed away from it.
func (s specView) drain() time.Duration {
	return min(s.interval(), maxDrain)
}

func (s specView) deadline() time.Duration {
	if p := s.ProgressDeadlineSeconds; p != nil && *p > 0 {
		return time.Duration(*p) * time.Second
	}
	return defaultProgressDeadline
}

func (s specView) threshold() int32 {
	if t := s.Analysis.Threshold; t > 0 {
		return t
	}
	return defaultThreshold
}

func (s specView) maxWeight() int32 {
	if w := s.Analysis.MaxWeight; w > 0 {
		return min(w, 100)
	}
	return defaultMaxWeight
}

func (s specView) iterations() int32 {
	if i := s.Analysis.Iterations; i != nil && *i > 0 {
		return *i
	}
	return 1
}

func (s specView) mirrorWeight() int32 {
	if w := s.Analysis.MirrorWeight; w != nil && *w > 0 {
		return min(*w, 100)
	}
	return defaultMirrorWeight
}

// promotionStep is the weight moved from the canary to the promoted primary each interval;
// 0 moves all of it at once.
func (s specView) promotionStep() int32 {
	if p := s.Analysis.StepWeightPromotion; p != nil && *p > 0 {
		return min(*p, 100)
	}
	return 0
}

// nextWeight is the canary weight after the step that follows weight w.
func (s specView) nextWeight(w int32) int32 {
	top := s.maxWeight()
	if ws := s.Analysis.StepWeights; len(ws) > 0 {
		for _, next := range ws {
			if next > w {
				return min(next, top)
			}
		}
		return max(w, top)
	}
	step := int32(1)
	if s.Analysis.StepWeight != nil && *s.Analysis.StepWeight > 0 {
		step = *s.Analysis.StepWeight
	}
	return max(min(w+step, top), w)
}

// hooks are the spec's webhooks of type t.
func (s specView) hooks(t meshv1.WebhookType) []meshv1.CanaryWebhook {
	var out []meshv1.CanaryWebhook
	for _, h := range s.Analysis.Webhooks {
		if h.Type == t {
			out = append(out, h)
		}
	}
	return out
}

func (s specView) hasHooks(t meshv1.WebhookType) bool { return len(s.hooks(t)) > 0 }

// expectedCheck is one result the analysis of a step waits for.
type expectedCheck struct {
	name        string
	hold        bool // onError=hold: a non-Pass outcome waits instead of failing
	holdTimeout time.Duration
	// dryRun: measured and recorded, never decides.
	dryRun bool
	// The check's own limits (nil: none): more failures, errors in a row or inconclusive
	// outcomes than these roll back (or, inconclusive, pause) at once.
	failureLimit, errorLimit, inconclusiveLimit *int32
}

// startChecks are judged before the canary gets any traffic: the pre-rollout webhooks.
func (s specView) startChecks() []expectedCheck {
	hooks := s.hooks(meshv1.WebhookPreRollout)
	out := make([]expectedCheck, 0, len(hooks))
	for _, h := range hooks {
		out = append(out, expectedCheck{name: h.Name})
	}
	return out
}

// stepChecks are judged at every later step: the rollout webhooks, then the metrics.
func (s specView) stepChecks() []expectedCheck {
	hooks := s.hooks(meshv1.WebhookRollout)
	out := make([]expectedCheck, 0, len(hooks)+len(s.Analysis.Metrics))
	for _, h := range hooks {
		out = append(out, expectedCheck{name: h.Name})
	}
	for _, m := range s.Analysis.Metrics {
		out = append(out, expectedCheck{
			name:              m.Name,
			hold:              m.OnError != meshv1.OnErrorFail,
			holdTimeout:       parseDuration(m.HoldTimeout, defaultHoldTimeout, 0),
			dryRun:            m.DryRun,
			failureLimit:      m.FailureLimit,
			errorLimit:        m.ConsecutiveErrorLimit,
			inconclusiveLimit: m.InconclusiveLimit,
		})
	}
	return out
}

func parseDuration(d meshv1.Duration, def, least time.Duration) time.Duration {
	if d == "" {
		return def
	}
	v, err := time.ParseDuration(string(d))
	if err != nil || v <= 0 {
		return def
	}
	return max(v, least)
}
