package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/internal/notify"
	"canopy.dev/canopy/test/testenv"
)

// notifications is a generic notification webhook (at /notify) and a rollout webhook (at
// /hook) in one test server.
type notifications struct {
	mu     sync.Mutex
	events []string
	hooks  int
	url    string
}

func startNotifications(t *testing.T) *notifications {
	n := &notifications{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n.mu.Lock()
		defer n.mu.Unlock()
		if r.URL.Path == "/hook" {
			n.hooks++
			return
		}
		var e notify.Event
		if err := json.Unmarshal(body, &e); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n.events = append(n.events, string(e.Kind))
	}))
	t.Cleanup(srv.Close)
	n.url = srv.URL
	return n
}

// waitFor waits until exactly want arrived, in order; anything else fails at once.
func (n *notifications) waitFor(t *testing.T, want ...string) {
	t.Helper()
	testenv.Eventually(t, 3*time.Minute, func() error {
		n.mu.Lock()
		got := slices.Clone(n.events)
		n.mu.Unlock()
		if len(got) > len(want) || !slices.Equal(got, want[:len(got)]) {
			t.Fatalf("notifications %v, want %v", got, want)
		}
		if len(got) < len(want) {
			return fmt.Errorf("notifications %v so far, want %v", got, want)
		}
		return nil
	})
}

// scrape reads the operator's metrics endpoint.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s %v", addr, resp.Status, err)
	}
	return string(b)
}

func expectSeries(t *testing.T, exposition string, series ...string) {
	t.Helper()
	for _, s := range series {
		if !strings.Contains(exposition, "\n"+s+"\n") {
			var near []string
			name, _, _ := strings.Cut(s, "{")
			for _, l := range strings.Split(exposition, "\n") {
				if strings.HasPrefix(l, name) {
					near = append(near, l)
				}
			}
			t.Errorf("no series %s; %s series:\n%s", s, name, strings.Join(near, "\n"))
		}
	}
}

// The operator's metrics endpoint, scraped by the real Prometheus, tells a rollout's story,
// and the rollout's notifications arrive once each, also across a restart of the operator.
func TestOperatorMetricsAndNotifications(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := l.Addr().String()
	_ = l.Close()

	prom, err := testenv.StartPrometheus(testenv.PrometheusOptions{Targets: []string{metricsAddr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prom.Close() })

	rcv := startNotifications(t)
	config := filepath.Join(t.TempDir(), "notifications.yaml")
	if err := os.WriteFile(config, fmt.Appendf(nil, `
allowedCIDRs: [127.0.0.1/32]
channels:
- name: e2e-%s
  type: webhook
  url: %s/notify
`, ns, rcv.url), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := manager.Options{
		Analyzer: imageAnalyzer{env.Client}, MetricsAddr: metricsAddr, NotificationsConfig: config,
		WebhookAllowedCIDRs: "127.0.0.1/32",
	}
	op := startOperator(t, opts)

	if err := env.Client.Create(t.Context(), newDeployment(ns, "reviews", "bookinfo/reviews:v1", 1)); err != nil {
		t.Fatal(err)
	}
	c := newCanary(ns, "reviews", 10, 30)
	c.Spec.Analysis.Webhooks = []meshv1.CanaryWebhook{{Name: "done", Type: meshv1.WebhookPostRollout, URL: rcv.url + "/hook"}}
	if err := env.Client.Create(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, ns, "reviews", meshv1.PhaseInitialized)
	setImage(t, ns, "reviews", "bookinfo/reviews:v2")
	waitPhase(t, ns, "reviews", meshv1.PhaseSucceeded)
	rcv.waitFor(t, "started", "promoted")

	sel := fmt.Sprintf(`name="reviews",namespace=%q`, ns)
	// The phase series come from the manager's cache, which may trail the apiserver that
	// waitPhase read (seen once on a loaded machine: Finalising a moment after Succeeded).
	succeeded := fmt.Sprintf(`canopy_canary_phase{%s,phase="Succeeded"} 1`, sel)
	testenv.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(scrape(t, metricsAddr), "\n"+succeeded+"\n") {
			return fmt.Errorf("no series %s yet", succeeded)
		}
		return nil
	})
	expectSeries(t, scrape(t, metricsAddr),
		fmt.Sprintf(`canopy_canary_phase{%s,phase="Succeeded"} 1`, sel),
		fmt.Sprintf(`canopy_canary_phase{%s,phase="Progressing"} 0`, sel),
		fmt.Sprintf(`canopy_canary_weight{%s} 0`, sel),
		fmt.Sprintf(`canopy_canary_info{%s,primary="reviews-primary",target="reviews"} 1`, sel),
		fmt.Sprintf(`canopy_canary_phase_transitions_total{%s,phase="Succeeded"} 1`, sel),
		fmt.Sprintf(`canopy_canary_rollout_duration_seconds_count{namespace=%q,outcome="promoted"} 1`, ns),
		fmt.Sprintf(`canopy_analysis_check_value{check="request-success-rate",%s} 100`, sel),
	)

	// What Prometheus scraped answers the dashboard's kind of questions.
	nsSel := fmt.Sprintf(`namespace=%q`, ns)
	for query, check := range map[string]func(float64) bool{
		fmt.Sprintf(`canopy_canary_phase_transitions_total{%s,phase="Succeeded"}`, nsSel):                              func(v float64) bool { return v == 1 },
		fmt.Sprintf(`sum(canopy_analysis_check_results_total{%s,check="request-success-rate",outcome="Pass"})`, nsSel): func(v float64) bool { return v >= 3 },
		fmt.Sprintf(`canopy_canary_rollout_duration_seconds_count{%s,outcome="promoted"}`, nsSel):                      func(v float64) bool { return v == 1 },
		fmt.Sprintf(`canopy_canary_phase{%s,phase="Succeeded"}`, nsSel):                                                func(v float64) bool { return v == 1 },
		`sum(canopy_webhook_calls_total{type="post-rollout",outcome="success"})`:                                       func(v float64) bool { return v >= 1 },
		`sum(canopy_notifications_total{outcome="sent"})`:                                                              func(v float64) bool { return v >= 2 },
		// The manager's own requests, by the apiserver's verbs: the route writes, and the
		// watches of its caches apart from reads.
		`sum(canopy_api_requests_total{verb="apply",resource="virtualservices"})`:               func(v float64) bool { return v >= 1 },
		`sum(canopy_api_requests_total{verb="patch",resource="canaries",subresource="status"})`: func(v float64) bool { return v >= 1 },
		`sum(canopy_api_requests_total{verb="watch",resource="canaries"})`:                      func(v float64) bool { return v >= 1 },
		`sum(controller_runtime_reconcile_total{controller="canary"})`:                          func(v float64) bool { return v > 0 },
	} {
		testenv.Eventually(t, 2*time.Minute, func() error {
			v, ok, err := promQuery(t.Context(), prom.URL(), query)
			if err != nil {
				return err
			}
			if !ok || !check(v) {
				return fmt.Errorf("%s = %v (found %v)\n%s", query, v, ok, prom.Log())
			}
			return nil
		})
	}

	// The dashboard's rollout panels show this rollout.
	dash, err := testenv.ReadDashboard("../../config/grafana/canopy-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	queries, err := dash.Queries(map[string]string{
		"$__rate_interval": "1h", "$__interval": "1m", "$__range": "1h", "$namespace": ns, "$canary": "reviews", "$target": "reviews",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, panel := range []string{`panel "Canary weight" A`, `panel "Phase" A`, `panel "Phase changes" A`, `panel "Failed checks and step" B`,
		`panel "Check values" A`, `panel "Check results" A`, `panel "Rollouts" A`, `panel "Webhook calls" A`, `panel "Notifications" A`,
		`panel "Reconciles" A`, `panel "Reconcile duration p99" A`, "variable namespace", "variable canary", "variable target"} {
		query, ok := queries[panel]
		if !ok {
			t.Fatalf("the dashboard has no %s", panel)
		}
		testenv.Eventually(t, time.Minute, func() error {
			n, err := promSeries(t.Context(), prom.URL(), query)
			if err != nil || n == 0 {
				return fmt.Errorf("%s shows nothing (%v): %s", panel, err, query)
			}
			return nil
		})
	}

	// A restart: the new operator counts and announces nothing that happened before it.
	op.stop(t)
	startOperator(t, opts)
	setImage(t, ns, "reviews", "bookinfo/reviews:bad-v3")
	waitPhase(t, ns, "reviews", meshv1.PhaseFailed)
	rcv.waitFor(t, "started", "promoted", "started", "rolledBack", "failed")
	expectSeries(t, scrape(t, metricsAddr),
		fmt.Sprintf(`canopy_canary_phase{%s,phase="Failed"} 1`, sel),
		fmt.Sprintf(`canopy_canary_phase_transitions_total{%s,phase="Succeeded"} 1`, sel),
		fmt.Sprintf(`canopy_canary_phase_transitions_total{%s,phase="Failed"} 1`, sel),
		fmt.Sprintf(`canopy_canary_rollout_duration_seconds_count{namespace=%q,outcome="failed"} 1`, ns),
		fmt.Sprintf(`canopy_canary_failed_checks{%s} 2`, sel),
	)
}

// promSeries counts the series an instant query returns.
func promSeries(ctx context.Context, base, query string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query?query="+url.QueryEscape(query), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	var r struct {
		Status, Error string
		Data          struct{ Result []json.RawMessage }
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s", r.Error)
	}
	return len(r.Data.Result), nil
}
