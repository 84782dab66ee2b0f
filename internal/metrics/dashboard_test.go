package metrics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"canopy.dev/canopy/internal/metrics"
	"canopy.dev/canopy/internal/notify"
	"canopy.dev/canopy/test/testenv"
)

const dashboardPath = "../../config/grafana/canopy-dashboard.json"

// grafanaVars are values for the dashboard's variables, as Grafana fills them in.
var grafanaVars = map[string]string{
	"$__rate_interval": "1m", "$__interval": "30s", "$__range": "6h",
	"$namespace": "shop", "$canary": "reviews", "$target": "reviews",
}

func readDashboard(t *testing.T) *testenv.Dashboard {
	t.Helper()
	d, err := testenv.ReadDashboard(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func queries(t *testing.T) map[string]string {
	t.Helper()
	q, err := readDashboard(t).Queries(grafanaVars)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestDashboardLayout(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 39 {
		t.Fatalf("uid %q, title %q, schemaVersion %d: want a uid, a title and a current schema (>= 39)", d.UID, d.Title, d.SchemaVersion)
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q is placed outside the 24-column grid: %+v", p.Title, p.GridPos)
		}
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
	// What the dashboard is for: rollouts over time, primary vs canary, the operator.
	var titles []string
	for _, p := range d.Panels {
		titles = append(titles, p.Title)
	}
	for _, want := range []string{"Canary weight", "Phase", "Success rate", "Latency p99", "Failed checks and step", "Reconcile errors", "Certificate expiry"} {
		if !slices.Contains(titles, want) {
			t.Errorf("no panel %q (panels: %v)", want, titles)
		}
	}
}

// Every canopy_* metric the dashboard queries is one canopy serves.
func TestDashboardMetricsExist(t *testing.T) {
	known := map[string]bool{}
	ch := make(chan *prometheus.Desc, 100)
	go func() {
		for _, c := range append(metrics.Collectors(), notify.Collectors()...) {
			c.Describe(ch)
		}
		close(ch)
	}()
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	histograms := map[string]bool{"canopy_canary_rollout_duration_seconds": true}
	for d := range ch {
		name := fqName.FindStringSubmatch(d.String())[1]
		known[name] = true
		if histograms[name] {
			for _, s := range []string{"_bucket", "_count", "_sum"} {
				known[name+s] = true
			}
		}
	}
	used := regexp.MustCompile(`\bcanopy_[a-z_]+`)
	for where, expr := range queries(t) {
		for _, m := range used.FindAllString(expr, -1) {
			if !known[m] {
				t.Errorf("%s queries %s, which canopy does not serve", where, m)
			}
		}
	}
}

// Every expression parses and evaluates in a real Prometheus (bin/prometheus, the version
// the test bed builds): a syntax error, a bad function call or a type error is refused
// with errorType bad_data.
func TestDashboardQueriesEvaluate(t *testing.T) {
	testenv.SkipIfShort(t)
	prom, err := testenv.StartPrometheus(testenv.PrometheusOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prom.Close() })
	exprs := queries(t)
	if len(exprs) < 15 {
		t.Fatalf("only %d expressions found", len(exprs))
	}
	for where, expr := range exprs {
		if err := evaluate(prom.URL(), expr); err != nil {
			t.Errorf("%s: %v\n  %s", where, err, expr)
		}
	}
}

func evaluate(base, expr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := base + "/api/v1/query?" + url.Values{"query": {expr}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	var answer struct {
		Status, ErrorType, Error string
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return fmt.Errorf("HTTP %s: %w", resp.Status, err)
	}
	if answer.Status != "success" {
		return fmt.Errorf("%s: %s", answer.ErrorType, answer.Error)
	}
	return nil
}
