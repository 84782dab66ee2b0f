// Package dynatrace runs metric selectors against Dynatrace's Metrics API v2
// (GET /api/v2/metrics/query, https://docs.dynatrace.com/docs/dynatrace-api/environment-api/metric-v2/get-data-points)
// with net/http alone.
package dynatrace

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
const Type = "dynatrace"

const backend = "Dynatrace"

// Client queries one Dynatrace environment (https://<env-id>.live.dynatrace.com, or a
// Managed cluster's https://<host>/e/<env-id>).
type Client struct {
	endpoint *url.URL
	http     *http.Client
	timeout  time.Duration
	window   time.Duration
	token    string
}

var _ providers.Provider = (*Client)(nil)

// New returns a Client for cfg on transport; the Secret's "token" is an access token with
// the metrics.read scope, sent as "Api-Token".
func New(cfg providers.Config, transport http.RoundTripper) (*Client, error) {
	base, timeout, err := providers.Base(cfg, Type, backend)
	if err != nil {
		return nil, err
	}
	if cfg.Credentials.BearerToken == "" {
		return nil, fmt.Errorf("the Dynatrace provider needs a secretRef with %q", providers.SecretKeyToken)
	}
	return &Client{endpoint: base.JoinPath("api", "v2", "metrics", "query"), http: providers.NewHTTPClient(transport),
		timeout: timeout, window: cfg.LookBack(), token: cfg.Credentials.BearerToken}, nil
}

// queryResponse is the MetricData answer; errorResponse Dynatrace's error envelope.
type queryResponse struct {
	TotalCount *int `json:"totalCount"`
	Result     []struct {
		MetricID string `json:"metricId"`
		Data     []struct {
			Dimensions []string   `json:"dimensions"`
			Timestamps []int64    `json:"timestamps"`
			Values     []*float64 `json:"values"`
		} `json:"data"`
	} `json:"result"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Query runs a metric selector over the check's window at resolution Inf (one value per
// series) and returns the last non-null value of its one series.
func (c *Client) Query(ctx context.Context, selector string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	params := url.Values{}
	params.Set("metricSelector", selector)
	params.Set("from", "now-"+strconv.FormatInt(int64(c.window/time.Second), 10)+"s")
	params.Set("resolution", "Inf")
	header := http.Header{"Authorization": {"Api-Token " + c.token}}
	resp, body, err := providers.Get(ctx, c.http, backend, c.endpoint, params, header)
	if err != nil {
		return 0, err
	}
	var ans queryResponse
	jsonErr := json.Unmarshal(body, &ans)
	if resp.StatusCode/100 != 2 {
		var own string
		if jsonErr == nil && ans.Error != nil {
			own = ans.Error.Message
		}
		return 0, providers.StatusError(backend, resp, body, own)
	}
	if jsonErr != nil || ans.TotalCount == nil {
		return 0, providers.Errorf(providers.Other, "%s", providers.DescribeAnswer(backend, resp, body))
	}
	var series int
	var values []*float64
	for _, r := range ans.Result {
		for _, d := range r.Data {
			series++
			values = d.Values
		}
	}
	switch series {
	case 0:
		return 0, providers.Errorf(providers.NoData, "the selector returned no series")
	case 1:
	default:
		return 0, providers.Errorf(providers.BadQuery, "the selector returned %d series, want one: aggregate it (e.g. :splitBy())", series)
	}
	for i := len(values) - 1; i >= 0; i-- {
		if values[i] != nil {
			return *values[i], nil
		}
	}
	return 0, providers.Errorf(providers.NoData, "the series has no value in the window")
}

// String keeps a Client's token out of logs that print it.
func (c *Client) String() string { return fmt.Sprintf("dynatrace(%s)", c.endpoint.Redacted()) }
