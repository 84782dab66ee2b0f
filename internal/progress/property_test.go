package progress

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// The properties hold for any spec and any sequence of observations, however unlikely:
// the routing is always a split of 100, nothing is skipped or repeated, Step is idempotent,
// uses only what Plan asked for, and never passes a closed gate.

func TestPropertiesOfRandomRollouts(t *testing.T) {
	seeds := 100
	if testing.Short() {
		seeds = 20
	}
	for seed := range uint64(seeds) {
		checkRandomRollout(t, seed, 300)
	}
}

func FuzzRollouts(f *testing.F) {
	for _, seed := range []uint64{0, 1, 42, 1 << 40} {
		f.Add(seed, uint16(200))
	}
	f.Fuzz(func(t *testing.T, seed uint64, steps uint16) {
		checkRandomRollout(t, seed, int(steps%1000))
	})
}

func checkRandomRollout(t *testing.T, seed uint64, steps int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	spec := randomSpec(rng)
	var st meshv1.CanaryStatus
	now := t0
	target, request := "v1", ""
	var trace []string

	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d, step %d: %s\nspec: %+v\n%s", seed, len(trace), fmt.Sprintf(format, args...), spec.Analysis, strings.Join(trace, "\n"))
	}
	for range steps {
		now = now.Add(randomDelay(rng, specView{&spec}.interval()))
		if rng.IntN(20) == 0 {
			target = fmt.Sprintf("v%d", 1+rng.IntN(4))
		}
		if rng.IntN(15) == 0 {
			request = randomRequest(rng)
		}
		if rng.IntN(30) == 0 {
			spec.Suspend = !spec.Suspend
		}
		obs := Observation{
			TargetRevision:  target,
			PrimaryReady:    rng.IntN(10) < 7,
			PrimaryRevision: pick(rng, target, st.CurrentRevision, st.LastPromotedRevision, "v1"),
			CanaryReady:     rng.IntN(10) < 7,
			Request:         request,
		}
		if rng.IntN(10) == 0 {
			obs.RoutingHeld = "MeshPolicy/p spec.routes[0].port: not the Canary's"
		}
		needs := Plan(&spec, &st, obs, now)
		full := randomResults(rng, &spec, obs, needs)
		d := Step(&spec, st, full, now)
		trace = append(trace, fmt.Sprintf("%s %-12s w=%-3d step=%d it=%d failed=%d obs=%+v needs=%+v -> %s w=%d requeue=%s events=%v",
			now.Sub(t0), st.Phase, st.CanaryWeight, st.StepIndex, st.Iterations, st.FailedChecks,
			Observation{TargetRevision: obs.TargetRevision, CanaryReady: obs.CanaryReady, PrimaryReady: obs.PrimaryReady, PrimaryRevision: obs.PrimaryRevision, Request: obs.Request, RoutingHeld: obs.RoutingHeld},
			needs, d.Status.Phase, d.Status.CanaryWeight, d.RequeueAfter, eventReasons(d.Events)))

		if err := invariants(&spec, st, d); err != nil {
			fail("%v", err)
		}
		stored := persisted(d.Status)
		if again := Step(&spec, stored, full, now); !sameDecision(d, again) || len(again.Events) > 0 || len(again.Notify) > 0 {
			fail("not idempotent:\nfirst: %s\nagain: %s", dump(d), dump(again))
		}
		if extra := Step(&spec, st, unasked(&spec, full, needs), now); !sameDecision(d, extra) {
			fail("used results Plan did not ask for:\nplanned: %s\nmore: %s", dump(d), dump(extra))
		}
		if err := gatesHonoured(&spec, st, full, d); err != nil {
			fail("%v", err)
		}
		if r := d.Routing; obs.RoutingHeld != "" && (r.CanaryWeight != 0 || r.Match || r.Mirror) {
			fail("routing %+v while the canary may get no traffic", r)
		}
		if obs.RoutingHeld != "" && st.Phase == meshv1.PhaseProgressing && d.Status.Phase == meshv1.PhaseProgressing &&
			d.Status.CurrentRevision == st.CurrentRevision && d.Status.StepIndex > st.StepIndex {
			fail("step %d -> %d while the routing is held", st.StepIndex, d.Status.StepIndex)
		}
		if rng.IntN(20) == 0 {
			continue // the operator dies before the status write
		}
		st = stored
	}
}

// gatesHonoured checks that traffic increased, or a promotion began, only through open gates.
func gatesHonoured(spec *meshv1.CanarySpec, before meshv1.CanaryStatus, obs Observation, d Decision) error {
	s := specView{spec}
	open := func(t meshv1.WebhookType) bool {
		for _, h := range s.hooks(t) {
			if g := findGate(obs.Gates, h.Name, t); g == nil || !g.Open {
				return false
			}
		}
		return true
	}
	after := d.Status
	sameRollout := after.CurrentRevision == before.CurrentRevision && after.RolloutStarted.Equal(before.RolloutStarted)
	if sameRollout && before.Phase == meshv1.PhaseProgressing && after.Phase == meshv1.PhaseProgressing &&
		after.CanaryWeight > before.CanaryWeight && !open(meshv1.WebhookConfirmTrafficIncrease) {
		return fmt.Errorf("weight %d -> %d through a closed confirm-traffic-increase gate", before.CanaryWeight, after.CanaryWeight)
	}
	manual := strings.HasPrefix(obs.Request, ActionPromote) && obs.Request != before.LastHandledRequest
	if sameRollout && before.Phase == meshv1.PhaseProgressing && after.Phase == meshv1.PhasePromoting && !manual && !open(meshv1.WebhookConfirmPromotion) {
		return fmt.Errorf("promoted through a closed confirm-promotion gate")
	}
	if before.Phase == meshv1.PhaseWaiting && after.Phase == meshv1.PhaseProgressing && sameRollout && !open(meshv1.WebhookConfirmRollout) {
		return fmt.Errorf("rolled out through a closed confirm-rollout gate")
	}
	return nil
}

func randomSpec(rng *rand.Rand) meshv1.CanarySpec {
	spec := meshv1.CanarySpec{TargetRef: meshv1.TargetRef{Name: "app"}, Service: meshv1.CanaryService{Port: 80}}
	a := &spec.Analysis
	a.Interval = meshv1.Duration(pick(rng, "1s", "10s", "1m", "5m", ""))
	a.Threshold = int32(rng.IntN(5)) // 0 takes the default
	a.MaxWeight = int32(rng.IntN(101))
	top := specView{&spec}.maxWeight()
	switch rng.IntN(5) {
	case 4:
		a.Steps = randomSteps(rng)
	case 0:
		a.StepWeight = ptr(int32(1 + rng.IntN(int(top))))
	case 1:
		for w := int32(0); w < top; {
			w = min(w+int32(1+rng.IntN(40)), top)
			a.StepWeights = append(a.StepWeights, w)
		}
	case 2:
		a.Iterations = ptr(int32(1 + rng.IntN(5)))
		a.Match = []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{"x-canary": {Exact: ptr("1")}}}}
	default:
		a.Iterations = ptr(int32(1 + rng.IntN(5)))
	}
	if rng.IntN(3) == 0 {
		a.StepWeightPromotion = ptr(int32(1 + rng.IntN(100)))
	}
	if rng.IntN(4) == 0 && len(a.Steps) == 0 {
		a.Mirror = true
		if rng.IntN(2) == 0 {
			a.MirrorWeight = ptr(int32(1 + rng.IntN(100)))
		}
	}
	spec.SkipAnalysis = rng.IntN(10) == 0
	if rng.IntN(2) == 0 {
		spec.ProgressDeadlineSeconds = ptr(int32(10 + rng.IntN(600)))
	}
	for i := range rng.IntN(3) {
		m := meshv1.CanaryMetric{Name: fmt.Sprintf("m%d", i), HoldTimeout: meshv1.Duration(pick(rng, "", "30s", "5m"))}
		if rng.IntN(3) == 0 {
			m.OnError = meshv1.OnErrorFail
		}
		switch rng.IntN(6) {
		case 0:
			m.FailureLimit = ptr(int32(rng.IntN(3)))
		case 1:
			m.ConsecutiveErrorLimit = ptr(int32(rng.IntN(3)))
		case 2:
			m.InconclusiveLimit = ptr(int32(rng.IntN(3)))
		case 3:
			m.DryRun = true
		default:
		}
		a.Metrics = append(a.Metrics, m)
	}
	for i, t := range []meshv1.WebhookType{
		meshv1.WebhookConfirmRollout, meshv1.WebhookPreRollout, meshv1.WebhookRollout, meshv1.WebhookConfirmTrafficIncrease,
		meshv1.WebhookConfirmPromotion, meshv1.WebhookPostRollout, meshv1.WebhookRollback, meshv1.WebhookEvent,
	} {
		for j := range rng.IntN(3) / 2 * (1 + rng.IntN(2)) {
			a.Webhooks = append(a.Webhooks, meshv1.CanaryWebhook{Name: fmt.Sprintf("h%d-%d", i, j), Type: t, URL: "http://hook"})
		}
	}
	return spec
}

func randomDelay(rng *rand.Rand, interval time.Duration) time.Duration {
	switch rng.IntN(10) {
	case 0:
		return 0
	case 1:
		return 20 * time.Minute
	case 2, 3:
		return time.Second
	default:
		return time.Duration(rng.Int64N(int64(2*interval))) + time.Duration(rng.IntN(1000))*time.Millisecond
	}
}

func randomRequest(rng *rand.Rand) string {
	req := pick(rng, ActionPromote, ActionAbort, ActionPause, ActionResume, ActionRetry, "bogus", "")
	if req != "" && rng.IntN(2) == 0 {
		req += fmt.Sprintf(":%d", rng.IntN(1000))
	}
	return req
}

func randomResults(rng *rand.Rand, spec *meshv1.CanarySpec, obs Observation, needs Needs) Observation {
	outcome := func() meshv1.CheckOutcome {
		if rng.IntN(10) < 7 {
			return meshv1.OutcomePass
		}
		return pick(rng, meshv1.OutcomeFail, meshv1.OutcomeNoData, meshv1.OutcomeUnreachable, meshv1.OutcomeTooFewRequests, meshv1.OutcomeInconclusive)
	}
	if needs.RunChecks || len(needs.Hooks) > 0 {
		obs.Checks = []meshv1.CheckStatus{}
	}
	if needs.RunChecks {
		for _, m := range spec.Analysis.Metrics {
			if rng.IntN(20) > 0 { // sometimes a result goes missing
				obs.Checks = append(obs.Checks, meshv1.CheckStatus{Name: m.Name, Outcome: outcome(), Value: "1", Threshold: ">= 1"})
			}
		}
	}
	for _, h := range spec.Analysis.Webhooks {
		if slices.Contains(needs.Hooks, h.Type) {
			obs.Checks = append(obs.Checks, meshv1.CheckStatus{Name: h.Name, Outcome: outcome()})
		}
		if slices.Contains(needs.Gates, h.Type) && rng.IntN(10) > 0 {
			obs.Gates = append(obs.Gates, meshv1.GateStatus{Name: h.Name, Type: h.Type, Open: rng.IntN(2) == 0})
		}
	}
	return obs
}

func pick[T any](rng *rand.Rand, vs ...T) T { return vs[rng.IntN(len(vs))] }

func eventReasons(es []Event) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.Reason)
	}
	return out
}

// randomSteps is 1 to 8 explicit steps of any kind.
func randomSteps(rng *rand.Rand) []meshv1.CanaryStep {
	match := []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{"x-canary": {Exact: ptr("1")}}}}
	var out []meshv1.CanaryStep
	for range 1 + rng.IntN(8) {
		var s meshv1.CanaryStep
		switch rng.IntN(9) {
		case 0, 1:
			s.SetWeight = ptr(int32(rng.IntN(101)))
		case 2:
			s.Pause = &meshv1.StepPause{Duration: meshv1.Duration(pick(rng, "1s", "30s", "10m"))}
		case 3:
			s.Pause = &meshv1.StepPause{}
		case 4:
			s.Analysis = &meshv1.StepAnalysis{Intervals: int32(1 + rng.IntN(3))}
		case 5:
			s.SetHeaderRoute = &meshv1.StepHeaderRoute{}
			if rng.IntN(3) > 0 {
				s.SetHeaderRoute.Match = match
			}
		case 6:
			s.SetMirrorRoute = &meshv1.StepMirrorRoute{Percent: ptr(int32(rng.IntN(101)))}
			if rng.IntN(2) == 0 {
				s.SetMirrorRoute.Match = match
			}
		case 7:
			s.SetCanaryScale = &meshv1.StepCanaryScale{Replicas: ptr(int32(1 + rng.IntN(5)))}
		default:
			s.SetCanaryScale = &meshv1.StepCanaryScale{MatchTrafficWeight: true}
		}
		out = append(out, s)
	}
	return out
}
