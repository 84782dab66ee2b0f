package analysis

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/budget"
	"canopy.dev/canopy/internal/scheme"
)

// slowProvider stands in for a Prometheus that takes its time: each query steps the fake
// clock by took, or, when the query's deadline comes first, by what was left and answers
// Timeout, as a tar pit does. It records the timeout each client was built with and the
// time each query was given.
type slowProvider struct {
	clock *clocktesting.FakeClock
	took  time.Duration

	mu       sync.Mutex
	timeouts []time.Duration // providers.Config.Timeout per client built
	given    []time.Duration // the deadline of each query's context, from when it began
}

func (p *slowProvider) factory(cfg providers.Config) (providers.Provider, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timeouts = append(p.timeouts, cfg.Timeout)
	return p, nil
}

func (p *slowProvider) Query(ctx context.Context, _ string) (float64, error) {
	deadline, _ := ctx.Deadline()
	// The context's deadline is on the real clock; what the budget granted is how far it is.
	given := time.Until(deadline).Round(time.Second)
	p.mu.Lock()
	p.given = append(p.given, given)
	p.mu.Unlock()
	if given < p.took {
		p.clock.Step(given)
		return 0, providers.Errorf(providers.Timeout, "the query timed out")
	}
	p.clock.Step(p.took)
	return 100, nil
}

// budgetRunner runs the checks of a Canary one at a time, within the budget of limits,
// against a provider that takes took per query. Every check names a template whose
// provider asks for a 10m timeout.
func budgetRunner(t *testing.T, limits budget.Limits, took time.Duration, checks int) (*Runner, *slowProvider, *meshv1.Canary, context.Context) {
	t.Helper()
	clk := clocktesting.NewFakeClock(testNow)
	p := &slowProvider{clock: clk, took: took}
	var objs []client.Object
	var metrics []meshv1.CanaryMetric
	for i := range checks {
		name := fmt.Sprintf("check-%d", i)
		tmpl := template("shop", name, "", "vector(1)")
		tmpl.Spec.Provider.Timeout = "10m"
		objs = append(objs, tmpl)
		metrics = append(metrics, meshv1.CanaryMetric{Name: name, TemplateRef: &meshv1.TemplateRef{Name: name}, ThresholdRange: meshv1.ThresholdRange{Min: ptr.To(99.0)}})
	}
	reader := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).Build()
	r := New(reader, p.factory, Options{
		DefaultProvider: providers.Config{Address: "http://prometheus.example:9090"}, Clock: clk, MaxConcurrentChecks: 1,
	})
	ctx := budget.NewContext(context.Background(), budget.Start(clk, limits))
	return r, p, testCanary(metrics...), ctx
}

// Five checks of 10s each in a 30s budget: three run, each with its 10m timeout lowered to
// the operator's 10s ceiling (said in its message), and the two after the budget is spent
// are not run and report Timeout, which the progression holds on (onError) and never
// passes.
func TestBudgetBoundsChecks(t *testing.T) {
	limits := budget.Limits{Reconcile: 30 * time.Second, MaxCheckTimeout: 10 * time.Second}
	r, p, c, ctx := budgetRunner(t, limits, 10*time.Second, 5)
	got := r.Run(ctx, c)

	want := []meshv1.CheckOutcome{meshv1.OutcomePass, meshv1.OutcomePass, meshv1.OutcomePass, meshv1.OutcomeTimeout, meshv1.OutcomeTimeout}
	for i, ch := range got {
		if ch.Name != c.Spec.Analysis.Metrics[i].Name || ch.Outcome != want[i] {
			t.Errorf("check %d: %s %s %q, want %s", i, ch.Name, ch.Outcome, ch.Message, want[i])
		}
		if ch.Outcome == meshv1.OutcomePass && !strings.Contains(ch.Message, "query timeout 10m0s lowered to the operator's ceiling 10s (--max-check-timeout)") {
			t.Errorf("check %d passed with message %q, want it to say the ceiling lowered its timeout", i, ch.Message)
		}
		if ch.Outcome == meshv1.OutcomeTimeout && !strings.Contains(ch.Message, "not run") {
			t.Errorf("check %d: %q, want it to say it was not run", i, ch.Message)
		}
	}
	if len(p.given) != 3 {
		t.Errorf("%d queries ran, want 3", len(p.given))
	}
	for i, d := range p.timeouts {
		if d != 10*time.Second {
			t.Errorf("client %d was built with timeout %s, want the ceiling 10s", i, d)
		}
	}
}

// A query that starts with less left than its timeout is given what is left, and its
// timeout says so.
func TestBudgetCutsTheLastQuery(t *testing.T) {
	limits := budget.Limits{Reconcile: 25 * time.Second, MaxCheckTimeout: 10 * time.Second}
	r, p, c, ctx := budgetRunner(t, limits, 10*time.Second, 3)
	got := r.Run(ctx, c)

	if got[2].Outcome != meshv1.OutcomeTimeout || !strings.Contains(got[2].Message, "given 5s, what was left of the reconcile's time budget") {
		t.Errorf("the last check: %s %q, want a Timeout cut to the 5s left", got[2].Outcome, got[2].Message)
	}
	if len(p.given) != 3 || p.given[2] > 5*time.Second {
		t.Errorf("queries were given %v, want the last at most 5s", p.given)
	}
}

// minRequests makes a check two queries: the second starts only within the budget.
func TestBudgetCountsEveryQueryOfACheck(t *testing.T) {
	limits := budget.Limits{Reconcile: 10 * time.Second, MaxCheckTimeout: 10 * time.Second}
	r, p, c, ctx := budgetRunner(t, limits, 10*time.Second, 1)
	c.Spec.Analysis.Metrics[0].MinRequests = ptr.To(int64(1))
	got := r.Run(ctx, c)[0]

	if got.Outcome != meshv1.OutcomeTimeout || !strings.Contains(got.Message, "not run") {
		t.Errorf("got %s %q, want the value query not run", got.Outcome, got.Message)
	}
	if len(p.given) != 1 {
		t.Errorf("%d queries ran, want the request count only", len(p.given))
	}
}

// Without a budget (a caller outside a reconcile) a query takes its own timeout.
func TestNoBudgetNoCeiling(t *testing.T) {
	r, p, c, _ := budgetRunner(t, budget.Limits{}, time.Second, 1)
	if got := r.Run(context.Background(), c)[0]; got.Outcome != meshv1.OutcomePass || got.Message != "" {
		t.Errorf("got %s %q", got.Outcome, got.Message)
	}
	if p.timeouts[0] != 10*time.Minute {
		t.Errorf("the client's timeout is %s, want the template's 10m", p.timeouts[0])
	}
}
