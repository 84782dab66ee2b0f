package metrics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"canopy.dev/canopy/internal/metrics"
	"canopy.dev/canopy/internal/notify"
	"canopy.dev/canopy/test/testenv"
)

const dashboardPath = "../../config/grafana/canopy-dashboard.json"

// dashboard is what the test reads of a Grafana dashboard.
type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Panels        []struct {
		ID      int    `json:"id"`
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
		GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name string `json:"name"`
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
}

func readDashboard(t *testing.T) *dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	d := &dashboard{}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(d); err != nil {
		t.Fatalf("%s is not JSON: %v", dashboardPath, err)
	}
	return d
}

// expressions returns every PromQL expression of the dashboard, named by where it stands,
// with Grafana's variables replaced by values, as Grafana would before querying.
func (d *dashboard) expressions(t *testing.T) map[string]string {
	t.Helper()
	vars := strings.NewReplacer(
		"$__rate_interval", "1m", "$__interval", "30s", "$__range", "6h",
		"$namespace", "shop", "$canary", "reviews", "$target", "reviews",
	)
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)
	out := map[string]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out[fmt.Sprintf("panel %q target %s", p.Title, tg.RefID)] = vars.Replace(tg.Expr)
		}
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			out[fmt.Sprintf("annotation %q", a.Name)] = vars.Replace(a.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Fatalf("variable %s: %q is not label_values(selector, label)", v.Name, v.Definition)
		}
		out[fmt.Sprintf("variable %s", v.Name)] = vars.Replace(m[1])
	}
	return out
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
	for where, expr := range readDashboard(t).expressions(t) {
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
	exprs := readDashboard(t).expressions(t)
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
