package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"canopy.dev/canopy/test/testenv"
)

// TestPrometheusScrapesAcrossARestart proves the Prometheus helper: it scrapes a target
// every second, and after Stop and Start it is back on the same URL, with the samples
// from before the restart and new ones.
func TestPrometheusScrapesAcrossARestart(t *testing.T) {
	testenv.SkipIfShort(t)
	var requests atomic.Int64
	target := serveMetrics(t, func() string {
		return fmt.Sprintf("# TYPE canopy_test_requests_total counter\ncanopy_test_requests_total %d\n", requests.Add(1))
	})

	prom, err := testenv.StartPrometheus(testenv.PrometheusOptions{Targets: []string{target}, ScrapeInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := prom.Close(); err != nil {
			t.Errorf("closing prometheus: %v", err)
		}
	})
	promURL := prom.URL()

	// At least two scrapes, so that increase() has two samples.
	testenv.Eventually(t, 2*time.Minute, func() error {
		return queryAtLeast(promURL, "count_over_time(canopy_test_requests_total[1h])", 2)
	})
	if err := prom.Stop(); err != nil {
		t.Fatalf("stopping prometheus: %v", err)
	}
	before := requests.Load()
	if err := queryAtLeast(promURL, "vector(1)", 1); err == nil {
		t.Fatalf("prometheus still answers at %s after Stop", promURL)
	}

	if err := prom.Start(); err != nil {
		t.Fatalf("starting prometheus again: %v", err)
	}
	if prom.URL() != promURL {
		t.Errorf("URL changed across the restart: %s, then %s", promURL, prom.URL())
	}
	// The samples from before the restart are kept, and scraping resumes.
	testenv.Eventually(t, 2*time.Minute, func() error {
		if requests.Load() <= before {
			return fmt.Errorf("no scrape since the restart")
		}
		return queryAtLeast(promURL, "count_over_time(canopy_test_requests_total[1h])", 3)
	})
}

// serveMetrics serves body at /metrics on a free 127.0.0.1 port and returns host:port.
func serveMetrics(t *testing.T, body func() string) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			_, _ = fmt.Fprint(w, body())
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// queryAtLeast runs an instant query and checks that its first sample is at least min.
func queryAtLeast(base, query string, min float64) error {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	var result struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&result); err != nil {
		return err
	}
	if result.Status != "success" {
		return fmt.Errorf("query %q: %s", query, result.Error)
	}
	if len(result.Data.Result) == 0 {
		return fmt.Errorf("query %q: no samples", query)
	}
	var value float64
	if s, ok := result.Data.Result[0].Value[1].(string); !ok {
		return fmt.Errorf("query %q: unexpected value %v", query, result.Data.Result[0].Value)
	} else if _, err := fmt.Sscan(s, &value); err != nil {
		return err
	}
	if value < min {
		return fmt.Errorf("query %q = %v, want at least %v", query, value, min)
	}
	return nil
}
