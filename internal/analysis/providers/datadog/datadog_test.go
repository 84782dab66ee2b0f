package datadog

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"canopy.dev/canopy/internal/analysis/providers"
)

// The server below stands in for Datadog's GET /api/v1/query as its API reference documents
// it: keys in the DD-API-KEY and DD-APPLICATION-KEY headers, from/to in Unix seconds, the
// query as given; the answer a MetricsQueryResponse ({"status":"ok","series":[{"pointlist":
// [[ms, value|null], ...]}]}) or an APIErrorResponse ({"errors":[...]}).
func datadogServer(t *testing.T, code int, answer string) (*httptest.Server, *http.Request) {
	t.Helper()
	var seen http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = *r.Clone(context.Background())
		if r.Header.Get("DD-API-KEY") != "api" || r.Header.Get("DD-APPLICATION-KEY") != "app" {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"errors":["Forbidden"]}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(answer))
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

func newClient(t *testing.T, address string, creds providers.Credentials) *Client {
	t.Helper()
	c, err := New(providers.Config{Type: Type, Address: address, Credentials: creds, Window: 2 * time.Minute}, http.DefaultTransport)
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return time.Unix(1700000000, 0) }
	return c
}

var keys = providers.Credentials{APIKey: "api", ApplicationKey: "app"}

func TestQuerySendsTheDocumentedRequest(t *testing.T) {
	srv, seen := datadogServer(t, 200, `{"status":"ok","res_type":"time_series","series":[{"metric":"trace.http.request.errors","scope":"service:web","pointlist":[[1699999880000,1.5],[1699999940000,2.5],[1700000000000,null]]}]}`)
	c := newClient(t, srv.URL, keys)
	got, err := c.Query(context.Background(), "sum:trace.http.request.errors{service:web}.as_count()")
	if err != nil {
		t.Fatal(err)
	}
	if got != 2.5 {
		t.Errorf("value = %v, want the last non-null point 2.5", got)
	}
	q := seen.URL.Query()
	if seen.Method != http.MethodGet || seen.URL.Path != "/api/v1/query" || q.Get("from") != "1699999880" || q.Get("to") != "1700000000" ||
		q.Get("query") != "sum:trace.http.request.errors{service:web}.as_count()" {
		t.Errorf("request %s %s", seen.Method, seen.URL)
	}
}

func TestQueryAnswers(t *testing.T) {
	for _, tt := range []struct {
		name     string
		code     int
		answer   string
		creds    providers.Credentials
		want     float64
		wantKind providers.Kind
		wantMsg  string
	}{
		{name: "no series", code: 200, answer: `{"status":"ok","series":[]}`, wantKind: providers.NoData},
		{name: "only nulls", code: 200, answer: `{"status":"ok","series":[{"pointlist":[[1,null]]}]}`, wantKind: providers.NoData},
		{name: "two series", code: 200, answer: `{"status":"ok","series":[{"pointlist":[[1,1]]},{"pointlist":[[1,2]]}]}`, wantKind: providers.BadQuery, wantMsg: "2 series"},
		{name: "query error", code: 200, answer: `{"status":"error","error":"Error parsing query: unexpected token"}`, wantKind: providers.BadQuery, wantMsg: "Error parsing query"},
		{name: "bad request", code: 400, answer: `{"errors":["Invalid query input"]}`, wantKind: providers.BadQuery, wantMsg: "Invalid query input"},
		{name: "wrong keys", code: 200, answer: `{}`, creds: providers.Credentials{APIKey: "x", ApplicationKey: "y"}, wantKind: providers.Other, wantMsg: "403"},
		{name: "rate limited", code: 429, answer: `{"errors":["Too many requests"]}`, wantKind: providers.Unreachable},
		{name: "not Datadog", code: 200, answer: `<html>secret</html>`, wantKind: providers.Other, wantMsg: "not a Datadog API answer"},
		{name: "value", code: 200, answer: `{"status":"ok","series":[{"pointlist":[[1,0.25]]}]}`, want: 0.25},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := datadogServer(t, tt.code, tt.answer)
			creds := tt.creds
			if creds.APIKey == "" {
				creds = keys
			}
			got, err := newClient(t, srv.URL, creds).Query(context.Background(), "avg:m{*}")
			if tt.wantKind == "" {
				if err != nil || got != tt.want && !math.IsNaN(tt.want) {
					t.Fatalf("Query = %v, %v; want %v", got, err, tt.want)
				}
				return
			}
			if providers.KindOf(err) != tt.wantKind || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Query error = %v (%s), want %s containing %q", err, providers.KindOf(err), tt.wantKind, tt.wantMsg)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("the error quotes an answer that is not Datadog's: %v", err)
			}
		})
	}
}

func TestNewNeedsBothKeys(t *testing.T) {
	for _, creds := range []providers.Credentials{{}, {APIKey: "a"}, {ApplicationKey: "b"}, {BearerToken: "t"}} {
		if _, err := New(providers.Config{Type: Type, Address: "https://api.datadoghq.com", Credentials: creds}, http.DefaultTransport); err == nil {
			t.Errorf("New with %+v accepted", creds)
		}
	}
}
