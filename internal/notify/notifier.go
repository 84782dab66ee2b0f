// Package notify announces Canary rollout events to Slack, Microsoft Teams and generic
// webhooks: read from the status transitions the reconciler wrote, filtered, deduplicated,
// rate limited per Canary and per channel, queued and sent asynchronously with retries, so
// that a slow or failing channel never delays a reconcile.
package notify

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"k8s.io/utils/clock"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/hooks"
)

// Outcomes of a notification, the outcome label of canopy_notifications_total.
const (
	OutcomeSent        = "sent"
	OutcomeFailed      = "failed"
	OutcomeRateLimited = "rate_limited"
	OutcomeDuplicate   = "duplicate"
	OutcomeQueueFull   = "queue_full"
)

var (
	notifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "canopy_notifications_total",
		Help: "Rollout notifications by channel, event and outcome (sent, failed, rate_limited, duplicate, queue_full).",
	}, []string{"channel", "event", "outcome"})
	registerOnce sync.Once
)

// Collectors are this package's metrics, for documentation and tests.
func Collectors() []prometheus.Collector { return []prometheus.Collector{notifications} }

// Poster sends a JSON body; *hooks.Client is one.
type Poster interface {
	Post(ctx context.Context, rawURL string, body []byte, timeout time.Duration, retries int) error
}

// Options tune a Notifier beyond its Config.
type Options struct {
	// Clock drives rate limiting and deduplication (default: the real clock).
	Clock clock.PassiveClock
	// Poster sends the messages (default: a hooks.Client with the config's URL policy).
	Poster Poster
	// Backoff is the wait before a retry (default 1s, doubled up to 2s by the hooks client).
	Backoff time.Duration
	// Log receives failed sends.
	Log logr.Logger
}

// Notifier is a controllers.RolloutObserver and a manager Runnable (its senders).
type Notifier struct {
	clock    clock.PassiveClock
	poster   Poster
	log      logr.Logger
	channels []*channel
}

type channel struct {
	Channel
	events     []Kind
	perCanary  RateLimit
	global     *rate.Limiter
	dedup      time.Duration
	queue      chan message
	mu         sync.Mutex
	limiters   map[string]*rate.Limiter // by namespace/name
	sent       map[string]time.Time     // body digest -> when queued
	lastSweep  time.Time
	retries    int
	timeout    time.Duration
	namespaces []string
}

type message struct {
	event Event
	body  []byte
}

// New builds a Notifier from a validated Config.
func New(cfg *Config, opts Options) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Poster == nil {
		policy, err := hooks.ParsePolicy(nil, cfg.AllowedCIDRs)
		if err != nil {
			return nil, fmt.Errorf("allowedCIDRs: %w", err)
		}
		backoff := opts.Backoff
		if backoff <= 0 {
			backoff = time.Second
		}
		opts.Poster = hooks.NewClient(policy, hooks.ClientOptions{Backoff: backoff, UserAgent: "canopy-notifications"})
	}
	registerOnce.Do(func() { crmetrics.Registry.MustRegister(notifications) })
	n := &Notifier{clock: opts.Clock, poster: opts.Poster, log: opts.Log}
	queueSize := cfg.QueueSize
	if queueSize == 0 {
		queueSize = defaultQueueSize
	}
	dedup := defaultDedupWindow
	if cfg.DedupWindow != nil {
		dedup = cfg.DedupWindow.Duration
	}
	for _, c := range cfg.Channels {
		ch := &channel{
			Channel: c, events: kindsOr(c.Events, cfg.Events, defaultEvents),
			perCanary: limitOr(c.RateLimit, cfg.RateLimit, &defaultRateLimit),
			dedup:     dedup, queue: make(chan message, queueSize),
			limiters: map[string]*rate.Limiter{}, sent: map[string]time.Time{},
			retries: defaultRetries, timeout: 0, namespaces: c.Namespaces,
		}
		ch.global = newLimiter(limitOr(c.GlobalRateLimit, cfg.GlobalRateLimit, &defaultGlobalRateLimit))
		if c.Retries != nil {
			ch.retries = *c.Retries
		}
		if c.Timeout != nil {
			ch.timeout = c.Timeout.Duration
		}
		n.channels = append(n.channels, ch)
	}
	return n, nil
}

// AllowLoopback returns an allowed-CIDR list that lets a test's httptest servers on
// 127.0.0.1 be reached: the explicit way the URL policy is lifted for tests.
func AllowLoopback() []string { return []string{netip.MustParsePrefix("127.0.0.1/32").String()} }

func kindsOr(kinds ...[]Kind) []Kind {
	for _, k := range kinds {
		if len(k) > 0 {
			return k
		}
	}
	return nil
}

func limitOr(limits ...*RateLimit) RateLimit {
	for _, l := range limits {
		if l != nil {
			return *l
		}
	}
	return RateLimit{}
}

// redactedURL shows a webhook URL without its path and query, where Slack and Teams keep
// their secret.
func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(webhook URL)"
	}
	return u.Scheme + "://" + u.Host + "/…"
}

// scrub removes the channel's URL from an error text (the HTTP client and the URL policy
// quote it).
func scrub(msg, raw string) string {
	shown := redactedURL(raw)
	msg = strings.ReplaceAll(msg, raw, shown)
	if u, err := url.Parse(raw); err == nil {
		msg = strings.ReplaceAll(msg, u.String(), shown)
		msg = strings.ReplaceAll(msg, u.Redacted(), shown)
	}
	return msg
}

func newLimiter(r RateLimit) *rate.Limiter {
	return rate.NewLimiter(rate.Every(r.Every.Duration), r.Burst)
}

// ObserveRollout queues the events of a status transition for every channel that wants
// them. It never blocks: what the rate limits, deduplication or a full queue refuse is
// dropped and counted.
func (n *Notifier) ObserveRollout(_ context.Context, before *meshv1.CanaryStatus, after *meshv1.Canary) {
	for _, e := range Events(before, after) {
		for _, ch := range n.channels {
			n.offer(ch, e)
		}
	}
}

func (n *Notifier) offer(ch *channel, e Event) {
	if !slices.Contains(ch.events, e.Kind) || (len(ch.namespaces) > 0 && !slices.Contains(ch.namespaces, e.Namespace)) {
		return
	}
	body, err := Body(ch.Type, e)
	if err != nil {
		n.count(ch, e, OutcomeFailed)
		return
	}
	now := n.clock.Now()
	ch.mu.Lock()
	outcome := ch.admit(now, e)
	ch.mu.Unlock()
	if outcome != "" {
		n.count(ch, e, outcome)
		return
	}
	select {
	case ch.queue <- message{event: e, body: body}:
	default:
		n.count(ch, e, OutcomeQueueFull)
	}
}

// admit applies deduplication and the two token buckets; "" admits the message. Called
// with ch.mu held.
func (ch *channel) admit(now time.Time, e Event) string {
	ch.sweep(now)
	key := dedupKey(e)
	if ch.dedup > 0 {
		if at, ok := ch.sent[key]; ok && now.Sub(at) < ch.dedup {
			return OutcomeDuplicate
		}
	}
	canary := e.Namespace + "/" + e.Name
	l, ok := ch.limiters[canary]
	if !ok {
		l = newLimiter(ch.perCanary)
		ch.limiters[canary] = l
	}
	// Both buckets must have a token before either is spent.
	if l.TokensAt(now) < 1 || ch.global.TokensAt(now) < 1 {
		return OutcomeRateLimited
	}
	l.AllowN(now, 1)
	ch.global.AllowN(now, 1)
	if ch.dedup > 0 {
		ch.sent[key] = now
	}
	return ""
}

// dedupKey is what makes two messages identical: all of the event but its time, so that a
// Canary flapping between the same states says so once per window.
func dedupKey(e Event) string {
	e.Time = time.Time{}
	return fmt.Sprintf("%+v", e)
}

// sweep forgets, at most once a minute, the messages older than the dedup window and the
// Canaries whose bucket is full again, so the maps stay as small as the recent traffic.
func (ch *channel) sweep(now time.Time) {
	if now.Sub(ch.lastSweep) < time.Minute {
		return
	}
	ch.lastSweep = now
	for k, at := range ch.sent {
		if now.Sub(at) >= ch.dedup {
			delete(ch.sent, k)
		}
	}
	for k, l := range ch.limiters {
		if l.TokensAt(now) >= float64(ch.perCanary.Burst) {
			delete(ch.limiters, k)
		}
	}
}

func (n *Notifier) count(ch *channel, e Event, outcome string) {
	notifications.WithLabelValues(ch.Name, string(e.Kind), outcome).Inc()
}

// Start sends the queued messages, one sender per channel, until ctx ends.
func (n *Notifier) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, ch := range n.channels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.send(ctx, ch)
		}()
	}
	wg.Wait()
	return nil
}

// NeedLeaderElection is false: only the leader reconciles, so only the leader has anything
// to send, and a replica losing the lease still sends what it had queued.
func (n *Notifier) NeedLeaderElection() bool { return false }

func (n *Notifier) send(ctx context.Context, ch *channel) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-ch.queue:
			if err := n.poster.Post(ctx, ch.URL, m.body, ch.timeout, ch.retries); err != nil {
				n.count(ch, m.event, OutcomeFailed)
				n.log.Info("Notification failed", "channel", ch.Name, "event", m.event.Kind,
					"canary", m.event.Namespace+"/"+m.event.Name, "url", redactedURL(ch.URL), "error", scrub(err.Error(), ch.URL))
				continue
			}
			n.count(ch, m.event, OutcomeSent)
		}
	}
}
