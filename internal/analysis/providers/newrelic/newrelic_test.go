package newrelic

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/analysis/providers/providertest"
)

// The server below stands in for NerdGraph as New Relic documents it: POST /graphql with the
// User key in API-Key and a JSON body {"query": ..., "variables": {...}}; the answer
// {"data":{"actor":{"account":{"nrql":{"results":[...]}}}}} or {"errors":[{"message":...}]}.
func nerdGraph(t *testing.T, code int, answer string) (*httptest.Server, *request) {
	t.Helper()
	var seen request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/graphql" || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &seen) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if r.Header.Get("API-Key") != "NRAK-1" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errors":[{"message":"Invalid API key"}]}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(answer))
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

func rows(r string) string {
	return `{"data":{"actor":{"account":{"nrql":{"results":` + r + `}}}}}`
}

func TestQuerySendsVariables(t *testing.T) {
	srv, seen := nerdGraph(t, 200, rows(`[{"percentage":99.5}]`))
	c, err := New(providers.Config{Type: Type, Address: srv.URL, AccountID: 1234, Credentials: providers.Credentials{APIKey: "NRAK-1"}}, http.DefaultTransport)
	if err != nil {
		t.Fatal(err)
	}
	nrql := `SELECT percentage(count(*), WHERE error IS false) FROM Transaction WHERE appName = 'it''s "x"' SINCE 5 minutes ago`
	got, err := c.Query(context.Background(), nrql)
	if err != nil || got != 99.5 {
		t.Fatalf("Query = %v, %v", got, err)
	}
	// The NRQL and the account are variables: nothing of the query is spliced into the
	// GraphQL document.
	if seen.Query != document || seen.Variables["nrql"] != nrql || seen.Variables["accountId"] != float64(1234) {
		t.Errorf("request %+v", seen)
	}
}

func TestQueryAnswers(t *testing.T) {
	for _, tt := range []struct {
		name     string
		code     int
		answer   string
		key      string
		want     float64
		wantKind providers.Kind
		wantMsg  string
	}{
		{name: "one value", code: 200, answer: rows(`[{"count":42,"beginTimeSeconds":1,"endTimeSeconds":2}]`), want: 42},
		{name: "percentile", code: 200, answer: rows(`[{"percentile.duration":{"95":0.3}}]`), want: 0.3},
		{name: "no rows", code: 200, answer: rows(`[]`), wantKind: providers.NoData},
		{name: "null", code: 200, answer: rows(`[{"average.duration":null}]`), wantKind: providers.NoData},
		{name: "facets", code: 200, answer: rows(`[{"count":1},{"count":2}]`), wantKind: providers.BadQuery, wantMsg: "2 rows"},
		{name: "two attributes", code: 200, answer: rows(`[{"count":1,"sum":2}]`), wantKind: providers.BadQuery, wantMsg: "2 attributes"},
		{name: "NRQL error", code: 200, answer: `{"data":{"actor":{"account":{"nrql":null}}},"errors":[{"message":"NRQL Syntax Error: Error at line 1 position 8"}]}`, wantKind: providers.BadQuery, wantMsg: "NRQL Syntax Error"},
		{name: "bad key", code: 200, answer: rows(`[]`), key: "wrong", wantKind: providers.Other, wantMsg: "Invalid API key"},
		{name: "not NerdGraph", code: 200, answer: `<html>secret</html>`, wantKind: providers.Other, wantMsg: "not a New Relic API answer"},
		{name: "unavailable", code: 503, answer: `oops`, wantKind: providers.Unreachable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := nerdGraph(t, tt.code, tt.answer)
			key := tt.key
			if key == "" {
				key = "NRAK-1"
			}
			c, err := New(providers.Config{Type: Type, Address: srv.URL, AccountID: 1, Credentials: providers.Credentials{APIKey: key}}, http.DefaultTransport)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Query(context.Background(), "SELECT count(*) FROM Transaction")
			providertest.CheckQuery(t, got, err, tt.want, tt.wantKind, tt.wantMsg)
		})
	}
}

func TestNewNeedsAccountAndKey(t *testing.T) {
	for _, cfg := range []providers.Config{
		{Type: Type, Address: "https://api.newrelic.com", Credentials: providers.Credentials{APIKey: "k"}},
		{Type: Type, Address: "https://api.newrelic.com", AccountID: 1},
	} {
		if _, err := New(cfg, http.DefaultTransport); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
