package restarts

import (
	"fmt"
	"sync"
	"testing"

	"k8s.io/utils/ptr"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/hooks"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/e2e/fixture"
)

// iterations is how many analyses the strategies without weights (A/B testing, blue/green)
// run before they promote.
const iterations = 2

// strategy is a way to deliver the new revision, with the routing a promotion goes
// through: the target serves while the primary starts, then the primary alone, then what
// the strategy gives the canary, then the primary alone again.
type strategy struct {
	name   string
	change func(*meshv1.Canary)
	routes []string
}

var (
	// A/B testing: the requests with the header go to the canary for every iteration and
	// while it is promoted; the others stay on the primary.
	abTesting = strategy{
		name: "A/B testing",
		change: func(c *meshv1.Canary) {
			iterationsOnly(c)
			c.Spec.Analysis.Match = []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{"x-canary": {Exact: ptr.To("insider")}}}}
		},
		routes: []string{"100%", "0%", "0% +match", "0%"},
	}
	// Blue/green: the canary is analysed without traffic, gets all of it while the primary
	// rolls to the promoted revision, and hands it back.
	blueGreen = strategy{
		name:   "blue/green",
		change: iterationsOnly,
		routes: []string{"100%", "0%", "100%", "0%"},
	}
	// Blue/green with mirroring: the canary sees a copy of the traffic while it is analysed.
	mirroring = strategy{
		name: "blue/green with mirroring",
		change: func(c *meshv1.Canary) {
			iterationsOnly(c)
			c.Spec.Analysis.Mirror = true
			c.Spec.Analysis.MirrorWeight = ptr.To[int32](50)
		},
		routes: []string{"100%", "0%", "0% +mirror 50%", "100%", "0%"},
	}
)

func iterationsOnly(c *meshv1.Canary) {
	a := &c.Spec.Analysis
	a.StepWeight, a.MaxWeight = nil, 0
	a.Iterations = ptr.To[int32](iterations)
}

// promoteKilledWith is promoteKilled for a strategy: the rollout of v2 finishes promoted
// through the strategy's routing and phases, every step announced once.
func promoteKilledWith(t *testing.T, s strategy, arm func(b *bed) <-chan struct{}) {
	t.Helper()
	b := newBed(t, 2, false, s.change)
	b.rec.stepWeight = 0
	b.start()
	b.waitPhase(meshv1.PhaseInitialized)
	fired := arm(b)
	fixture.SetImage(t, env.Client, b.ns, name, "bookinfo/reviews:v2")
	killed := b.killAndRestart(fired)
	t.Logf("killed at %s/%d (iteration %d)", killed.Status.Phase, killed.Status.StepIndex, killed.Status.Iterations)

	c := b.waitPhase(meshv1.PhaseSucceeded)
	b.rec.checkRoutes(t, s.routes)
	b.rec.checkSteps(t, promotedPhases)
	checkEventsOnce(t, b.ns, name, meshv1.ReasonProgressing, meshv1.ReasonCheckPassed, meshv1.ReasonPromoting, meshv1.ReasonPromoted, meshv1.ReasonSucceeded)
	if c.Status.Iterations != iterations {
		t.Errorf("promoted after %d iterations, want %d", c.Status.Iterations, iterations)
	}
	if image, _ := deploymentImage(t, b.ns, render.PrimaryName(name)); image != "bookinfo/reviews:v2" || c.Status.LastPromotedRevision != c.Status.CurrentRevision {
		t.Errorf("primary on %q, last promoted %q, current %q", image, c.Status.LastPromotedRevision, c.Status.CurrentRevision)
	}
}

// A/B testing and blue/green rollouts whose operator is killed at each phase (right after
// each iteration's status, in the middle of an analysis, while promoting and finalising)
// finish as if nothing had happened, as the weighted ones do
// (TestKilledAtEachPhaseOfAPromotion).
func TestKilledAtEachPhaseOfAnIterationsRollout(t *testing.T) {
	for _, s := range []strategy{abTesting, blueGreen} {
		for k := int32(1); k <= iterations; k++ {
			t.Run(fmt.Sprintf("%s, right after the status shows step %d", s.name, k), func(t *testing.T) {
				t.Parallel()
				promoteKilledWith(t, s, func(b *bed) <-chan struct{} {
					return b.rec.whenStatus(func(st meshv1.CanaryStatus) bool {
						return st.Phase == meshv1.PhaseProgressing && st.StepIndex == k
					})
				})
			})
		}
		t.Run(s.name+", during the first analysis, before the webhook answers", func(t *testing.T) {
			t.Parallel()
			promoteKilledWith(t, s, killDuringFirstAnalysis)
		})
		for _, p := range []meshv1.CanaryPhase{meshv1.PhasePromoting, meshv1.PhaseFinalising} {
			t.Run(s.name+", right after the status shows "+string(p), func(t *testing.T) {
				t.Parallel()
				promoteKilledWith(t, s, func(b *bed) <-chan struct{} { return b.rec.whenPhase(p) })
			})
		}
	}
}

// A mirroring rollout killed while the canary gets a copy of the traffic finishes as if
// nothing had happened.
func TestKilledWhileMirroring(t *testing.T) {
	t.Parallel()
	promoteKilledWith(t, mirroring, killDuringFirstAnalysis)
}

// killDuringFirstAnalysis kills the operator while its first rollout webhook call of the
// new revision is in flight.
func killDuringFirstAnalysis(b *bed) <-chan struct{} {
	fired := make(chan struct{})
	var once sync.Once
	b.hooks.onCall(func(p hooks.Payload) {
		if p.Type == meshv1.WebhookRollout && p.Phase == meshv1.PhaseProgressing {
			once.Do(func() {
				if err := b.op.proc.Kill(); err != nil {
					b.t.Errorf("operator: %v", err)
				}
				close(fired)
			})
		}
	})
	return fired
}
