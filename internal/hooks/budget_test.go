package hooks

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/budget"
	"canopy.dev/canopy/test/tarpit"
)

var budgetStart = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

// Every attempt, retries included, is paid from the reconcile's budget: a hook that takes
// 10s of the fake clock per attempt and answers 503 gets three attempts of a 25s budget
// (the third cut to the 5s left), however many retries it asks for, and the error says the
// budget ended it.
func TestRetriesCountAgainstTheBudget(t *testing.T) {
	clk := clocktesting.NewFakeClock(budgetStart)
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		clk.Step(10 * time.Second)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	b := budget.Start(clk, budget.Limits{Reconcile: 25 * time.Second, MaxWebhookTimeout: 10 * time.Second})
	ctx := budget.NewContext(context.Background(), b)

	h := meshv1.CanaryWebhook{Name: "slow", Type: meshv1.WebhookRollout, URL: srv.URL, Timeout: "10m", Retries: ptr.To(int32(10))}
	err := NewClient(loopbackPolicy(t), ClientOptions{Backoff: time.Millisecond}).Call(ctx, h, payload)
	if !errors.Is(err, budget.ErrSpent) || !strings.Contains(err.Error(), "no retry after 3 attempts") {
		t.Errorf("Call: %v, want the budget to stop the retries after 3 attempts", err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("the hook was called %d times, want 3", n)
	}

	// The budget is spent: the next hook of the reconcile is not called at all.
	err = NewClient(loopbackPolicy(t), ClientOptions{}).Call(ctx, h, payload)
	if !errors.Is(err, budget.ErrSpent) || !strings.Contains(err.Error(), "webhook slow: not run") || calls.Load() != 3 {
		t.Errorf("Call after the budget: %v (%d calls), want it not run", err, calls.Load())
	}
}

// A hook asking for 10m gets the operator's ceiling (a short one here, in real time: the
// tar pit never answers), and one that starts with less left than that is cut to what is
// left, which the error says, wrapping ErrSpent. No assertion is made on how long it took.
func TestCeilingAndCutOfOneAttempt(t *testing.T) {
	url := tarpit.New(t).URL
	h := meshv1.CanaryWebhook{Name: "tarpit", Type: meshv1.WebhookRollout, URL: url, Timeout: "10m", Retries: ptr.To(int32(0))}
	c := NewClient(loopbackPolicy(t), ClientOptions{})

	clk := clocktesting.NewFakeClock(budgetStart)
	ceiling := budget.Start(clk, budget.Limits{Reconcile: time.Hour, MaxWebhookTimeout: 200 * time.Millisecond})
	err := c.Call(budget.NewContext(context.Background(), ceiling), h, payload)
	if err == nil || !strings.Contains(err.Error(), "timed out") || errors.Is(err, budget.ErrSpent) {
		t.Errorf("Call with a ceiling: %v, want its own (lowered) timeout", err)
	}

	cut := budget.Start(clk, budget.Limits{Reconcile: time.Hour, MaxWebhookTimeout: time.Hour})
	clk.Step(time.Hour - 200*time.Millisecond)
	err = c.Call(budget.NewContext(context.Background(), cut), h, payload)
	if !errors.Is(err, budget.ErrSpent) || !strings.Contains(err.Error(), "webhook given 200ms, what was left") {
		t.Errorf("Call with 200ms left: %v, want it cut to the budget", err)
	}
}
