package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/meshsim"
	"canopy.dev/canopy/test/testenv"
)

// TestAnalysis plays the rollouts of issue 4 end to end with the real pieces: the operator's
// Prometheus analyzer and webhook client, a real Prometheus scraping the mesh simulator,
// which routes its traffic by what istiod makes of the operator's VirtualServices and
// answers as each revision's annotations declare. Each scenario has its own namespace and runs in parallel
// with the others. The outage scenario stops its Prometheus, so it has its own, and its own
// operator (watching only its namespaces) pointed at it.
func TestAnalysis(t *testing.T) {
	testenv.SkipIfShort(t)
	scenarios := []struct {
		name   string
		outage bool // queries the Prometheus that gets stopped
		run    func(t *testing.T, b *analysisBed, ns []string)
	}{
		{name: "healthy-revision-promoted", run: healthyRevisionPromoted},
		{name: "errors-rolled-back", run: errorsRolledBack},
		{name: "latency-rolled-back", run: latencyRolledBack},
		{name: "compared-with-primary", run: comparedWithPrimary},
		{name: "confirm-promotion-gate", run: confirmPromotionGate},
		{name: "rollback-webhook-gate", run: rollbackWebhookGate},
		{name: "ab-header-only", run: abHeaderOnly},
		{name: "prometheus-outage", outage: true, run: prometheusOutage},
	}
	// The operators' caches are per namespace, so every namespace exists before they start.
	nss := make([][]string, len(scenarios))
	var all, main, outage []string
	for i, s := range scenarios {
		n := 1
		if s.outage {
			n = 2 // onError hold and onError fail, side by side
		}
		for range n {
			ns := env.CreateNamespace(t)
			nss[i] = append(nss[i], ns)
			all = append(all, ns)
			if s.outage {
				outage = append(outage, ns)
			} else {
				main = append(main, ns)
			}
		}
	}
	bed := startAnalysisBed(t, all)
	startOperator(t, manager.Options{
		WatchNamespaces:     strings.Join(main, ","),
		PrometheusAddress:   bed.prom.URL(),
		WebhookAllowedCIDRs: "127.0.0.0/8", // the gate is served by httptest on loopback
	})
	startOperator(t, manager.Options{
		WatchNamespaces:   strings.Join(outage, ","),
		PrometheusAddress: bed.outageProm.URL(),
	})
	for i, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			s.run(t, bed, nss[i])
		})
	}
}

var healthy = map[string]string{meshsim.AnnotationErrorRate: "0", meshsim.AnnotationLatency: "p50=10,p99=25"}

// A healthy revision goes through every step, each earned by passing checks, and is promoted.
func healthyRevisionPromoted(t *testing.T, b *analysisBed, nss []string) {
	ns := nss[0]
	deployReviews(t, analysisCanary(ns, 20, 60, successRate(99), requestDuration(500)))
	weights := watchWeights(t, ns, "reviews")
	newRevision(t, ns, "bookinfo/reviews:v2", healthy)
	c := waitPhase(t, ns, "reviews", meshv1.PhaseSucceeded)

	if got, want := weights.values(), []int32{0, 20, 40, 60, 0}; !slices.Equal(got, want) {
		t.Errorf("canary weights went %v, want %v", got, want)
	}
	if c.Status.LastPromotedRevision != c.Status.CurrentRevision || c.Status.FailedChecks != 0 {
		t.Errorf("last promoted %q, current %q, %d failed checks", c.Status.LastPromotedRevision, c.Status.CurrentRevision, c.Status.FailedChecks)
	}
	for _, name := range []string{"request-success-rate", "request-duration"} {
		ch := findCheck(c, name)
		if ch == nil || ch.Outcome != meshv1.OutcomePass || ch.Value == "" || ch.Threshold == "" {
			t.Errorf("check %s: %+v, want a passing measurement", name, ch)
			continue
		}
		t.Logf("last %s: %s (threshold %s)", name, ch.Value, ch.Threshold)
	}
	if cond := condition(t, c, meshv1.ConditionAnalysis); cond.Status != metav1.ConditionTrue || cond.Reason != meshv1.ReasonCheckPassed {
		t.Errorf("Analysis condition %s/%s: %s", cond.Status, cond.Reason, cond.Message)
	}
	// The first step and then one per passing analysis run.
	waitEvents(t, ns, "reviews", meshv1.ReasonWeightIncreased, 3)
	if evs := canaryEvents(t, ns, "reviews", meshv1.ReasonCheckFailed); len(evs) > 0 {
		t.Errorf("a healthy revision failed checks:%s", notes(evs))
	}
	testenv.Eventually(t, time.Minute, func() error {
		if n := readyPods(t, ns, map[string]string{"app": "reviews-primary"}, "bookinfo/reviews:v2"); n != 1 {
			return fmt.Errorf("%d primary pods Ready on v2, want 1", n)
		}
		return nil
	})
}

// A revision answering 20% errors is rolled back by request-success-rate, no later than
// threshold analysis runs after the errors show in Prometheus.
func errorsRolledBack(t *testing.T, b *analysisBed, nss []string) {
	ns := nss[0]
	c := analysisCanary(ns, 10, 50, successRate(99))
	c.Spec.Analysis.Threshold = 2
	deployReviews(t, c)
	waitQuiet(t, b.prom.URL(), ns)
	weights := watchWeights(t, ns, "reviews")
	newRevision(t, ns, "bookinfo/reviews:v2", map[string]string{meshsim.AnnotationErrorRate: "0.2"})

	query := fmt.Sprintf(`100 * sum(rate(istio_requests_total{%[1]s,response_code!~"5.."}[%[2]s])) / sum(rate(istio_requests_total{%[1]s}[%[2]s]))`,
		reviewsSelector(ns), checkWindow)
	runs, c := runsUntilRollback(t, b.prom.URL(), ns, "request-success-rate", func(v float64) bool { return v < 99 }, query)
	t.Logf("rolled back %d analysis runs after the errors showed in Prometheus", runs)
	if runs > int(c.Spec.Analysis.Threshold) {
		t.Errorf("rolled back %d analysis runs after the errors showed in Prometheus, want at most the threshold %d", runs, c.Spec.Analysis.Threshold)
	}
	assertRolledBack(t, c, weights, "request-success-rate", ">= 99", func(v float64) bool { return v > 60 && v < 95 })
}

// A revision whose p99 latency is over the threshold is rolled back by request-duration,
// while its success rate passes.
func latencyRolledBack(t *testing.T, b *analysisBed, nss []string) {
	ns := nss[0]
	c := analysisCanary(ns, 10, 50, successRate(99), requestDuration(500))
	c.Spec.Analysis.Threshold = 2
	deployReviews(t, c)
	waitQuiet(t, b.prom.URL(), ns)
	weights := watchWeights(t, ns, "reviews")
	// About 14% of the requests take longer than 500 ms: p99 is over it even with the few
	// requests of a 10% step.
	newRevision(t, ns, "bookinfo/reviews:v2", map[string]string{meshsim.AnnotationErrorRate: "0", meshsim.AnnotationLatency: "p50=300,p99=900"})

	query := fmt.Sprintf(`histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{%s}[%s])) by (le))`,
		reviewsSelector(ns), checkWindow)
	runs, c := runsUntilRollback(t, b.prom.URL(), ns, "request-duration", func(v float64) bool { return v > 500 }, query)
	t.Logf("rolled back %d analysis runs after the latency showed in Prometheus", runs)
	if runs > int(c.Spec.Analysis.Threshold) {
		t.Errorf("rolled back %d analysis runs after the latency showed in Prometheus, want at most the threshold %d", runs, c.Spec.Analysis.Threshold)
	}
	assertRolledBack(t, c, weights, "request-duration", "<= 500", func(v float64) bool { return v > 500 })
	if ch := findCheck(c, "request-success-rate"); ch == nil || ch.Outcome != meshv1.OutcomePass {
		t.Errorf("request-success-rate of a revision without errors: %+v, want Pass", ch)
	}
}

// A revision whose p99 latency is well within an absolute threshold but much slower than
// the primary's is rolled back by a check comparing the two, and the status shows both.
func comparedWithPrimary(t *testing.T, b *analysisBed, nss []string) {
	ns := nss[0]
	latency := requestDuration(0)
	latency.ThresholdRange = meshv1.ThresholdRange{}
	latency.CompareWithPrimary, latency.SuccessCondition = true, "canary <= primary * 1.5 + 10.0"
	c := analysisCanary(ns, 10, 50, successRate(99), latency)
	c.Spec.Analysis.Threshold = 2
	deployReviews(t, c)
	waitQuiet(t, b.prom.URL(), ns)
	weights := watchWeights(t, ns, "reviews")
	newRevision(t, ns, "bookinfo/reviews:v2", map[string]string{meshsim.AnnotationErrorRate: "0", meshsim.AnnotationLatency: "p50=120,p99=200"})

	c = waitPhase(t, ns, "reviews", meshv1.PhaseFailed)
	if got, want := weights.values(), []int32{0, 10, 0}; !slices.Equal(got, want) {
		t.Errorf("canary weights went %v, want %v: no step after the first", got, want)
	}
	ch := findCheck(c, "request-duration")
	if ch == nil || ch.Outcome != meshv1.OutcomeFail {
		t.Fatalf("request-duration: %+v, want a failed comparison", ch)
	}
	canary, errC := strconv.ParseFloat(ch.Value, 64)
	primary, errP := strconv.ParseFloat(ch.PrimaryValue, 64)
	if errC != nil || errP != nil || !(canary > primary*1.5+10) {
		t.Errorf("request-duration canary %q, primary %q: want both measured, the canary's over primary*1.5+10", ch.Value, ch.PrimaryValue)
	}
	if !strings.Contains(ch.Message, "primary") || ch.Threshold != "canary <= primary * 1.5 + 10.0" {
		t.Errorf("message %q, threshold %q: want the comparison named", ch.Message, ch.Threshold)
	}
	t.Logf("request-duration: canary %s ms, primary %s ms: %s", ch.Value, ch.PrimaryValue, ch.Message)
}

// runsUntilRollback waits for the Canary to be rolled back and counts the analysis runs of
// check made after the regression showed in Prometheus: the moment the canary workload has
// the check's minimum of requests in the window and query's value is bad.
func runsUntilRollback(t *testing.T, prom, ns, check string, bad func(float64) bool, query string) (int, *meshv1.Canary) {
	t.Helper()
	var (
		shown  bool
		before *metav1.Time // the check's last run when the regression showed
		runs   = map[time.Time]bool{}
		c      *meshv1.Canary
	)
	testenv.Eventually(t, 3*time.Minute, func() error {
		if !shown {
			n, err := canaryRequests(t.Context(), prom, ns)
			if err != nil {
				return err
			}
			v, ok, err := promQuery(t.Context(), prom, query)
			if err != nil {
				return err
			}
			if n >= minRequests && ok && bad(v) {
				shown = true
				c = getCanary(t, ns, "reviews")
				if ch := findCheck(c, check); ch != nil {
					before = ch.LastMeasured
				}
				t.Logf("the regression shows in Prometheus: %s = %s over %v requests; canary at %d%%, %d failed checks",
					check, strconv.FormatFloat(v, 'f', 2, 64), n, c.Status.CanaryWeight, c.Status.FailedChecks)
			}
		}
		c = getCanary(t, ns, "reviews")
		if ch := findCheck(c, check); shown && ch != nil && ch.LastMeasured != nil && (before == nil || !ch.LastMeasured.Equal(before)) {
			runs[ch.LastMeasured.UTC()] = true
		}
		switch c.Status.Phase { //nolint:exhaustive // any other phase: not rolled back yet
		case meshv1.PhaseFailed:
			return nil
		case meshv1.PhasePromoting, meshv1.PhaseFinalising, meshv1.PhaseSucceeded:
			t.Fatalf("the bad revision is being promoted: %s at %d%%", c.Status.Phase, c.Status.CanaryWeight)
		}
		return fmt.Errorf("phase %s at %d%%, %d failed checks; regression shown in Prometheus: %v", c.Status.Phase, c.Status.CanaryWeight, c.Status.FailedChecks, shown)
	})
	if !shown {
		t.Fatalf("rolled back before the regression showed in Prometheus")
	}
	return len(runs), c
}

// assertRolledBack checks a Canary rolled back by check: no step was taken after the
// first one (which comes before any check), the failures reached the threshold, and the
// status, the conditions and the events name the check, its value and its threshold.
func assertRolledBack(t *testing.T, c *meshv1.Canary, weights *weightLog, check, threshold string, plausible func(float64) bool) {
	t.Helper()
	ns, step := c.Namespace, *c.Spec.Analysis.StepWeight
	if got, want := weights.values(), []int32{0, step, 0}; !slices.Equal(got, want) {
		t.Errorf("canary weights went %v, want %v: no step after the first", got, want)
	}
	if c.Status.FailedChecks != c.Spec.Analysis.Threshold || c.Status.LastFailedRevision != c.Status.CurrentRevision {
		t.Errorf("failed checks %d (threshold %d), last failed revision %q, current %q",
			c.Status.FailedChecks, c.Spec.Analysis.Threshold, c.Status.LastFailedRevision, c.Status.CurrentRevision)
	}
	ch := findCheck(c, check)
	if ch == nil {
		t.Fatalf("no %s in status.checks %+v", check, c.Status.Checks)
	}
	v, err := strconv.ParseFloat(ch.Value, 64)
	if ch.Outcome != meshv1.OutcomeFail || ch.Threshold != threshold || err != nil || !plausible(v) {
		t.Errorf("status.checks %s: %+v, want Fail with a plausible value and threshold %q", check, *ch, threshold)
	}
	described := fmt.Sprintf("%s is %s (threshold %s)", check, ch.Value, threshold)
	for _, typ := range []string{meshv1.ConditionReady, meshv1.ConditionPromoted, meshv1.ConditionAnalysis} {
		cond := condition(t, c, typ)
		if cond.Status != metav1.ConditionFalse || !strings.Contains(cond.Message, described) {
			t.Errorf("%s condition %s/%s %q, want False naming %q", typ, cond.Status, cond.Reason, cond.Message, described)
		}
	}
	if cond := condition(t, c, meshv1.ConditionPromoted); cond.Reason != meshv1.ReasonCheckFailed {
		t.Errorf("Promoted condition reason %s, want %s", cond.Reason, meshv1.ReasonCheckFailed)
	}
	// A warning for each failed check and one for the rollback they caused, each naming the
	// check with its value and threshold. The last failure and the rollback are recorded in
	// the same reconcile with the same type and reason: neither may be lost, whether they
	// are said in one event or two.
	waitEvents(t, ns, c.Name, meshv1.ReasonRolledBack, 1)
	var said []string
	for _, e := range canaryEvents(t, ns, c.Name, meshv1.ReasonCheckFailed) {
		if e.Type != "Warning" || !strings.Contains(e.Note, check+" is ") || !strings.Contains(e.Note, "(threshold "+threshold+")") {
			t.Errorf("%s %s event %q, want a warning naming %s and its threshold", e.Type, e.Reason, e.Note, check)
		}
		if e.Series != nil {
			t.Logf("%s event %q repeated %d times", e.Reason, e.Note, e.Series.Count)
		}
		said = append(said, e.Note)
	}
	n := c.Spec.Analysis.Threshold
	want := []string{fmt.Sprintf("Rolled back revision %s after %d failed checks: %s is ", c.Status.CurrentRevision, n, check)}
	for i := range n {
		want = append(want, fmt.Sprintf("Check failed (%d of %d): %s is ", i+1, n, check))
	}
	for _, w := range want {
		if !strings.Contains(strings.Join(said, "\n"), w) {
			t.Errorf("no %s event says %q; they say %q", meshv1.ReasonCheckFailed, w+"...", said)
		}
	}
	t.Logf("rolled back: %s", condition(t, c, meshv1.ConditionReady).Message)
}

// A confirm-promotion gate holds a rollout at maxWeight, counting its attempts, until the
// webhook answers 200; then the revision is promoted.
func confirmPromotionGate(t *testing.T, b *analysisBed, nss []string) {
	ns := nss[0]
	gate := startGateHook(t)
	c := analysisCanary(ns, 20, 40, successRate(99))
	c.Spec.Analysis.Webhooks = []meshv1.CanaryWebhook{{
		Name: "release-manager", Type: meshv1.WebhookConfirmPromotion, URL: gate.srv.URL, Retries: ptr.To[int32](0),
	}}
	deployReviews(t, c)
	promoted := getCanary(t, ns, "reviews").Status.LastPromotedRevision
	weights := watchWeights(t, ns, "reviews")
	newRevision(t, ns, "bookinfo/reviews:v2", healthy)

	// Held at maxWeight: the checks pass, the gate is asked and says no, again and again.
	testenv.Eventually(t, 3*time.Minute, func() error {
		c = getCanary(t, ns, "reviews")
		if p := c.Status.Phase; p != meshv1.PhaseProgressing && p != meshv1.PhaseInitialized {
			t.Fatalf("phase %s at %d%% with the gate closed, want Progressing", p, c.Status.CanaryWeight)
		}
		g := findGate(c, "release-manager")
		if c.Status.CanaryWeight != 40 || g == nil || g.Attempts < 3 {
			return fmt.Errorf("weight %d, gate %+v; waiting for 40%% and 3 attempts", c.Status.CanaryWeight, g)
		}
		return nil
	})
	g := findGate(c, "release-manager")
	if g.Open || g.Type != meshv1.WebhookConfirmPromotion || !strings.Contains(g.Message, "403") {
		t.Errorf("gate status %+v, want closed with the webhook's 403", *g)
	}
	if c.Status.LastPromotedRevision != promoted {
		t.Errorf("the primary was promoted to %s with the gate closed", c.Status.LastPromotedRevision)
	}
	if cond := condition(t, c, meshv1.ConditionReady); cond.Reason != meshv1.ReasonWaitingForGate || !strings.Contains(cond.Message, "release-manager") {
		t.Errorf("Ready condition %s %q, want %s naming the webhook", cond.Reason, cond.Message, meshv1.ReasonWaitingForGate)
	}
	calls := gate.payloads()
	if len(calls) < int(g.Attempts) {
		t.Errorf("the webhook got %d calls, status counts %d attempts", len(calls), g.Attempts)
	}
	for _, p := range calls {
		if p.Type != meshv1.WebhookConfirmPromotion || p.Name != "reviews" || p.Namespace != ns || p.Weight != 40 || p.Phase != meshv1.PhaseProgressing {
			t.Errorf("payload %+v, want confirm-promotion of %s/reviews at 40%%", p, ns)
		}
	}

	gate.open.Store(true)
	c = waitPhase(t, ns, "reviews", meshv1.PhaseSucceeded)
	if got, want := weights.values(), []int32{0, 20, 40, 0}; !slices.Equal(got, want) {
		t.Errorf("canary weights went %v, want %v", got, want)
	}
	if c.Status.LastPromotedRevision != c.Status.CurrentRevision {
		t.Errorf("last promoted %q, current %q", c.Status.LastPromotedRevision, c.Status.CurrentRevision)
	}
}

// A rollback webhook, as in Flagger, is asked each interval while a rollout waits or
// analyses: while it answers 403 the rollout goes on; once it answers 200 the revision is
// rolled back and marked failed, however well its checks pass.
func rollbackWebhookGate(t *testing.T, b *analysisBed, nss []string) {
	ns := nss[0]
	gate := startGateHook(t)
	c := analysisCanary(ns, 10, 50, successRate(99))
	c.Spec.Analysis.Interval = "5s"
	c.Spec.Analysis.Webhooks = []meshv1.CanaryWebhook{{
		Name: "incident", Type: meshv1.WebhookRollback, URL: gate.srv.URL, Retries: ptr.To[int32](0),
	}}
	deployReviews(t, c)
	promoted := getCanary(t, ns, "reviews").Status.LastPromotedRevision
	newRevision(t, ns, "bookinfo/reviews:v2", healthy)

	// Asked, answering no: the healthy revision takes traffic step by step.
	testenv.Eventually(t, 3*time.Minute, func() error {
		c = getCanary(t, ns, "reviews")
		if p := c.Status.Phase; p != meshv1.PhaseProgressing && p != meshv1.PhaseInitialized {
			t.Fatalf("phase %s at %d%% with the rollback webhook answering 403, want Progressing", p, c.Status.CanaryWeight)
		}
		if g := findGate(c, "incident"); c.Status.CanaryWeight < 20 || g == nil || g.Attempts < 2 {
			return fmt.Errorf("weight %d, gate %+v; waiting for 20%% and 2 calls", c.Status.CanaryWeight, g)
		}
		return nil
	})
	revision := c.Status.CurrentRevision

	gate.open.Store(true)
	c = waitPhase(t, ns, "reviews", meshv1.PhaseFailed)
	if c.Status.LastFailedRevision != revision || c.Status.LastPromotedRevision != promoted || c.Status.CanaryWeight != 0 {
		t.Errorf("status %+v, want revision %s failed at 0%% and %s still promoted", c.Status, revision, promoted)
	}
	cond := condition(t, c, meshv1.ConditionPromoted)
	if cond.Reason != meshv1.ReasonRollbackWebhook || !strings.Contains(cond.Message, "incident") {
		t.Errorf("Promoted condition %s %q, want %s naming the webhook", cond.Reason, cond.Message, meshv1.ReasonRollbackWebhook)
	}
	if len(canaryEvents(t, ns, "reviews", meshv1.ReasonRollbackWebhook)) == 0 {
		t.Errorf("no %s event", meshv1.ReasonRollbackWebhook)
	}
	for _, p := range gate.payloads() {
		if p.Type != meshv1.WebhookRollback || p.Name != "reviews" || p.Namespace != ns {
			t.Errorf("payload %+v, want rollback of %s/reviews", p, ns)
		}
	}
}

// A/B testing: during the analysis only the requests carrying the header reach the canary
// workload, and they do; the others stay on the primary.
func abHeaderOnly(t *testing.T, b *analysisBed, nss []string) {
	abRollout(t, b, analysisCanary(nss[0], 0, 50, successRate(99)), watchWeights)
}

// abRollout makes c an A/B Canary by the insider header, rolls a healthy revision out with
// it and checks where the simulator's requests went; watch records the split of its route.
func abRollout(t *testing.T, b *analysisBed, c *meshv1.Canary, watch func(*testing.T, string, string) *weightLog) {
	ns := c.Namespace
	c.Spec.Analysis.StepWeight = nil
	c.Spec.Analysis.Iterations = ptr.To[int32](3)
	c.Spec.Analysis.Match = []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{insiderHeader: {Exact: ptr.To(insiderValue)}}}}
	deployReviews(t, c)
	// The canary workload served everything while the primary was being initialized: count
	// from a tick that saw the primary serving.
	ticks := b.sim.Stats().Ticks
	testenv.Eventually(t, time.Minute, func() error {
		if n := b.sim.Stats().Ticks; n < ticks+2 {
			return fmt.Errorf("%d simulator ticks since Initialized, waiting for 2", n-ticks)
		}
		return nil
	})
	tagged0, untagged0 := abTraffic(b.sim.Stats(), ns)
	weights := watch(t, ns, "reviews")
	newRevision(t, ns, "bookinfo/reviews:v2", healthy)
	c = waitPhase(t, ns, "reviews", meshv1.PhaseSucceeded)

	tagged, untagged := abTraffic(b.sim.Stats(), ns)
	tagged, untagged = tagged-tagged0, untagged-untagged0
	t.Logf("the canary answered %d requests with %s: %s and %d without", tagged, insiderHeader, insiderValue, untagged)
	if untagged != 0 {
		t.Errorf("%d requests without the header reached the canary workload, want none", untagged)
	}
	if tagged == 0 {
		t.Errorf("no request with the header reached the canary workload")
	}
	primary := b.sim.Stats().Requests(func(k meshsim.RouteKey) bool {
		return k.Namespace == ns && k.Workload == "reviews-primary" && !k.Tagged
	})
	if primary == 0 {
		t.Errorf("no request without the header reached the primary")
	}
	if got := weights.values(); slices.ContainsFunc(got, func(w int32) bool { return w != 0 }) {
		t.Errorf("A/B testing moved weighted traffic: %v", got)
	}
	if c.Status.LastPromotedRevision != c.Status.CurrentRevision {
		t.Errorf("last promoted %q, current %q", c.Status.LastPromotedRevision, c.Status.CurrentRevision)
	}
	waitEvents(t, ns, "reviews", meshv1.ReasonCheckPassed, 3) // "Iteration n of 3 passed"
}

// Prometheus stops mid-rollout. With onError=hold (the default) the rollout stays at its
// weight, counting no failure, and says the provider is unreachable; once Prometheus is
// back it completes. With onError=fail, the unreachable checks count and roll it back.
func prometheusOutage(t *testing.T, b *analysisBed, nss []string) {
	holdNS, failNS := nss[0], nss[1]
	// Up to 80%: still under way when the slower onError=fail rollout reaches 20%.
	deployReviews(t, analysisCanary(holdNS, 10, 80, successRate(99)))
	failing := analysisCanary(failNS, 10, 60, successRate(99))
	failing.Spec.Analysis.Metrics[0].OnError = meshv1.OnErrorFail
	// onError=fail counts too few requests as a failure as well: no minRequests, and an
	// interval long enough for every step's first check to have data.
	failing.Spec.Analysis.Metrics[0].MinRequests = nil
	failing.Spec.Analysis.Interval = "5s"
	failing.Spec.Analysis.Threshold = 2
	deployReviews(t, failing)
	holdWeights, failWeights := watchWeights(t, holdNS, "reviews"), watchWeights(t, failNS, "reviews")
	newRevision(t, holdNS, "bookinfo/reviews:v2", healthy)
	newRevision(t, failNS, "bookinfo/reviews:v2", healthy)

	// Mid-rollout: each has passed a check with Prometheus up.
	testenv.Eventually(t, 3*time.Minute, func() error {
		for _, ns := range nss {
			c := getCanary(t, ns, "reviews")
			if c.Status.Phase != meshv1.PhaseProgressing && c.Status.Phase != meshv1.PhaseInitialized {
				t.Fatalf("%s: %s before Prometheus was stopped", ns, c.Status.Phase)
			}
			if c.Status.CanaryWeight < 20 {
				return fmt.Errorf("%s at %d%%, waiting for 20%%", ns, c.Status.CanaryWeight)
			}
		}
		return nil
	})
	stopping := time.Now()
	if err := b.outageProm.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Prometheus stopped (in %s)", time.Since(stopping).Round(time.Millisecond))

	unmeasured := func(o meshv1.CheckOutcome) bool { return o == meshv1.OutcomeUnreachable || o == meshv1.OutcomeTimeout }
	var (
		frozen   *int32 // the weight when the first unmeasured check showed
		holdRuns = map[time.Time]bool{}
		hold     *meshv1.Canary
	)
	// Held for at least three analysis runs, while the onError=fail rollout is rolled back.
	testenv.Eventually(t, 3*time.Minute, func() error {
		hold = getCanary(t, holdNS, "reviews")
		if ch := findCheck(hold, "request-success-rate"); frozen == nil && ch != nil && unmeasured(ch.Outcome) {
			frozen = ptr.To(hold.Status.CanaryWeight)
			t.Logf("onError=hold: %s with Prometheus stopped, at %d%%", ch.Outcome, *frozen)
		}
		if frozen == nil {
			return fmt.Errorf("waiting for an unreachable check")
		}
		w, st := *frozen, hold.Status
		if st.Phase != meshv1.PhaseProgressing || st.CanaryWeight != w || st.FailedChecks != 0 {
			t.Fatalf("onError=hold with Prometheus stopped: %s at %d%% (held at %d%%), %d failed checks", st.Phase, st.CanaryWeight, w, st.FailedChecks)
		}
		ch := findCheck(hold, "request-success-rate")
		if !unmeasured(ch.Outcome) || ch.HoldingSince == nil {
			t.Fatalf("onError=hold with Prometheus stopped: check %+v, want Unreachable and holding", *ch)
		}
		holdRuns[ch.LastMeasured.UTC()] = true
		if len(holdRuns) < 3 {
			return fmt.Errorf("%d analysis runs with Prometheus stopped, waiting for 3", len(holdRuns))
		}
		if p := getCanary(t, failNS, "reviews").Status.Phase; p != meshv1.PhaseFailed {
			return fmt.Errorf("onError=fail rollout %s, waiting for Failed", p)
		}
		return nil
	})
	ch := findCheck(hold, "request-success-rate")
	t.Logf("held: %s %q", ch.Outcome, ch.Message)
	for _, typ := range []string{meshv1.ConditionAnalysis, meshv1.ConditionReady} {
		cond := condition(t, hold, typ)
		want := metav1.ConditionUnknown
		if typ == meshv1.ConditionReady {
			want = metav1.ConditionFalse
		}
		if cond.Status != want || cond.Reason != meshv1.ReasonCheckHolding || !strings.Contains(cond.Message, "request-success-rate: "+string(ch.Outcome)) {
			t.Errorf("%s condition %s/%s %q, want %s/%s saying the provider is %s", typ, cond.Status, cond.Reason, cond.Message,
				want, meshv1.ReasonCheckHolding, ch.Outcome)
		}
	}
	if evs := canaryEvents(t, holdNS, "reviews", meshv1.ReasonCheckHolding); len(evs) == 0 {
		t.Errorf("no %s event", meshv1.ReasonCheckHolding)
	}

	// onError=fail: each unreachable check counted; rolled back at the threshold from where it stood.
	failed := getCanary(t, failNS, "reviews")
	if failed.Status.FailedChecks != failed.Spec.Analysis.Threshold {
		t.Errorf("onError=fail: %d failed checks, want the threshold %d", failed.Status.FailedChecks, failed.Spec.Analysis.Threshold)
	}
	if cond := condition(t, failed, meshv1.ConditionPromoted); cond.Reason != meshv1.ReasonCheckFailed || !strings.Contains(cond.Message, "Unreachable") && !strings.Contains(cond.Message, "Timeout") {
		t.Errorf("onError=fail: Promoted condition %s %q, want %s naming the unreachable provider", cond.Reason, cond.Message, meshv1.ReasonCheckFailed)
	}
	// No step after the first unreachable check; events are in the order they happened.
	// Events are recorded asynchronously: wait for the one naming the provider.
	testenv.Eventually(t, 30*time.Second, func() error {
		down := false
		all := canaryEvents(t, failNS, "reviews", "")
		for _, e := range all {
			switch {
			case e.Reason == meshv1.ReasonCheckFailed && (strings.Contains(e.Note, "Unreachable") || strings.Contains(e.Note, "Timeout")):
				down = true
			case e.Reason == meshv1.ReasonWeightIncreased && down:
				t.Errorf("onError=fail: %q after a check failed with Prometheus stopped", e.Note)
			}
		}
		if !down {
			return fmt.Errorf("onError=fail: no %s event naming the unreachable provider yet; events:%s", meshv1.ReasonCheckFailed, notes(all))
		}
		return nil
	})
	if got := failWeights.values(); len(got) < 3 || got[len(got)-1] != 0 {
		t.Errorf("onError=fail: weights went %v, want steps and then 0", got)
	}

	// Prometheus is back: the held rollout goes on from where it stood, to the end.
	if err := b.outageProm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Log("Prometheus started again")
	c := waitPhase(t, holdNS, "reviews", meshv1.PhaseSucceeded)
	if got, want := holdWeights.values(), []int32{0, 10, 20, 30, 40, 50, 60, 70, 80, 0}; !slices.Equal(got, want) {
		t.Errorf("onError=hold: weights went %v, want %v", got, want)
	}
	if c.Status.FailedChecks != 0 || c.Status.LastPromotedRevision != c.Status.CurrentRevision {
		t.Errorf("onError=hold: %d failed checks, last promoted %q, current %q", c.Status.FailedChecks, c.Status.LastPromotedRevision, c.Status.CurrentRevision)
	}
	if p := getCanary(t, failNS, "reviews").Status.Phase; p != meshv1.PhaseFailed {
		t.Errorf("onError=fail: %s after Prometheus came back, want Failed (a retry is needed)", p)
	}
}
