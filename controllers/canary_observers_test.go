package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/apply"
	"canopy.dev/canopy/internal/metrics"
	"canopy.dev/canopy/internal/notify"
	"canopy.dev/canopy/test/testenv"
)

// receiver is a generic notification webhook: it keeps every event it was sent.
type receiver struct {
	mu     sync.Mutex
	events []notify.Event
	url    string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var e notify.Event
		body, _ := io.ReadAll(req.Body)
		if err := json.Unmarshal(body, &e); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.events = append(r.events, e)
		r.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func (r *receiver) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, fmt.Sprintf("%s@%d", e.Kind, e.Weight))
	}
	return out
}

// waitFor waits until the receiver got want, in order, and fails if it got anything else.
func (r *receiver) waitFor(t *testing.T, want ...string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		got := r.kinds()
		if len(got) > len(want) || !slices.Equal(got, want[:len(got)]) {
			t.Fatalf("notifications %v, want %v", got, want)
		}
		if len(got) < len(want) {
			return fmt.Errorf("notifications %v so far, want %v", got, want)
		}
		return nil
	})
}

// startNotifier runs a notifier sending every kind of event to rcv, without rate limits
// that would matter here.
func startNotifier(t *testing.T, h *harness, rcv *receiver) *notify.Notifier {
	t.Helper()
	n, err := notify.New(&notify.Config{
		Events:       notify.Kinds,
		RateLimit:    &notify.RateLimit{Burst: 100, Every: metav1.Duration{Duration: time.Second}},
		AllowedCIDRs: notify.AllowLoopback(),
		Channels:     []notify.Channel{{Name: "observer-test", Type: notify.Webhook, URL: rcv.url}},
	}, notify.Options{Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = n.Start(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

// counter reads one series of a counter (or a histogram's count) from controller-runtime's
// registry, as the metrics endpoint would serve it.
func counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if matches(m, labels) {
				if h := m.GetHistogram(); h != nil {
					return float64(h.GetSampleCount())
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func matches(m *dto.Metric, labels map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := labels[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(labels)
}

// A rollout is announced step by step and counted once; an operator restarted afterwards
// (a new reconciler and a new notifier, with nothing in memory) announces and counts nothing
// again, and announces the next rollout.
func TestCanaryTransitionsAreAnnouncedAndCountedOnce(t *testing.T) {
	h := newHarness(t)
	metrics.Register()
	rcv := newReceiver(t)
	h.r.Observers = []RolloutObserver{metrics.Rollouts{}, startNotifier(t, h, rcv)}

	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
	h.startRollout("reviews:v2")
	h.tick(time.Minute)
	h.tick(time.Minute)
	expectPhase(t, h.tick(time.Minute), meshv1.PhasePromoting)
	h.markReady("reviews-primary")
	h.tick(time.Minute)
	expectPhase(t, h.tick(time.Minute), meshv1.PhaseSucceeded)
	rcv.waitFor(t, "started@0", "step@10", "step@20", "step@30", "promoted@0")

	ns := map[string]string{"namespace": h.ns, "name": "reviews"}
	with := func(k, v string) map[string]string { m := maps.Clone(ns); m[k] = v; return m }
	checks := counter(t, "canopy_analysis_check_results_total", with("outcome", "Pass"))
	if checks < 3 {
		t.Fatalf("%v passed check results counted, want at least the 3 steps'", checks)
	}
	expectCounts := func() {
		t.Helper()
		for phase, want := range map[string]float64{"Progressing": 1, "Promoting": 1, "Finalising": 1, "Succeeded": 1} {
			if got := counter(t, "canopy_canary_phase_transitions_total", with("phase", phase)); got != want {
				t.Errorf("transitions to %s counted %v times, want %v", phase, got, want)
			}
		}
		if got := counter(t, "canopy_canary_rollout_duration_seconds", map[string]string{"namespace": h.ns, "outcome": "promoted"}); got != 1 {
			t.Errorf("%v promoted rollout durations observed, want 1", got)
		}
	}
	expectCounts()

	// The restart: nothing of the old reconciler or notifier survives.
	rcv2 := newReceiver(t)
	counted := h.countingClient()
	h.r = &CanaryReconciler{
		Client: counted, Applier: &apply.Applier{Client: counted, Reader: counted}, Recorder: h.r.Recorder,
		Analyzer: h.analyzer, Hooks: h.hooks, Clock: h.clock,
		Observers: []RolloutObserver{metrics.Rollouts{}, startNotifier(t, h, rcv2)},
	}
	expectPhase(t, h.tick(time.Minute), meshv1.PhaseSucceeded)
	expectCounts()
	if c := counter(t, "canopy_analysis_check_results_total", with("outcome", "Pass")); c != checks {
		t.Errorf("check results went from %v to %v with no check run", checks, c)
	}
	h.startRollout("reviews:v3")
	// Only the new rollout: had the promotion been announced again it would have come first.
	rcv2.waitFor(t, "started@0", "step@10")

	// A deleted Canary's series go with it (those of its hand-over too).
	h.deleteCanary()
	h.annotate("reviews", meshv1.AnnotationRequest, "confirm-deletion:1")
	h.handOver()
	for _, name := range []string{"canopy_canary_phase_transitions_total", "canopy_analysis_check_results_total"} {
		if n := seriesOf(t, name, ns); n != 0 {
			t.Errorf("%d series of %s left for the deleted Canary", n, name)
		}
	}
}

// seriesOf counts the series of a metric family whose labels include labels.
func seriesOf(t *testing.T, name string, labels map[string]string) int {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if matches(m, labels) {
				n++
			}
		}
	}
	return n
}
