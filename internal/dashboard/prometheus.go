package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// weightMetric is the operator's gauge of status.canaryWeight (docs/metrics.md).
const weightMetric = "canopy_canary_weight"

// prometheus reads a Canary's weight over time from canopy's own metrics, with a short
// cache so that every tab's refresh after a change does not query it again.
type prometheus struct {
	base   string
	client *http.Client
	window time.Duration

	mu    sync.Mutex
	cache map[string]promEntry
}

type promEntry struct {
	at     time.Time
	points []WeightPoint
	err    error
}

func newPrometheus(base string, window time.Duration) (*prometheus, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--prometheus-url %q: want an http(s) URL such as http://127.0.0.1:9090", base)
	}
	return &prometheus{base: strings.TrimSuffix(base, "/"), client: &http.Client{Timeout: 10 * time.Second}, window: window, cache: map[string]promEntry{}}, nil
}

// weights are the Canary's weight over the window, one point per step of the query.
func (p *prometheus) weights(ctx context.Context, ns, name string, now time.Time) ([]WeightPoint, error) {
	key := ns + "/" + name
	p.mu.Lock()
	e, ok := p.cache[key]
	p.mu.Unlock()
	if ok && now.Sub(e.at) < 5*time.Second {
		return e.points, e.err
	}
	points, err := p.query(ctx, ns, name, now)
	p.mu.Lock()
	p.cache[key] = promEntry{at: now, points: points, err: err}
	p.mu.Unlock()
	return points, err
}

func (p *prometheus) query(ctx context.Context, ns, name string, now time.Time) ([]WeightPoint, error) {
	step := max(p.window/300, time.Second)
	q := url.Values{
		"query": {fmt.Sprintf("max(%s{namespace=%q,name=%q})", weightMetric, ns, name)},
		"start": {strconv.FormatInt(now.Add(-p.window).Unix(), 10)},
		"end":   {strconv.FormatInt(now.Unix(), 10)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/api/v1/query_range?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("querying Prometheus: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("querying Prometheus: %w", err)
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Values [][2]any `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("querying Prometheus: HTTP %d: %w", resp.StatusCode, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("querying Prometheus: %s", r.Error)
	}
	var out []WeightPoint
	for _, s := range r.Data.Result {
		for _, v := range s.Values {
			ts, ok1 := v[0].(float64)
			val, ok2 := v[1].(string)
			f, err := strconv.ParseFloat(val, 64)
			if !ok1 || !ok2 || err != nil {
				continue
			}
			t := time.Unix(0, int64(ts*1e9)).UTC()
			if n := len(out); n > 0 && out[n-1].Weight == int32(f) {
				continue // the chart is a step line: a point where the weight changes is enough
			}
			out = append(out, WeightPoint{T: t, Weight: int32(f)})
		}
	}
	return out, nil
}
