// Package web reads one number out of any HTTP endpoint that answers JSON, with a JSONPath
// (Kubernetes' dialect, k8s.io/client-go/util/jsonpath, as kubectl -o jsonpath): the
// counterpart of Argo Rollouts' web metric provider.
package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/util/jsonpath"

	"canopy.dev/canopy/internal/analysis/providers"
)

// Type is the provider type this package implements.
const Type = "web"

const backend = "web endpoint"

// Client reads one endpoint.
type Client struct {
	url     *url.URL
	http    *http.Client
	timeout time.Duration
	creds   providers.Credentials
}

var _ providers.Provider = (*Client)(nil)

// New returns a Client for the endpoint cfg.Address on transport.
func New(cfg providers.Config, transport http.RoundTripper) (*Client, error) {
	u, timeout, err := providers.Base(cfg, Type, "web")
	if err != nil {
		return nil, err
	}
	return &Client{url: u, http: providers.NewHTTPClient(transport), timeout: timeout, creds: cfg.Credentials}, nil
}

// ParsePath parses a MetricTemplate's query for the web provider: one JSONPath expression,
// with or without its braces ("{.data.value}" or ".data.value"), and nothing around it,
// since a check reads one value and not a text.
func ParsePath(query string) (*jsonpath.JSONPath, error) {
	q := strings.TrimSpace(query)
	if !strings.Contains(q, "{") {
		q = "{" + q + "}"
	}
	p, err := jsonpath.Parse("query", q)
	if err != nil {
		return nil, fmt.Errorf("not a JSONPath: %w", err)
	}
	if len(p.Root.Nodes) != 1 || p.Root.Nodes[0].Type() != jsonpath.NodeList {
		return nil, fmt.Errorf("the JSONPath %q is not one expression: write one {...} and no text around it", query)
	}
	for _, n := range p.Root.Nodes[0].(*jsonpath.ListNode).Nodes {
		if n.Type() == jsonpath.NodeText {
			return nil, fmt.Errorf("the JSONPath %q holds text: write one {...} expression", query)
		}
	}
	j := jsonpath.New("query")
	if err := j.Parse(q); err != nil {
		return nil, fmt.Errorf("not a JSONPath: %w", err)
	}
	return j, nil
}

// Query GETs the endpoint and returns the single value the JSONPath query selects in its
// JSON answer: a number, a string holding one, or a boolean (true is 1, false 0). Nothing
// selected, or null, is NoData; several values are a BadQuery.
func (c *Client) Query(ctx context.Context, query string) (float64, error) {
	path, err := ParsePath(query)
	if err != nil {
		return 0, providers.Errorf(providers.BadQuery, "%s", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url.String(), nil)
	if err != nil {
		return 0, providers.Errorf(providers.Other, "building the request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	providers.SetAuth(req, c.creds)
	resp, body, err := providers.Do(ctx, c.http, backend, req)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode/100 != 2 {
		return 0, providers.StatusError(backend, resp, body, "")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		// The endpoint may be any service the operator reaches: its content stays out.
		return 0, providers.Errorf(providers.Other, "%s", providers.DescribeAnswer("JSON", resp, body))
	}
	return Select(path, doc)
}

// Select returns the one number path selects in doc.
func Select(path *jsonpath.JSONPath, doc any) (float64, error) {
	path.AllowMissingKeys(true)
	results, err := path.FindResults(doc)
	if err != nil {
		return 0, providers.Errorf(providers.BadQuery, "the JSONPath: %s", providers.QuoteError(err.Error()))
	}
	var values []reflect.Value
	for _, r := range results {
		values = append(values, r...)
	}
	switch len(values) {
	case 0:
		return 0, providers.Errorf(providers.NoData, "the JSONPath selects nothing in the answer")
	case 1:
	default:
		return 0, providers.Errorf(providers.BadQuery, "the JSONPath selects %d values, want one", len(values))
	}
	return number(values[0])
}

func number(v reflect.Value) (float64, error) {
	for v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return 0, providers.Errorf(providers.NoData, "the JSONPath selects null")
		}
		v = v.Elem()
	}
	switch x := v.Interface().(type) {
	case json.Number:
		return parseFloat(string(x))
	case float64:
		return x, nil
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	case string:
		return parseFloat(strings.TrimSpace(x))
	case map[string]any:
		return 0, providers.Errorf(providers.BadQuery, "the JSONPath selects an object, want a number")
	case []any:
		return 0, providers.Errorf(providers.BadQuery, "the JSONPath selects a list of %d, want a number", len(x))
	}
	return 0, providers.Errorf(providers.BadQuery, "the JSONPath selects a %s, want a number", v.Kind())
}

// parseFloat reads a number, and the NaN and infinities a string may hold.
func parseFloat(s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(f, 0) {
		return 0, providers.Errorf(providers.BadQuery, "the JSONPath selects %s, which is not a number", providers.QuoteError(s))
	}
	return f, nil
}

// String keeps a Client's credentials out of logs that print it.
func (c *Client) String() string { return fmt.Sprintf("web(%s)", c.url.Redacted()) }
