package graphite

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/analysis/providers/providertest"
)

// The server below stands in for Graphite's render API as documented (and as graphite-web
// and carbonapi serve it): GET /render with target, from, until and format=json; the answer
// a JSON list of {"target":..,"tags":{..},"datapoints":[[value|null, timestamp], ...]}, and
// errors as a 400 with a text or HTML page.
func graphiteServer(t *testing.T, code int, answer string) (*httptest.Server, *http.Request) {
	t.Helper()
	var seen http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = *r.Clone(context.Background())
		if user, pass, ok := r.BasicAuth(); !ok || user != "canopy" || pass != "pw" {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte("401 Authorization Required"))
			return
		}
		if code/100 == 2 {
			w.Header().Set("Content-Type", "application/json")
		} else {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(answer))
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

var auth = providers.Credentials{Username: "canopy", Password: "pw"}

func newClient(t *testing.T, address string, creds providers.Credentials) *Client {
	t.Helper()
	c, err := New(providers.Config{Type: Type, Address: address, Credentials: creds, Window: 2 * time.Minute}, http.DefaultTransport)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestQuerySendsTheDocumentedRequest(t *testing.T) {
	srv, seen := graphiteServer(t, 200, `[{"target":"sumSeries(stats.reviews.*.errors)","tags":{"name":"sumSeries(stats.reviews.*.errors)"},"datapoints":[[1.5,1699999880],[2.5,1699999940],[null,1700000000]]}]`)
	got, err := newClient(t, srv.URL+"/graphite", auth).Query(context.Background(), "sumSeries(stats.reviews.*.errors)")
	if err != nil || got != 2.5 {
		t.Fatalf("Query = %v, %v; want the last non-null value 2.5", got, err)
	}
	q := seen.URL.Query()
	if seen.Method != http.MethodGet || seen.URL.Path != "/graphite/render" || q.Get("target") != "sumSeries(stats.reviews.*.errors)" ||
		q.Get("from") != "-120s" || q.Get("until") != "now" || q.Get("format") != "json" {
		t.Errorf("request %s %s", seen.Method, seen.URL)
	}
}

func TestQueryAnswers(t *testing.T) {
	for _, tt := range []struct {
		name     string
		code     int
		answer   string
		creds    *providers.Credentials
		want     float64
		wantKind providers.Kind
		wantMsg  string
	}{
		{name: "one value", code: 200, answer: `[{"target":"a","datapoints":[[0.25,1700000000]]}]`, want: 0.25},
		{name: "no series", code: 200, answer: `[]`, wantKind: providers.NoData, wantMsg: "no series"},
		{name: "only nulls", code: 200, answer: `[{"target":"a","datapoints":[[null,1],[null,2]]}]`, wantKind: providers.NoData, wantMsg: "no value"},
		{name: "two series", code: 200, answer: `[{"target":"a","datapoints":[[1,1]]},{"target":"b","datapoints":[[2,1]]}]`, wantKind: providers.BadQuery, wantMsg: "2 series"},
		{name: "bad target", code: 400, answer: `<h1>Bad Request</h1><p>invalid function sumSerie</p>`, wantKind: providers.BadQuery, wantMsg: "answer 400 from Graphite"},
		{name: "wrong credentials", code: 200, answer: `[]`, creds: &providers.Credentials{Username: "canopy", Password: "nope"}, wantKind: providers.Other, wantMsg: "401"},
		{name: "not Graphite", code: 200, answer: `{"secret":"value"}`, wantKind: providers.Other, wantMsg: "not a Graphite API answer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := graphiteServer(t, tt.code, tt.answer)
			creds := auth
			if tt.creds != nil {
				creds = *tt.creds
			}
			got, err := newClient(t, srv.URL, creds).Query(context.Background(), "a")
			providertest.CheckQuery(t, got, err, tt.want, tt.wantKind, tt.wantMsg)
		})
	}
}
