// Package graphite runs target expressions through Graphite's render API
// (GET /render?format=json, https://graphite.readthedocs.io/en/latest/render_api.html), as
// graphite-web and carbonapi serve it, with net/http alone.
package graphite

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"canopy.dev/canopy/internal/analysis/providers"
)

// Type is the provider type this package implements.
const Type = "graphite"

const backend = "Graphite"

// Client queries one Graphite (graphite-web or carbonapi) base URL.
type Client struct {
	endpoint *url.URL
	http     *http.Client
	timeout  time.Duration
	window   time.Duration
	creds    providers.Credentials
}

var _ providers.Provider = (*Client)(nil)

// New returns a Client for cfg on transport. Graphite has no keys of its own: a Secret's
// bearer token or basic auth is sent for a proxy in front of it, as for Prometheus.
func New(cfg providers.Config, transport http.RoundTripper) (*Client, error) {
	base, timeout, err := providers.Base(cfg, Type, backend)
	if err != nil {
		return nil, err
	}
	return &Client{endpoint: base.JoinPath("render"), http: providers.NewHTTPClient(transport),
		timeout: timeout, window: cfg.LookBack(), creds: cfg.Credentials}, nil
}

// series is one element of the render API's JSON answer: datapoints are
// [value|null, timestamp] pairs, oldest first.
type series struct {
	Target     string         `json:"target"`
	Datapoints [][]*float64   `json:"datapoints"`
	Tags       map[string]any `json:"tags,omitempty"`
}

// Query renders target over the check's window (from = -window, until = now) and returns
// the last non-null value of its one series.
func (c *Client) Query(ctx context.Context, target string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	params := url.Values{}
	params.Set("target", target)
	params.Set("from", "-"+strconv.FormatInt(int64(c.window/time.Second), 10)+"s")
	params.Set("until", "now")
	params.Set("format", "json")
	resp, body, err := providers.Get(ctx, c.http, backend, c.endpoint, params, providers.AuthHeader(c.creds))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode/100 != 2 {
		// Graphite's errors are plain text or HTML pages: not quoted, since the address may
		// be any service the operator reaches.
		return 0, providers.StatusError(backend, resp, body, "")
	}
	var ans []series
	if err := json.Unmarshal(body, &ans); err != nil || ans == nil {
		return 0, providers.Errorf(providers.Other, "%s", providers.DescribeAnswer(backend, resp, body))
	}
	switch len(ans) {
	case 0:
		return 0, providers.Errorf(providers.NoData, "the target matched no series")
	case 1:
	default:
		return 0, providers.Errorf(providers.BadQuery, "the target returned %d series, want one: aggregate it (e.g. sumSeries(...))", len(ans))
	}
	points := ans[0].Datapoints
	for i := len(points) - 1; i >= 0; i-- {
		if len(points[i]) != 2 {
			return 0, providers.Errorf(providers.Other, "a datapoint of %d numbers, want [value, timestamp]", len(points[i]))
		}
		if points[i][0] != nil {
			return *points[i][0], nil
		}
	}
	return 0, providers.Errorf(providers.NoData, "the series has no value in the window")
}

// String keeps a Client's credentials out of logs that print it.
func (c *Client) String() string { return fmt.Sprintf("graphite(%s)", c.endpoint.Redacted()) }
