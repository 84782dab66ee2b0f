package dynatrace

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/analysis/providers/providertest"
)

// The server below stands in for Dynatrace's GET /api/v2/metrics/query as documented: the
// token in "Authorization: Api-Token ...", metricSelector, from and resolution as query
// parameters; the answer a MetricData ({"totalCount":..,"result":[{"metricId":..,"data":
// [{"dimensions":[..],"timestamps":[..],"values":[..]}]}]}) or {"error":{"code":..,"message":..}}.
func dynatraceServer(t *testing.T, code int, answer string) (*httptest.Server, *http.Request) {
	t.Helper()
	var seen http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = *r.Clone(context.Background())
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Api-Token dt0c01.TOKEN" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"code":401,"message":"Missing authorization parameter."}}`))
			return
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(answer))
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

func data(values string) string {
	return `{"totalCount":1,"nextPageKey":null,"resolution":"Inf","result":[{"metricId":"builtin:service.errors.total.rate:splitBy()","dataPointCountRatio":1.0E-6,"dimensionCountRatio":1.0E-5,"data":[{"dimensions":[],"dimensionMap":{},"timestamps":[1700000000000],"values":` + values + `}]}]}`
}

func TestQuerySendsTheDocumentedRequest(t *testing.T) {
	srv, seen := dynatraceServer(t, 200, data(`[0.75]`))
	c, err := New(providers.Config{Type: Type, Address: srv.URL + "/e/abc123", Window: 2 * time.Minute,
		Credentials: providers.Credentials{BearerToken: "dt0c01.TOKEN"}}, http.DefaultTransport)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Query(context.Background(), "builtin:service.errors.total.rate:splitBy()")
	if err != nil || got != 0.75 {
		t.Fatalf("Query = %v, %v", got, err)
	}
	q := seen.URL.Query()
	if seen.URL.Path != "/e/abc123/api/v2/metrics/query" || q.Get("metricSelector") != "builtin:service.errors.total.rate:splitBy()" ||
		q.Get("from") != "now-120s" || q.Get("resolution") != "Inf" {
		t.Errorf("request %s", seen.URL)
	}
}

func TestQueryAnswers(t *testing.T) {
	for _, tt := range []struct {
		name     string
		code     int
		answer   string
		token    string
		want     float64
		wantKind providers.Kind
		wantMsg  string
	}{
		{name: "last non-null", code: 200, answer: data(`[1.5,null]`), want: 1.5},
		{name: "no series", code: 200, answer: `{"totalCount":0,"result":[{"metricId":"m","data":[]}]}`, wantKind: providers.NoData},
		{name: "only nulls", code: 200, answer: data(`[null]`), wantKind: providers.NoData},
		{name: "split series", code: 200, answer: `{"totalCount":2,"result":[{"metricId":"m","data":[{"values":[1]},{"values":[2]}]}]}`, wantKind: providers.BadQuery, wantMsg: "2 series"},
		{name: "bad selector", code: 400, answer: `{"error":{"code":400,"message":"The metric selector is invalid: unknown transformation"}}`, wantKind: providers.BadQuery, wantMsg: "metric selector is invalid"},
		{name: "bad token", code: 200, answer: data(`[1]`), token: "wrong", wantKind: providers.Other, wantMsg: "401"},
		{name: "not Dynatrace", code: 200, answer: `<html>secret</html>`, wantKind: providers.Other, wantMsg: "not a Dynatrace API answer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := dynatraceServer(t, tt.code, tt.answer)
			token := tt.token
			if token == "" {
				token = "dt0c01.TOKEN"
			}
			c, err := New(providers.Config{Type: Type, Address: srv.URL, Credentials: providers.Credentials{BearerToken: token}}, http.DefaultTransport)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Query(context.Background(), "m")
			providertest.CheckQuery(t, got, err, tt.want, tt.wantKind, tt.wantMsg)
		})
	}
}

func TestNewNeedsAToken(t *testing.T) {
	if _, err := New(providers.Config{Type: Type, Address: "https://abc.live.dynatrace.com"}, http.DefaultTransport); err == nil {
		t.Error("New without a token accepted")
	}
}
