package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// endpoint is an httptest server standing in for Slack, Teams or a generic receiver. It
// answers with the statuses in fail first, then 200.
type endpoint struct {
	*httptest.Server
	bodies chan []byte
	fail   []int
	calls  atomic.Int32
	hold   chan struct{} // when set, every request waits for it to be closed
	inside chan struct{} // receives a value when a request arrives (with hold)
}

func newEndpoint(t *testing.T, fail ...int) *endpoint {
	e := &endpoint{bodies: make(chan []byte, 100), fail: fail}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(e.calls.Add(1))
		if e.hold != nil {
			e.inside <- struct{}{}
			<-e.hold
		}
		if r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want JSON", http.StatusUnsupportedMediaType)
			return
		}
		if n <= len(e.fail) {
			w.WriteHeader(e.fail[n-1])
			return
		}
		b, _ := io.ReadAll(r.Body)
		e.bodies <- b
	}))
	t.Cleanup(e.Close)
	return e
}

// next waits for the next delivered body.
func (e *endpoint) next(t *testing.T) []byte {
	t.Helper()
	select {
	case b := <-e.bodies:
		return b
	case <-time.After(30 * time.Second):
		t.Fatal("no notification arrived")
		return nil
	}
}

// seq gives each test run its own channel names, so that the process-wide counters start
// at zero for it (go test -count=N).
var seq atomic.Int32

func uniq(name string) string { return fmt.Sprintf("%s-%d", name, seq.Add(1)) }

func startNotifier(t *testing.T, cfg *Config, clk *clocktesting.FakeClock) *Notifier {
	t.Helper()
	cfg.AllowedCIDRs = append(cfg.AllowedCIDRs, AllowLoopback()...)
	n, err := New(cfg, Options{Clock: clk, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = n.Start(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

func canary(ns, name string, st meshv1.CanaryStatus) *meshv1.Canary {
	return &meshv1.Canary{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Status: st}
}

func promotedTransition(ns, name string) (*meshv1.CanaryStatus, *meshv1.Canary) {
	before := &meshv1.CanaryStatus{Phase: meshv1.PhaseFinalising, CurrentRevision: "7d9f", RolloutStarted: at(0)}
	after := *before
	after.Phase, after.LastTransitionTime = meshv1.PhaseSucceeded, at(5*time.Minute)
	after.Conditions = []metav1.Condition{{Type: meshv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Succeeded", Message: "Revision 7d9f <promoted> & serving"}}
	return before, canary(ns, name, after)
}

func promoted(n *Notifier, ns, name string) {
	before, after := promotedTransition(ns, name)
	n.ObserveRollout(context.Background(), before, after)
}

func stepped(n *Notifier, ns, name string, from, to int32) {
	before, after := stepTransition(ns, name, from, to)
	n.ObserveRollout(context.Background(), before, after)
}

func stepTransition(ns, name string, from, to int32) (*meshv1.CanaryStatus, *meshv1.Canary) {
	before := &meshv1.CanaryStatus{Phase: meshv1.PhaseProgressing, CanaryWeight: from, CurrentRevision: "7d9f", RolloutStarted: at(0)}
	after := *before
	after.CanaryWeight = to
	return before, canary(ns, name, after)
}

func TestNotifierSendsEachChannelsFormat(t *testing.T) {
	slackCh, teamsCh, genericCh := uniq("slack"), uniq("teams"), uniq("generic")
	slack, teams, generic := newEndpoint(t), newEndpoint(t), newEndpoint(t)
	n := startNotifier(t, &Config{Channels: []Channel{
		{Name: slackCh, Type: Slack, URL: slack.URL + "/services/T0/B0/secret"},
		{Name: teamsCh, Type: Teams, URL: teams.URL + "/workflows/secret"},
		{Name: genericCh, Type: Webhook, URL: generic.URL},
	}}, clocktesting.NewFakeClock(t0))
	promoted(n, "shop", "reviews")

	var s struct {
		Text   string
		Blocks []struct {
			Type string
			Text struct{ Type, Text string }
		}
	}
	if err := json.Unmarshal(slack.next(t), &s); err != nil {
		t.Fatal(err)
	}
	if s.Text != "Canary shop/reviews: revision 7d9f promoted" || len(s.Blocks) != 3 || s.Blocks[0].Text.Type != "mrkdwn" ||
		!strings.Contains(s.Blocks[0].Text.Text, ":large_green_circle: *Canary shop/reviews: revision 7d9f promoted*") {
		t.Errorf("Slack message %+v", s)
	}

	var m struct {
		Type        string
		Attachments []struct {
			ContentType string
			Content     struct {
				Type, Version string
				Body          []map[string]any
			}
		}
	}
	if err := json.Unmarshal(teams.next(t), &m); err != nil {
		t.Fatal(err)
	}
	if m.Type != "message" || len(m.Attachments) != 1 || m.Attachments[0].ContentType != "application/vnd.microsoft.card.adaptive" ||
		m.Attachments[0].Content.Type != "AdaptiveCard" || m.Attachments[0].Content.Body[0]["text"] != "Canary shop/reviews: revision 7d9f promoted" ||
		m.Attachments[0].Content.Body[0]["color"] != "Good" {
		t.Errorf("Teams message %+v", m)
	}

	var e Event
	if err := json.Unmarshal(generic.next(t), &e); err != nil {
		t.Fatal(err)
	}
	want := Event{Kind: Promoted, Namespace: "shop", Name: "reviews", Phase: meshv1.PhaseSucceeded, Revision: "7d9f",
		Message: "Revision 7d9f <promoted> & serving", Time: t0.Add(5 * time.Minute)}
	if e != want {
		t.Errorf("generic event %+v, want %+v", e, want)
	}
	for _, ch := range []string{slackCh, teamsCh, genericCh} {
		waitCount(t, ch, Promoted, OutcomeSent, 1)
	}
}

// waitCount waits until canopy_notifications_total reaches want: the sender counts after the
// endpoint answered.
func waitCount(t *testing.T, channel string, k Kind, outcome string, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := testutil.ToFloat64(notifications.WithLabelValues(channel, string(k), outcome))
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("canopy_notifications_total{channel=%q,event=%q,outcome=%q} = %v, want %v", channel, k, outcome, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func weightOf(t *testing.T, b []byte) string {
	t.Helper()
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s/%s@%d", e.Namespace, e.Name, e.Weight)
}

// A flapping Canary is held to its own bucket, and all Canaries together to the channel's.
func TestNotifierRateLimits(t *testing.T) {
	rateCh := uniq("rate")
	ep := newEndpoint(t)
	clk := clocktesting.NewFakeClock(t0)
	n := startNotifier(t, &Config{
		Events:          []Kind{Step},
		RateLimit:       &RateLimit{Burst: 2, Every: metav1.Duration{Duration: time.Minute}},
		GlobalRateLimit: &RateLimit{Burst: 3, Every: metav1.Duration{Duration: 10 * time.Minute}},
		Channels:        []Channel{{Name: rateCh, Type: Webhook, URL: ep.URL}},
	}, clk)
	step := func(name string, from, to int32) { stepped(n, "rl", name, from, to) }

	step("a", 0, 10)
	step("a", 10, 20)
	step("a", 20, 30) // a's bucket is empty
	step("b", 0, 10)  // the channel's third and last token
	step("c", 0, 10)  // the channel's bucket is empty
	clk.Step(time.Minute)
	step("a", 30, 40) // a has a token again, the channel has none
	clk.Step(10 * time.Minute)
	step("c", 10, 20) // both have tokens again

	var got []string
	for range 4 {
		got = append(got, weightOf(t, ep.next(t)))
	}
	want := []string{"rl/a@10", "rl/a@20", "rl/b@10", "rl/c@20"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	waitCount(t, rateCh, Step, OutcomeRateLimited, 3)
	waitCount(t, rateCh, Step, OutcomeSent, 4)
}

// The same message twice within the dedup window is sent once; after it, again.
func TestNotifierDropsDuplicates(t *testing.T) {
	dedupCh := uniq("dedup")
	ep := newEndpoint(t)
	clk := clocktesting.NewFakeClock(t0)
	n := startNotifier(t, &Config{
		DedupWindow: &metav1.Duration{Duration: 10 * time.Minute},
		Channels:    []Channel{{Name: dedupCh, Type: Slack, URL: ep.URL}},
	}, clk)
	promoted(n, "dd", "reviews")
	promoted(n, "dd", "reviews") // the same transition seen again
	before, again := promotedTransition("dd", "reviews")
	again.Status.LastTransitionTime = at(7 * time.Minute) // the same message, later
	n.ObserveRollout(context.Background(), before, again)
	clk.Step(10 * time.Minute)
	promoted(n, "dd", "reviews")
	ep.next(t)
	ep.next(t)
	waitCount(t, dedupCh, Promoted, OutcomeSent, 2)
	waitCount(t, dedupCh, Promoted, OutcomeDuplicate, 2)
}

// A channel that does not answer fills its bounded queue; what does not fit is dropped, and
// ObserveRollout never waits.
func TestNotifierQueueIsBounded(t *testing.T) {
	slowCh := uniq("slow")
	ep := newEndpoint(t)
	ep.hold, ep.inside = make(chan struct{}), make(chan struct{}, 10)
	n := startNotifier(t, &Config{
		Events: []Kind{Step}, QueueSize: 1,
		RateLimit: &RateLimit{Burst: 10, Every: metav1.Duration{Duration: time.Second}},
		Channels:  []Channel{{Name: slowCh, Type: Webhook, URL: ep.URL}},
	}, clocktesting.NewFakeClock(t0))
	stepped(n, "q", "a", 0, 10)
	<-ep.inside                  // the sender is stuck in the first call
	stepped(n, "q", "a", 10, 20) // queued
	stepped(n, "q", "a", 20, 30) // dropped
	waitCount(t, slowCh, Step, OutcomeQueueFull, 1)
	close(ep.hold)
	if got := weightOf(t, ep.next(t)) + " " + weightOf(t, ep.next(t)); got != "q/a@10 q/a@20" {
		t.Fatalf("delivered %s, want q/a@10 q/a@20", got)
	}
}

// Failed attempts are retried with backoff; a channel that keeps failing is counted failed.
func TestNotifierRetries(t *testing.T) {
	flakyCh, downCh := uniq("flaky"), uniq("down")
	flaky := newEndpoint(t, http.StatusServiceUnavailable, http.StatusTooManyRequests)
	n := startNotifier(t, &Config{Channels: []Channel{{Name: flakyCh, Type: Teams, URL: flaky.URL, Retries: new(2)}}}, clocktesting.NewFakeClock(t0))
	promoted(n, "retry", "reviews")
	flaky.next(t)
	if c := flaky.calls.Load(); c != 3 {
		t.Fatalf("%d attempts, want 3 (two refused, one accepted)", c)
	}
	waitCount(t, flakyCh, Promoted, OutcomeSent, 1)

	down := newEndpoint(t, 500, 500, 500)
	n = startNotifier(t, &Config{Channels: []Channel{{Name: downCh, Type: Slack, URL: down.URL, Retries: new(1)}}}, clocktesting.NewFakeClock(t0))
	promoted(n, "retry", "reviews")
	waitCount(t, downCh, Promoted, OutcomeFailed, 1)
	if c := down.calls.Load(); c != 2 {
		t.Fatalf("%d attempts, want 2 (one retry)", c)
	}
}

// Without an explicit allowance the URL policy refuses loopback, as for rollout webhooks.
func TestNotifierKeepsTheURLPolicy(t *testing.T) {
	localCh := uniq("local")
	ep := newEndpoint(t)
	n, err := New(&Config{Channels: []Channel{{Name: localCh, Type: Webhook, URL: ep.URL + "/secret-path"}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = n.Start(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	promoted(n, "policy", "reviews")
	waitCount(t, localCh, Promoted, OutcomeFailed, 1)
	if c := ep.calls.Load(); c != 0 {
		t.Fatalf("the loopback endpoint was called %d times", c)
	}
}

func TestScrubHidesTheSecretPath(t *testing.T) {
	raw := "https://hooks.slack.com/services/T0/B0/secret"
	msg := scrub(`Post "`+raw+`": dial tcp: i/o timeout`, raw)
	if strings.Contains(msg, "secret") || !strings.Contains(msg, "https://hooks.slack.com/…") {
		t.Fatalf("scrubbed message %q", msg)
	}
}
