package budget

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func TestGrants(t *testing.T) {
	limits := Limits{Reconcile: 30 * time.Second, MaxCheckTimeout: 10 * time.Second, MaxWebhookTimeout: 20 * time.Second}
	for _, tc := range []struct {
		name    string
		elapsed time.Duration
		kind    Kind
		asked   time.Duration
		want    time.Duration
		ceiling time.Duration
		cut     bool
		spent   bool
	}{
		{name: "within everything", kind: Query, asked: 5 * time.Second, want: 5 * time.Second},
		{name: "a query above its ceiling", kind: Query, asked: 10 * time.Minute, want: 10 * time.Second, ceiling: 10 * time.Second},
		{name: "a webhook has its own ceiling", kind: Webhook, asked: 10 * time.Minute, want: 20 * time.Second, ceiling: 20 * time.Second},
		{name: "at the ceiling is not lowered", kind: Webhook, asked: 20 * time.Second, want: 20 * time.Second},
		{name: "cut to what is left", elapsed: 25 * time.Second, kind: Query, asked: 8 * time.Second, want: 5 * time.Second, cut: true},
		{name: "ceiling and cut", elapsed: 28 * time.Second, kind: Webhook, asked: time.Minute, want: 2 * time.Second, ceiling: 20 * time.Second, cut: true},
		{name: "spent exactly", elapsed: 30 * time.Second, kind: Query, asked: time.Second, spent: true},
		{name: "overspent", elapsed: time.Minute, kind: Webhook, asked: time.Second, spent: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakePassiveClock(t0)
			b := Start(clk, limits)
			clk.SetTime(t0.Add(tc.elapsed))
			g, err := b.Grant(tc.kind, tc.asked)
			if tc.spent {
				if !errors.Is(err, ErrSpent) || !b.Spent() || b.Remaining() != 0 {
					t.Fatalf("Grant = %+v, %v; Spent %v, Remaining %s: want ErrSpent", g, err, b.Spent(), b.Remaining())
				}
				return
			}
			if err != nil || b.Spent() {
				t.Fatalf("Grant: %v, Spent %v", err, b.Spent())
			}
			if g.Timeout != tc.want || g.Ceiling != tc.ceiling || g.Cut != tc.cut || g.Asked != tc.asked {
				t.Errorf("Grant = %+v, want timeout %s, ceiling %s, cut %v", g, tc.want, tc.ceiling, tc.cut)
			}
			if note := g.Note(); (note != "") != (tc.ceiling != 0) {
				t.Errorf("Note = %q with ceiling %s", note, tc.ceiling)
			}
			if note := g.CutNote(); (note != "") != tc.cut {
				t.Errorf("CutNote = %q with cut %v", note, tc.cut)
			}
		})
	}
}

func TestNotesNameTheFlags(t *testing.T) {
	b := Start(clocktesting.NewFakePassiveClock(t0), Limits{})
	for _, tc := range []struct {
		kind Kind
		want []string
	}{
		{Query, []string{"query timeout 1m0s", "ceiling 10s", "--max-check-timeout"}},
		{Webhook, []string{"webhook timeout 1m0s", "ceiling 30s", "--max-webhook-timeout"}},
	} {
		note := b.Cap(tc.kind, time.Minute).Note()
		for _, w := range tc.want {
			if !strings.Contains(note, w) {
				t.Errorf("Cap(%s).Note() = %q, want it to say %q", tc.kind, note, w)
			}
		}
	}
	if note := b.Cap(Query, time.Second).Note(); note != "" {
		t.Errorf("Cap below the ceiling = %q, want none", note)
	}
	if !strings.Contains(ErrNotRun.Error(), "not run: the reconcile's time budget") || !strings.Contains(ErrSpent.Error(), "--reconcile-budget") || !errors.Is(ErrNotRun, ErrSpent) {
		t.Errorf("ErrNotRun = %q, ErrSpent = %q: want them to say so, name the flag, and ErrNotRun to be an ErrSpent", ErrNotRun, ErrSpent)
	}
}

func TestDefaultsAndValidation(t *testing.T) {
	got := Limits{}.WithDefaults()
	if got.Reconcile != DefaultReconcile || got.MaxCheckTimeout != DefaultMaxCheckTimeout || got.MaxWebhookTimeout != DefaultMaxWebhookTimeout {
		t.Errorf("defaults = %+v", got)
	}
	if err := (Limits{}).Validate(); err != nil {
		t.Errorf("zero limits: %v", err)
	}
	err := Limits{MaxWebhookTimeout: -time.Second}.Validate()
	if err == nil || !strings.Contains(err.Error(), "--max-webhook-timeout") {
		t.Errorf("a negative ceiling: %v, want an error naming the flag", err)
	}
}

// A nil budget (a call outside a Canary's reconcile) grants what is asked and bounds
// nothing; Bound still returns a context to cancel.
func TestNilBudget(t *testing.T) {
	var b *Budget
	g, err := b.Grant(Webhook, time.Hour)
	if err != nil || g.Timeout != time.Hour || g.Note() != "" || b.Spent() || b.Cap(Query, time.Hour).Note() != "" {
		t.Errorf("nil budget: %+v, %v", g, err)
	}
	ctx, cancel := b.Bound(context.Background())
	defer cancel()
	if _, ok := ctx.Deadline(); ok {
		t.Error("a nil budget set a deadline")
	}
	if FromContext(context.Background()) != nil {
		t.Error("a context without a budget has one")
	}
}

// Bound's deadline is the budget's remainder, read from the injected clock: a budget
// half spent on the fake clock gives a context that ends no later than what is left.
func TestBoundFollowsTheClock(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	b := Start(clk, Limits{Reconcile: time.Hour})
	clk.SetTime(t0.Add(59 * time.Minute))
	ctx, cancel := b.Bound(NewContext(context.Background(), b))
	defer cancel()
	deadline, ok := ctx.Deadline()
	if !ok || time.Until(deadline) > time.Minute {
		t.Errorf("deadline in %s, want at most the minute left", time.Until(deadline))
	}
	if FromContext(ctx) != b {
		t.Error("the context lost its budget")
	}
}
