// Package datadog runs metric queries against Datadog's v1 query API
// (GET /api/v1/query, https://docs.datadoghq.com/api/latest/metrics/#query-timeseries-points)
// with net/http alone: the official client (datadog-api-client-go) is far larger than the one
// call a check makes. The answer's shape is the client's MetricsQueryResponse.
package datadog

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"canopy.dev/canopy/internal/analysis/providers"
)

// Type is the provider type this package implements.
const Type = "datadog"

const backend = "Datadog"

// Client queries one Datadog site (https://api.datadoghq.com, https://api.datadoghq.eu, ...).
type Client struct {
	endpoint *url.URL
	http     *http.Client
	timeout  time.Duration
	window   time.Duration
	creds    providers.Credentials
	now      func() time.Time
}

var _ providers.Provider = (*Client)(nil)

// New returns a Client for cfg on transport. The Secret must give "api-key" and
// "application-key".
func New(cfg providers.Config, transport http.RoundTripper) (*Client, error) {
	base, timeout, err := providers.Base(cfg, Type, backend)
	if err != nil {
		return nil, err
	}
	if cfg.Credentials.APIKey == "" || cfg.Credentials.ApplicationKey == "" {
		return nil, fmt.Errorf("the Datadog provider needs a secretRef with %q and %q", providers.SecretKeyAPIKey, providers.SecretKeyApplicationKey)
	}
	c := &Client{
		endpoint: base.JoinPath("api", "v1", "query"),
		http:     providers.NewHTTPClient(transport),
		timeout:  timeout,
		window:   cfg.LookBack(),
		creds:    cfg.Credentials,
		now:      time.Now,
	}
	return c, nil
}

// queryResponse is the part of MetricsQueryResponse a check reads.
type queryResponse struct {
	Status string   `json:"status"`
	Error  string   `json:"error"`
	Series []series `json:"series"`
	// Errors is the shape of Datadog's error answers (APIErrorResponse).
	Errors []string `json:"errors"`
}

type series struct {
	Metric    string          `json:"metric"`
	Scope     string          `json:"scope"`
	Pointlist [][]*float64    `json:"pointlist"`
	Unit      json.RawMessage `json:"unit"`
}

// Query runs query over the check's window and returns the last non-null point of its one
// series: Datadog answers a series of points, and a check judges the latest.
func (c *Client) Query(ctx context.Context, query string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	now := c.now()
	params := url.Values{}
	params.Set("from", strconv.FormatInt(now.Add(-c.window).Unix(), 10))
	params.Set("to", strconv.FormatInt(now.Unix(), 10))
	params.Set("query", query)
	header := http.Header{"Dd-Api-Key": {c.creds.APIKey}, "Dd-Application-Key": {c.creds.ApplicationKey}}
	resp, body, err := providers.Get(ctx, c.http, backend, c.endpoint, params, header)
	if err != nil {
		return 0, err
	}
	var ans queryResponse
	jsonErr := json.Unmarshal(body, &ans)
	if resp.StatusCode/100 != 2 {
		var own string
		if jsonErr == nil && len(ans.Errors) > 0 {
			own = ans.Errors[0]
		}
		return 0, providers.StatusError(backend, resp, body, own)
	}
	if jsonErr != nil || ans.Status == "" {
		return 0, providers.Errorf(providers.Other, "%s", providers.DescribeAnswer(backend, resp, body))
	}
	if ans.Status != "ok" {
		return 0, providers.Errorf(providers.BadQuery, "Datadog refused the query: %s", providers.QuoteError(ans.Error))
	}
	switch len(ans.Series) {
	case 0:
		return 0, providers.Errorf(providers.NoData, "the query returned no series")
	case 1:
	default:
		return 0, providers.Errorf(providers.BadQuery, "the query returned %d series, want one: aggregate it (e.g. sum:metric{...} without a by {})", len(ans.Series))
	}
	return lastPoint(ans.Series[0].Pointlist)
}

// lastPoint is the value of the latest point that has one ([ms, value], value may be null).
func lastPoint(points [][]*float64) (float64, error) {
	for i := len(points) - 1; i >= 0; i-- {
		p := points[i]
		if len(p) != 2 {
			return 0, providers.Errorf(providers.Other, "a point of %d elements, want 2", len(p))
		}
		if p[1] != nil {
			if math.IsNaN(*p[1]) {
				return math.NaN(), nil
			}
			return *p[1], nil
		}
	}
	return 0, providers.Errorf(providers.NoData, "the series has no point with a value in the window")
}

// String keeps a Client's keys out of logs that print it.
func (c *Client) String() string { return fmt.Sprintf("datadog(%s)", c.endpoint.Redacted()) }
