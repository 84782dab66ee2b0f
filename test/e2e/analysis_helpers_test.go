package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/hooks"
	"canopy.dev/canopy/test/meshsim"
	"canopy.dev/canopy/test/testenv"
)

// The A/B scenario's header; the simulator puts it on a share of every stream's requests.
const (
	insiderHeader   = "x-canary"
	insiderValue    = "insider"
	insiderFraction = 0.3
)

// checkWindow is the metrics' look-back: several analysis intervals, so that a check sees
// enough requests, and short, so that old traffic leaves it quickly.
const checkWindow = 10 * time.Second

// minRequests is the checks' minRequests: at a 10% step (10 requests a second) it holds the
// first check until the window has a couple of scrapes of the new revision, so that a
// series born with the first errors already counts in rate().
const minRequests = 20

// analysisBed is what the analysis scenarios share: one mesh simulator and the real
// Prometheus scraping it for the main operator, and a second Prometheus, scraping the same
// simulator, that the outage scenario stops without disturbing the others.
type analysisBed struct {
	sim        *meshsim.Sim
	prom       *testenv.Prometheus
	outageProm *testenv.Prometheus
}

// startAnalysisBed starts the simulator for namespaces and both Prometheus servers; they
// stop when t ends.
func startAnalysisBed(t *testing.T, namespaces []string) *analysisBed {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sim, err := meshsim.Start(ctx, env.Config, meshsim.Options{
		XDSAddress:        env.Istio.XDSAddress,
		RequestsPerSecond: 100,
		Headers:           map[string]string{insiderHeader: insiderValue},
		HeaderFraction:    insiderFraction,
		Namespaces:        namespaces,
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-sim.Done() })
	b := &analysisBed{sim: sim}
	for _, p := range []**testenv.Prometheus{&b.prom, &b.outageProm} {
		prom, err := testenv.StartPrometheus(testenv.PrometheusOptions{Targets: []string{sim.Addr()}, ScrapeInterval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("Prometheus %s log:\n%s", prom.URL(), prom.Log())
			}
			if err := prom.Close(); err != nil {
				t.Errorf("closing Prometheus: %v", err)
			}
		})
		*p = prom
	}
	return b
}

// successRate is the built-in success-rate check over checkWindow.
func successRate(min float64) meshv1.CanaryMetric {
	return meshv1.CanaryMetric{
		Name: "request-success-rate", ThresholdRange: meshv1.ThresholdRange{Min: &min},
		Interval: meshv1.Duration(checkWindow.String()), MinRequests: ptr.To[int64](minRequests),
	}
}

// requestDuration is the built-in p99 latency check over checkWindow.
func requestDuration(max float64) meshv1.CanaryMetric {
	return meshv1.CanaryMetric{
		Name: "request-duration", ThresholdRange: meshv1.ThresholdRange{Max: &max},
		Interval: meshv1.Duration(checkWindow.String()), MinRequests: ptr.To[int64](minRequests),
	}
}

// analysisCanary is a weighted Canary for reviews with a 3s interval and the given checks.
func analysisCanary(ns string, stepWeight, maxWeight int32, metrics ...meshv1.CanaryMetric) *meshv1.Canary {
	c := newCanary(ns, "reviews", stepWeight, maxWeight)
	c.Spec.Analysis.Interval = "3s"
	c.Spec.Analysis.Metrics = metrics
	return c
}

// deployReviews creates reviews v1 (one replica) and its Canary, and waits until the
// primary serves.
func deployReviews(t *testing.T, c *meshv1.Canary) {
	t.Helper()
	if err := env.Client.Create(t.Context(), newDeployment(c.Namespace, "reviews", "bookinfo/reviews:v1", 1)); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logCanary(t, c.Namespace, c.Name)
		}
	})
	waitPhase(t, c.Namespace, c.Name, meshv1.PhaseInitialized)
}

// newRevision gives reviews a new image and declares how its pods answer, in the
// simulator's pod template annotations: the only difference between a good and a bad
// revision here.
func newRevision(t *testing.T, ns, image string, behaviour map[string]string) {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews"}, d); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.Template.Spec.Containers[0].Image = image
	d.Spec.Template.Annotations = behaviour
	if err := env.Client.Patch(t.Context(), d, patch); err != nil {
		t.Fatal(err)
	}
}

func findCheck(c *meshv1.Canary, name string) *meshv1.CheckStatus {
	for i := range c.Status.Checks {
		if c.Status.Checks[i].Name == name {
			return &c.Status.Checks[i]
		}
	}
	return nil
}

func findGate(c *meshv1.Canary, name string) *meshv1.GateStatus {
	for i := range c.Status.Gates {
		if c.Status.Gates[i].Name == name {
			return &c.Status.Gates[i]
		}
	}
	return nil
}

// condition returns the Canary's condition of type t, failing the test when there is none.
func condition(t *testing.T, c *meshv1.Canary, typ string) metav1.Condition {
	t.Helper()
	cond := meta.FindStatusCondition(c.Status.Conditions, typ)
	if cond == nil {
		t.Fatalf("no %s condition in %+v", typ, c.Status.Conditions)
	}
	return *cond
}

// canaryEvents lists the events (events.k8s.io) about the Canary with reason, oldest first.
func canaryEvents(t *testing.T, ns, name, reason string) []eventsv1.Event {
	t.Helper()
	return eventsAbout(t, ns, "Canary", name, reason)
}

// eventsAbout lists the events about the object of kind with reason (any when ""),
// oldest first.
func eventsAbout(t *testing.T, ns, kind, name, reason string) []eventsv1.Event {
	t.Helper()
	list := &eventsv1.EventList{}
	if err := env.Client.List(t.Context(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == kind && e.Regarding.Name == name && (reason == "" || e.Reason == reason) {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b eventsv1.Event) int { return a.EventTime.Compare(b.EventTime.Time) })
	return out
}

// waitEvents waits until exactly n events about the Canary have reason, and returns them.
func waitEvents(t *testing.T, ns, name, reason string, n int) []eventsv1.Event {
	t.Helper()
	var evs []eventsv1.Event
	testenv.Eventually(t, 30*time.Second, func() error {
		evs = canaryEvents(t, ns, name, reason)
		if len(evs) != n {
			return fmt.Errorf("%d %s events, want %d: %s", len(evs), reason, n, notes(evs))
		}
		return nil
	})
	return evs
}

func notes(evs []eventsv1.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "\n  %s %s: %s", e.Type, e.Reason, e.Note)
	}
	return b.String()
}

// logCanary logs where a Canary stands and what it said, for a failing test.
func logCanary(t *testing.T, ns, name string) {
	c := &meshv1.Canary{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, c); err != nil {
		t.Logf("reading Canary %s/%s: %v", ns, name, err)
		return
	}
	st, _ := json.MarshalIndent(c.Status, "", "  ")
	t.Logf("Canary %s/%s status:\n%s", ns, name, st)
	list := &eventsv1.EventList{}
	if err := env.Client.List(context.Background(), list, client.InNamespace(ns)); err == nil {
		var evs []eventsv1.Event
		for _, e := range list.Items {
			if e.Regarding.Name == name {
				evs = append(evs, e)
			}
		}
		slices.SortStableFunc(evs, func(a, b eventsv1.Event) int { return a.EventTime.Compare(b.EventTime.Time) })
		t.Logf("events:%s", notes(evs))
	}
}

// promQuery runs an instant query and returns its single value; ok is false when the
// result is empty.
func promQuery(ctx context.Context, base, query string) (value float64, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query?query="+url.QueryEscape(query), nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer func() { _ = resp.Body.Close() }()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, false, fmt.Errorf("query %q: %w", query, err)
	}
	switch {
	case r.Status != "success":
		return 0, false, fmt.Errorf("query %q: %s", query, r.Error)
	case len(r.Data.Result) == 0:
		return 0, false, nil
	case len(r.Data.Result) > 1:
		return 0, false, fmt.Errorf("query %q: %d series, want one", query, len(r.Data.Result))
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, false, fmt.Errorf("query %q: value %v: %w", query, r.Data.Result[0].Value, err)
	}
	return v, true, nil
}

// reviewsSelector selects Istio's server-side metrics of the canary workload (the target
// Deployment reviews) in ns: what canopy's built-in checks read.
func reviewsSelector(ns string) string {
	return fmt.Sprintf(`reporter="destination",destination_workload_namespace=%q,destination_workload="reviews"`, ns)
}

// canaryRequests is the number of requests the canary workload answered in checkWindow, as
// Prometheus has it.
func canaryRequests(ctx context.Context, prom, ns string) (float64, error) {
	v, _, err := promQuery(ctx, prom, fmt.Sprintf(`sum(increase(istio_requests_total{%s}[%s]))`, reviewsSelector(ns), checkWindow))
	return v, err
}

// waitQuiet waits until no request to the canary workload is left in the checks' window,
// such as those it answered while the primary was being initialized: then every
// measurement of the next revision is of that revision alone.
func waitQuiet(t *testing.T, prom, ns string) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, func() error {
		n, err := canaryRequests(t.Context(), prom, ns)
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%v requests to the canary workload in the last %s", n, checkWindow)
		}
		return nil
	})
}

// abTraffic sums the requests of ns's streams that the canary workload answered, with and
// without the A/B header; mirrored copies are left out.
func abTraffic(s meshsim.Stats, ns string) (tagged, untagged int64) {
	tagged = s.Requests(func(k meshsim.RouteKey) bool {
		return k.Namespace == ns && k.WorkloadNamespace == ns && k.Workload == "reviews" && !k.Mirror && k.Tagged
	})
	untagged = s.Requests(func(k meshsim.RouteKey) bool {
		return k.Namespace == ns && k.WorkloadNamespace == ns && k.Workload == "reviews" && !k.Mirror && !k.Tagged
	})
	return tagged, untagged
}

// gateHook is a confirm-* webhook served on 127.0.0.1: closed (403) until the test opens it.
type gateHook struct {
	srv  *httptest.Server
	open atomic.Bool

	mu    sync.Mutex
	calls []hooks.Payload
}

func startGateHook(t *testing.T) *gateHook {
	t.Helper()
	g := &gateHook{}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p hooks.Payload
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		g.calls = append(g.calls, p)
		g.mu.Unlock()
		if !g.open.Load() {
			http.Error(w, "closed by the test", http.StatusForbidden)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

// payloads returns the calls received so far.
func (g *gateHook) payloads() []hooks.Payload {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.calls)
}
