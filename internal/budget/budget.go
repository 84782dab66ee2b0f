// Package budget bounds the time one reconcile of a Canary spends calling what its tenant
// named: metric providers and webhooks. canopy runs them inside Reconcile, on the workers
// every Canary shares (docs/security.md, issue 19 item 3): without a bound, one Canary with
// slow endpoints holds a worker for (retries + 1) x timeout per webhook, and a few such
// Canaries stop every other one's rollouts and rollbacks.
//
// Two bounds, both the operator's:
//   - ceilings on the timeout of one provider query and of one webhook attempt, whatever
//     the Canary or MetricTemplate asks for;
//   - a budget per reconcile, shared by every query and webhook attempt (retries included)
//     of that reconcile: each gets the least of its own timeout, its ceiling and what is
//     left, and nothing starts once it is spent.
//
// Time is read from an injected clock, so tests spend a budget by stepping a fake clock;
// the calls themselves are bounded by context deadlines derived from what is left.
package budget

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/utils/clock"
)

// The defaults of the operator's flags.
const (
	DefaultReconcile         = 30 * time.Second
	DefaultMaxCheckTimeout   = 10 * time.Second
	DefaultMaxWebhookTimeout = 30 * time.Second
)

// Limits are the operator's bounds.
type Limits struct {
	// Reconcile is the time all queries and webhook calls of one reconcile share
	// (--reconcile-budget).
	Reconcile time.Duration
	// MaxCheckTimeout is the ceiling of one metric provider query's timeout
	// (--max-check-timeout).
	MaxCheckTimeout time.Duration
	// MaxWebhookTimeout is the ceiling of one webhook attempt's timeout
	// (--max-webhook-timeout).
	MaxWebhookTimeout time.Duration
}

// WithDefaults fills the zero fields with the defaults.
func (l Limits) WithDefaults() Limits {
	if l.Reconcile <= 0 {
		l.Reconcile = DefaultReconcile
	}
	if l.MaxCheckTimeout <= 0 {
		l.MaxCheckTimeout = DefaultMaxCheckTimeout
	}
	if l.MaxWebhookTimeout <= 0 {
		l.MaxWebhookTimeout = DefaultMaxWebhookTimeout
	}
	return l
}

// Validate refuses a negative bound, naming its flag. Zero keeps the default.
func (l Limits) Validate() error {
	for _, f := range []struct {
		flag string
		v    time.Duration
	}{{"--reconcile-budget", l.Reconcile}, {"--max-check-timeout", l.MaxCheckTimeout}, {"--max-webhook-timeout", l.MaxWebhookTimeout}} {
		if f.v < 0 {
			return fmt.Errorf("%s: %s is negative", f.flag, f.v)
		}
	}
	return nil
}

// Budget is what one reconcile may still spend. A nil *Budget bounds nothing: the calls
// made outside a Canary's reconcile (the operator's own notifications) take their own
// timeouts.
type Budget struct {
	limits   Limits
	clock    clock.PassiveClock
	deadline time.Time
}

// Start opens a budget of l.Reconcile from now on clk.
func Start(clk clock.PassiveClock, l Limits) *Budget {
	l = l.WithDefaults()
	return &Budget{limits: l, clock: clk, deadline: clk.Now().Add(l.Reconcile)}
}

// Remaining is what is left of the budget; never negative.
func (b *Budget) Remaining() time.Duration {
	return max(b.deadline.Sub(b.clock.Now()), 0)
}

// Spent says that nothing is left: no call may start.
func (b *Budget) Spent() bool { return b != nil && b.Remaining() <= 0 }

// ErrSpent is a call cut, or not retried, because the reconcile's budget was spent.
var ErrSpent = errors.New("the reconcile's time budget for checks and webhooks (--reconcile-budget) is spent")

// ErrNotRun is a call that did not start because the budget was spent; it is an ErrSpent.
// Its message is what the status of the check or gate says.
var ErrNotRun = fmt.Errorf("not run: %w", ErrSpent)

// Kind is what a call is, for its ceiling.
type Kind int

// The kinds of call.
const (
	// Query is one metric provider query.
	Query Kind = iota
	// Webhook is one attempt of a webhook call.
	Webhook
)

func (k Kind) String() string {
	if k == Webhook {
		return "webhook"
	}
	return "query"
}

func (k Kind) flag() string {
	if k == Webhook {
		return "--max-webhook-timeout"
	}
	return "--max-check-timeout"
}

// Grant is the time one call may take.
type Grant struct {
	// Timeout is the least of what was asked, the ceiling and what is left.
	Timeout time.Duration
	// Asked is the timeout the Canary or template asked for.
	Asked time.Duration
	// Ceiling is the operator's ceiling when it lowered Asked, else 0.
	Ceiling time.Duration
	// Cut: what was left of the budget is less than the call would otherwise get.
	Cut  bool
	kind Kind
}

// Grant gives a call of kind k that asks for asked its timeout, or ErrNotRun when nothing
// is left. A nil budget grants what is asked.
func (b *Budget) Grant(k Kind, asked time.Duration) (Grant, error) {
	g := b.Cap(k, asked)
	if b == nil {
		return g, nil
	}
	left := b.Remaining()
	if left <= 0 {
		return g, ErrNotRun
	}
	if left < g.Timeout {
		g.Timeout, g.Cut = left, true
	}
	return g, nil
}

// Cap is asked lowered to the ceiling of k, whatever is left of the budget: the timeout a
// client is built with (each call is then cut to what is left by its context); its Note
// says how the ceiling lowered it.
func (b *Budget) Cap(k Kind, asked time.Duration) Grant {
	g := Grant{Timeout: asked, Asked: asked, kind: k}
	if b == nil {
		return g
	}
	ceiling := b.limits.MaxCheckTimeout
	if k == Webhook {
		ceiling = b.limits.MaxWebhookTimeout
	}
	if asked > ceiling {
		g.Timeout, g.Ceiling = ceiling, ceiling
	}
	return g
}

// Note says how the operator's ceiling lowered the timeout, "" when it did not: for the
// status of the check or gate, so that the tenant sees its setting is not the one in force.
func (g Grant) Note() string {
	if g.Ceiling == 0 {
		return ""
	}
	return fmt.Sprintf("%s timeout %s lowered to the operator's ceiling %s (%s)", g.kind, g.Asked, g.Ceiling, g.kind.flag())
}

// CutNote says, when the call got less than its timeout because the budget was nearly
// spent, so, for the message of a call that timed out ("" otherwise).
func (g Grant) CutNote() string {
	if !g.Cut {
		return ""
	}
	return fmt.Sprintf("%s given %s, what was left of the reconcile's time budget (--reconcile-budget)", g.kind, g.Timeout)
}

// WithNote appends a note (a ceiling that lowered a timeout) to a status message.
func WithNote(msg, note string) string {
	switch {
	case note == "":
		return msg
	case msg == "":
		return note
	}
	return msg + " (" + note + ")"
}

// Bound returns ctx with a deadline no later than the budget's end, for the calls that are
// not granted one by one (resolving a host name before a webhook is called): the budget
// bounds them too. A nil budget returns ctx as it is.
func (b *Budget) Bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if b == nil {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, b.Remaining())
}

type contextKey struct{}

// NewContext returns ctx carrying b: the analysis and the webhook caller take their grants
// from the budget of the reconcile that calls them.
func NewContext(ctx context.Context, b *Budget) context.Context {
	return context.WithValue(ctx, contextKey{}, b)
}

// FromContext is the budget ctx carries, nil when none.
func FromContext(ctx context.Context) *Budget {
	b, _ := ctx.Value(contextKey{}).(*Budget)
	return b
}
