// Package influxdb runs queries against InfluxDB: Flux through POST /api/v2/query (InfluxDB
// 2.x, and 1.8 with Flux enabled) and InfluxQL through GET /query (InfluxDB 1.x, and 2.x's
// v1 compatibility API), with net/http alone. The API is documented at
// https://docs.influxdata.com/influxdb/v2/api/ and
// https://docs.influxdata.com/influxdb/v1/tools/api/.
package influxdb

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"canopy.dev/canopy/internal/analysis/providers"
)

const (
	// TypeFlux is the provider type of Flux queries (as Argo Rollouts' and Flagger's influxdb).
	TypeFlux = "influxdb"
	// TypeInfluxQL is the provider type of InfluxQL queries.
	TypeInfluxQL = "influxql"
)

const backend = "InfluxDB"

// Client queries one InfluxDB base URL in one language.
type Client struct {
	endpoint *url.URL
	http     *http.Client
	timeout  time.Duration
	flux     bool
	influx   providers.InfluxDB
	auth     http.Header
}

var _ providers.Provider = (*Client)(nil)

// New returns a Client for cfg on transport. The Secret's "token" is sent as
// "Authorization: Token ..." (an InfluxDB 2.x API token); "username" and "password" as
// basic auth to /query, and as the "Token user:password" InfluxDB 1.8 takes on
// /api/v2/query.
func New(cfg providers.Config, transport http.RoundTripper) (*Client, error) {
	typ := cfg.Type
	if typ != TypeFlux {
		typ = TypeInfluxQL
	}
	base, timeout, err := providers.Base(cfg, typ, backend)
	if err != nil {
		return nil, err
	}
	c := &Client{http: providers.NewHTTPClient(transport), timeout: timeout, flux: typ == TypeFlux, influx: cfg.InfluxDB, auth: http.Header{}}
	creds := cfg.Credentials
	switch {
	case creds.BearerToken != "":
		c.auth.Set("Authorization", "Token "+creds.BearerToken)
	case creds.Username != "" && c.flux:
		c.auth.Set("Authorization", "Token "+creds.Username+":"+creds.Password)
	case creds.Username != "":
		c.auth = providers.AuthHeader(creds)
	}
	if c.flux {
		if c.influx.Org == "" {
			return nil, fmt.Errorf("the influxdb (Flux) provider needs influxDB.org")
		}
		c.endpoint = base.JoinPath("api", "v2", "query")
	} else {
		if c.influx.Database == "" {
			return nil, fmt.Errorf("the influxql provider needs influxDB.database")
		}
		c.endpoint = base.JoinPath("query")
	}
	return c, nil
}

// Query runs a Flux or an InfluxQL query and returns the last non-null value of its one
// table or series.
func (c *Client) Query(ctx context.Context, query string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if c.flux {
		return c.queryFlux(ctx, query)
	}
	return c.queryInfluxQL(ctx, query)
}

// fluxRequest is the documented Query body: the annotated CSV dialect names each table's
// columns and types and lets an error in the stream be told from a result.
type fluxRequest struct {
	Query   string      `json:"query"`
	Type    string      `json:"type"`
	Dialect fluxDialect `json:"dialect"`
}

type fluxDialect struct {
	Header      bool     `json:"header"`
	Annotations []string `json:"annotations"`
	Delimiter   string   `json:"delimiter"`
}

// apiError is InfluxDB 2.x's error body ({"code":"invalid","message":"..."}) and 1.x's
// ({"error":"..."}).
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Error   string `json:"error"`
}

func (e apiError) message() string {
	if e.Message != "" {
		return e.Message
	}
	return e.Error
}

func (c *Client) queryFlux(ctx context.Context, query string) (float64, error) {
	body, err := json.Marshal(fluxRequest{Query: query, Type: "flux",
		Dialect: fluxDialect{Header: true, Annotations: []string{"datatype", "group", "default"}, Delimiter: ","}})
	if err != nil {
		return 0, providers.Errorf(providers.Other, "encoding the request: %w", err)
	}
	u := *c.endpoint
	u.RawQuery = url.Values{"org": {c.influx.Org}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return 0, providers.Errorf(providers.Other, "building the request: %w", err)
	}
	for k, v := range c.auth {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/csv")
	resp, ans, err := providers.Do(ctx, c.http, backend, req)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode/100 != 2 {
		return 0, statusError(resp, ans)
	}
	return fluxValue(resp, ans)
}

func (c *Client) queryInfluxQL(ctx context.Context, query string) (float64, error) {
	params := url.Values{"db": {c.influx.Database}, "q": {query}, "epoch": {"ms"}}
	if c.influx.RetentionPolicy != "" {
		params.Set("rp", c.influx.RetentionPolicy)
	}
	// GET: InfluxDB runs only SELECT and SHOW queries sent this way, never a write.
	resp, ans, err := providers.Get(ctx, c.http, backend, c.endpoint, params, c.auth)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode/100 != 2 {
		return 0, statusError(resp, ans)
	}
	return influxQLValue(resp, ans)
}

// statusError quotes InfluxDB's own error message, if the answer was one.
func statusError(resp *http.Response, body []byte) error {
	var e apiError
	var own string
	if json.Unmarshal(body, &e) == nil {
		own = e.message()
	}
	return providers.StatusError(backend, resp, body, own)
}

// String keeps a Client's credentials out of logs that print it.
func (c *Client) String() string { return fmt.Sprintf("influxdb(%s)", c.endpoint.Redacted()) }
