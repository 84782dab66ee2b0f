// Package newrelic runs NRQL queries through New Relic's NerdGraph GraphQL API
// (POST /graphql, https://docs.newrelic.com/docs/apis/nerdgraph/examples/nerdgraph-nrql-tutorial/)
// with net/http alone. The query and the account travel as GraphQL variables, never spliced
// into the GraphQL document.
package newrelic

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"canopy.dev/canopy/internal/analysis/providers"
)

// Type is the provider type this package implements.
const Type = "newrelic"

const backend = "New Relic"

// document is the NerdGraph query: NRQL results of one account. The NRQL timeout (seconds)
// keeps New Relic from working on after the check gave up.
const document = `query($accountId: Int!, $nrql: Nrql!, $timeout: Seconds) { actor { account(id: $accountId) { nrql(query: $nrql, timeout: $timeout) { results } } } }`

// Client queries one NerdGraph endpoint (https://api.newrelic.com, https://api.eu.newrelic.com).
type Client struct {
	endpoint  *url.URL
	http      *http.Client
	timeout   time.Duration
	accountID int64
	apiKey    string
}

var _ providers.Provider = (*Client)(nil)

// New returns a Client for cfg on transport: the Secret's "api-key" (a User key) and the
// account cfg.AccountID.
func New(cfg providers.Config, transport http.RoundTripper) (*Client, error) {
	base, timeout, err := providers.Base(cfg, Type, backend)
	if err != nil {
		return nil, err
	}
	if cfg.AccountID <= 0 {
		return nil, fmt.Errorf("the New Relic provider needs newRelic.accountID")
	}
	if cfg.Credentials.APIKey == "" {
		return nil, fmt.Errorf("the New Relic provider needs a secretRef with %q", providers.SecretKeyAPIKey)
	}
	return &Client{endpoint: base.JoinPath("graphql"), http: providers.NewHTTPClient(transport), timeout: timeout,
		accountID: cfg.AccountID, apiKey: cfg.Credentials.APIKey}, nil
}

type request struct {
	Query     string         `json:"query"`
	Variables map[string]any `json:"variables"`
}

type response struct {
	Data *struct {
		Actor *struct {
			Account *struct {
				NRQL *struct {
					Results []map[string]json.RawMessage `json:"results"`
				} `json:"nrql"`
			} `json:"account"`
		} `json:"actor"`
	} `json:"data"`
	Errors []struct {
		Message string `json:"message"`
	} `json:"errors"`
}

// Query runs an NRQL query and returns its one value: the query must return one row with
// one numeric attribute (SELECT percentage(...) FROM ... SINCE 5 minutes ago), besides the
// time bounds New Relic adds to it.
func (c *Client) Query(ctx context.Context, nrql string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	body, err := json.Marshal(request{Query: document, Variables: map[string]any{
		"accountId": c.accountID, "nrql": nrql, "timeout": max(1, int(math.Ceil(c.timeout.Seconds()))),
	}})
	if err != nil {
		return 0, providers.Errorf(providers.Other, "encoding the request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint.String(), bytes.NewReader(body))
	if err != nil {
		return 0, providers.Errorf(providers.Other, "building the request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("API-Key", c.apiKey)
	resp, ans, err := providers.Do(ctx, c.http, backend, req)
	if err != nil {
		return 0, err
	}
	var r response
	jsonErr := json.Unmarshal(ans, &r)
	if resp.StatusCode/100 != 2 {
		var own string
		if jsonErr == nil && len(r.Errors) > 0 {
			own = r.Errors[0].Message
		}
		return 0, providers.StatusError(backend, resp, ans, own)
	}
	if jsonErr != nil || (r.Data == nil && len(r.Errors) == 0) {
		return 0, providers.Errorf(providers.Other, "%s", providers.DescribeAnswer(backend, resp, ans))
	}
	if len(r.Errors) > 0 {
		// NerdGraph answers 200 with errors for an NRQL syntax error, an unknown account
		// and a query that timed out alike.
		return 0, providers.Errorf(providers.BadQuery, "New Relic refused the query: %s", providers.QuoteError(r.Errors[0].Message))
	}
	if r.Data.Actor == nil || r.Data.Actor.Account == nil || r.Data.Actor.Account.NRQL == nil {
		return 0, providers.Errorf(providers.Other, "New Relic answered no NRQL result for account %d", c.accountID)
	}
	return oneValue(r.Data.Actor.Account.NRQL.Results)
}

// timeBounds are the attributes New Relic adds to a row besides the selected one.
var timeBounds = map[string]bool{"beginTimeSeconds": true, "endTimeSeconds": true}

func oneValue(rows []map[string]json.RawMessage) (float64, error) {
	switch len(rows) {
	case 0:
		return 0, providers.Errorf(providers.NoData, "the query returned no rows")
	case 1:
	default:
		return 0, providers.Errorf(providers.BadQuery, "the query returned %d rows, want one: drop FACET and TIMESERIES", len(rows))
	}
	var keys []string
	for k := range rows[0] {
		if !timeBounds[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if len(keys) != 1 {
		return 0, providers.Errorf(providers.BadQuery, "the query returned %d attributes %q, want one: select one function", len(keys), keys)
	}
	return number(rows[0][keys[0]])
}

// number reads a value: a number, null (NoData), or an object of one number, as
// percentile() answers ({"95": 0.3}).
func number(raw json.RawMessage) (float64, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, providers.Errorf(providers.Other, "decoding a result: %w", err)
	}
	switch x := v.(type) {
	case nil:
		return 0, providers.Errorf(providers.NoData, "the query's value is null")
	case float64:
		return x, nil
	case string:
		if f, err := strconv.ParseFloat(x, 64); err == nil {
			return f, nil
		}
	case map[string]any:
		if len(x) == 1 {
			for _, inner := range x {
				if f, ok := inner.(float64); ok {
					return f, nil
				}
			}
		}
	}
	return 0, providers.Errorf(providers.BadQuery, "the query's value is not a number")
}

// String keeps a Client's key out of logs that print it.
func (c *Client) String() string { return fmt.Sprintf("newrelic(%s)", c.endpoint.Redacted()) }
