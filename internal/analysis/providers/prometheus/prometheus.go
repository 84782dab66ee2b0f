// Package prometheus runs instant queries against Prometheus' HTTP API
// (https://prometheus.io/docs/prometheus/latest/querying/api/) with net/http alone.
package prometheus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"canopy.dev/canopy/internal/analysis/providers"
)

// Type is the provider type this package implements.
const Type = "prometheus"

// TypeVictoriaMetrics is VictoriaMetrics (single-node, or vmselect's
// /select/<tenant>/prometheus path), which answers Prometheus' /api/v1/query with
// MetricsQL, a superset of PromQL: the same client serves it.
const TypeVictoriaMetrics = "victoriametrics"

// DefaultTimeout bounds a query whose configuration sets no timeout.
const DefaultTimeout = 5 * time.Second

// maxGetURL is the longest URL sent as a GET; longer queries are POSTed as a form.
const maxGetURL = 4096

// Client queries one Prometheus server.
type Client struct {
	endpoint *url.URL // <address>/api/v1/query
	http     *http.Client
	timeout  time.Duration
	creds    providers.Credentials
}

var _ providers.Provider = (*Client)(nil)

// New returns a Client for cfg with its own transport. Prefer a Factory's clients, which
// share transports (and so connections) between checks.
func New(cfg providers.Config) (*Client, error) {
	transport, err := providers.NewTransport(cfg)
	if err != nil {
		return nil, err
	}
	return newClient(cfg, transport)
}

func newClient(cfg providers.Config, transport http.RoundTripper) (*Client, error) {
	if cfg.Type != "" && cfg.Type != Type && cfg.Type != TypeVictoriaMetrics {
		return nil, fmt.Errorf("provider type %q is not %q or %q", cfg.Type, Type, TypeVictoriaMetrics)
	}
	base, err := providers.ParseAddress("Prometheus", cfg.Address)
	if err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{
		endpoint: base.JoinPath("api", "v1", "query"),
		http:     providers.NewHTTPClient(transport),
		timeout:  timeout,
		creds:    cfg.Credentials,
	}, nil
}

// apiResponse is the envelope of every answer of the HTTP API.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

type queryData struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

type vectorSample struct {
	Metric    map[string]string `json:"metric"`
	Value     []json.RawMessage `json:"value"`
	Histogram json.RawMessage   `json:"histogram"`
}

// Query runs an instant query (/api/v1/query) and returns its single value.
// An empty vector is a NoData error; more than one series is a BadQuery, since which of
// them a check would judge is anybody's guess.
func (c *Client) Query(ctx context.Context, query string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, body, err := c.exchange(ctx, query)
	if err != nil {
		return 0, err
	}
	return readAnswer(resp, body)
}

// exchange sends an instant query and reads the answer's body (at most maxResponseBytes).
func (c *Client) exchange(ctx context.Context, query string) (*http.Response, []byte, error) {
	form := url.Values{}
	form.Set("query", query)
	// Prometheus stops evaluating when this passes, instead of working on for nobody.
	form.Set("timeout", strconv.FormatFloat(c.timeout.Seconds(), 'f', -1, 64)+"s")
	// GET when the query fits in a URL: it is idempotent, so net/http may retry it on a
	// kept-alive connection the server closed meanwhile, which it never does for a POST.
	encoded := form.Encode()
	var req *http.Request
	var err error
	if len(c.endpoint.String())+1+len(encoded) <= maxGetURL {
		u := *c.endpoint
		u.RawQuery = encoded
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint.String(), strings.NewReader(encoded))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	}
	if err != nil {
		return nil, nil, providers.Errorf(providers.Other, "building the request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	providers.SetAuth(req, c.creds)

	return providers.Do(ctx, c.http, "Prometheus", req)
}

// readAnswer reads Prometheus' answer to an instant query: its value, or an error classified
// for the check's outcome. Nothing of an answer that is not Prometheus' reaches the error:
// the address may be any service the operator can reach, and its answer none of the
// tenant's business.
func readAnswer(resp *http.Response, body []byte) (float64, error) {
	data, err := readData(resp, body)
	if err != nil {
		return 0, err
	}
	return parseResult(data)
}

// readData reads the data of a successful answer, or an error classified as readAnswer's.
func readData(resp *http.Response, body []byte) (json.RawMessage, error) {
	if resp.StatusCode/100 == 3 {
		return nil, classifyStatus(resp.StatusCode, "", "a redirect, which is not followed")
	}
	var env apiResponse
	if err := json.Unmarshal(body, &env); err != nil || env.Status == "" {
		return nil, classifyStatus(resp.StatusCode, "", describeAnswer(resp, body))
	}
	if env.Status != "success" {
		msg := describeAnswer(resp, body)
		if env.ErrorType != "" && env.Error != "" {
			msg = quoteError(env.Error)
		}
		return nil, classifyStatus(resp.StatusCode, env.ErrorType, msg)
	}
	if resp.StatusCode/100 != 2 {
		return nil, classifyStatus(resp.StatusCode, "", describeAnswer(resp, body))
	}
	return env.Data, nil
}

func parseResult(raw json.RawMessage) (float64, error) {
	var data queryData
	if err := json.Unmarshal(raw, &data); err != nil {
		return 0, providers.Errorf(providers.Other, "decoding the query result: %w", err)
	}
	switch data.ResultType {
	case "scalar":
		var pair []json.RawMessage
		if err := json.Unmarshal(data.Result, &pair); err != nil {
			return 0, providers.Errorf(providers.Other, "decoding a scalar: %w", err)
		}
		return parseSample(pair)
	case "vector":
		var samples []vectorSample
		if err := json.Unmarshal(data.Result, &samples); err != nil {
			return 0, providers.Errorf(providers.Other, "decoding a vector: %w", err)
		}
		switch len(samples) {
		case 0:
			return 0, providers.Errorf(providers.NoData, "the query returned no data")
		case 1:
		default:
			return 0, providers.Errorf(providers.BadQuery, "the query returned %d series, want one: aggregate it (e.g. with sum())", len(samples))
		}
		if samples[0].Value == nil {
			if samples[0].Histogram != nil {
				return 0, providers.Errorf(providers.BadQuery, "the query returned a native histogram, want a number: use histogram_quantile() or histogram_sum()")
			}
			return 0, providers.Errorf(providers.Other, "a sample without a value")
		}
		return parseSample(samples[0].Value)
	default:
		return 0, providers.Errorf(providers.BadQuery, "the query returned a %s, want a vector or a scalar", data.ResultType)
	}
}

// parseSample reads [<unix time>, "<value>"]. Prometheus writes NaN and infinities as
// "NaN", "+Inf" and "-Inf", which strconv reads too.
func parseSample(pair []json.RawMessage) (float64, error) {
	if len(pair) != 2 {
		return 0, providers.Errorf(providers.Other, "a sample of %d elements, want 2", len(pair))
	}
	var s string
	if err := json.Unmarshal(pair[1], &s); err != nil {
		return 0, providers.Errorf(providers.Other, "a sample value that is not a string: %w", err)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil && !(errors.Is(err, strconv.ErrRange) && math.IsInf(v, 0)) {
		return 0, providers.Errorf(providers.Other, "a sample value %q that is not a number", s)
	}
	return v, nil
}

// classifyStatus turns an error answer into a kind, by Prometheus' errorType when it
// gave one and by the HTTP status otherwise (a proxy in front of it gives none).
func classifyStatus(code int, errorType, msg string) error {
	prefix := fmt.Sprintf("answer %d from Prometheus", code)
	if errorType != "" {
		prefix += " (" + errorType + ")"
	}
	var kind providers.Kind
	switch errorType {
	case "bad_data", "execution":
		kind = providers.BadQuery
	case "timeout":
		kind = providers.Timeout
	case "unavailable":
		kind = providers.Unreachable
	case "":
		kind = providers.StatusKind(code)
	default:
		kind = providers.Other
	}
	return providers.Errorf(kind, "%s: %s", prefix, msg)
}

func describeAnswer(resp *http.Response, body []byte) string {
	return providers.DescribeAnswer("Prometheus", resp, body)
}

func quoteError(msg string) string { return providers.QuoteError(msg) }
