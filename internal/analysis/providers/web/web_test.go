package web

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/hooks"
)

func serve(t *testing.T, code int, ct, body string, check func(*http.Request)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if check != nil {
			check(r)
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func client(t *testing.T, cfg providers.Config) *Client {
	t.Helper()
	cfg.Type = Type
	tr, err := providers.NewTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg, tr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestQuery(t *testing.T) {
	doc := `{"data":{"ok":true,"bad":false,"rate":0.995,"text":"42.5","nan":"NaN","none":null,"obj":{},"list":[1,2],
	  "items":[{"name":"a","v":1},{"name":"b","v":2}],"word":"high"}}`
	tests := []struct {
		query    string
		want     float64
		wantKind providers.Kind
	}{
		{query: "{.data.rate}", want: 0.995},
		{query: ".data.rate", want: 0.995},
		{query: "{$.data.rate}", want: 0.995},
		{query: "{.data.ok}", want: 1},
		{query: "{.data.bad}", want: 0},
		{query: "{.data.text}", want: 42.5},
		{query: "{.data.nan}", want: math.NaN()},
		{query: `{.data.items[?(@.name=="b")].v}`, want: 2},
		{query: "{.data.missing}", wantKind: providers.NoData},
		{query: "{.data.none}", wantKind: providers.NoData},
		{query: "{.data.list[*]}", wantKind: providers.BadQuery},
		{query: "{.data.obj}", wantKind: providers.BadQuery},
		{query: "{.data.list}", wantKind: providers.BadQuery},
		{query: "{.data.word}", wantKind: providers.BadQuery},
		{query: "value: {.data.rate}", wantKind: providers.BadQuery},
		{query: "{.data.rate", wantKind: providers.BadQuery},
	}
	url := serve(t, 200, "application/json", doc, nil)
	c := client(t, providers.Config{Address: url + "/status"})
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			got, err := c.Query(context.Background(), tt.query)
			if tt.wantKind != "" {
				if providers.KindOf(err) != tt.wantKind {
					t.Fatalf("Query = %v, %v (%s), want kind %s", got, err, providers.KindOf(err), tt.wantKind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want && !(math.IsNaN(got) && math.IsNaN(tt.want)) {
				t.Fatalf("Query = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestQuerySendsCredentials(t *testing.T) {
	var auth, accept, path string
	url := serve(t, 200, "application/json", `{"v":1}`, func(r *http.Request) {
		auth, accept, path = r.Header.Get("Authorization"), r.Header.Get("Accept"), r.URL.RequestURI()
	})
	c := client(t, providers.Config{Address: url + "/api/health?service=shop", Credentials: providers.Credentials{BearerToken: "tok"}})
	if _, err := c.Query(context.Background(), "{.v}"); err != nil {
		t.Fatal(err)
	}
	if auth != "Bearer tok" || accept != "application/json" || path != "/api/health?service=shop" {
		t.Fatalf("request: auth %q accept %q path %q", auth, accept, path)
	}
}

func TestQueryAnswersThatAreNotJSON(t *testing.T) {
	for _, tt := range []struct {
		code     int
		body     string
		wantKind providers.Kind
	}{
		{200, "<html>secret-admin-page</html>", providers.Other},
		{503, "down", providers.Unreachable},
		{401, `{"error":"secret-token-1234 is wrong"}`, providers.Other},
		{302, "", providers.Other},
	} {
		url := serve(t, tt.code, "text/html", tt.body, nil)
		_, err := client(t, providers.Config{Address: url}).Query(context.Background(), "{.v}")
		if providers.KindOf(err) != tt.wantKind {
			t.Errorf("answer %d: %v (%s), want %s", tt.code, err, providers.KindOf(err), tt.wantKind)
		}
		// The endpoint may be anything the operator reaches: its content stays out of status.
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("answer %d: the error quotes the answer: %v", tt.code, err)
		}
	}
}

func TestQueryURLPolicy(t *testing.T) {
	// The default policy refuses loopback, where the test server listens: the dial is refused.
	url := serve(t, 200, "application/json", `{"v":1}`, nil)
	_, err := client(t, providers.Config{Address: url, URLPolicy: &hooks.Policy{}}).Query(context.Background(), "{.v}")
	if err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("Query through the default policy to loopback = %v, want refused", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, cfg := range []providers.Config{
		{Type: Type},
		{Type: Type, Address: "ftp://x/"},
		{Type: Type, Address: "http://u:pw@x/"},
		{Type: "prometheus", Address: "http://x/"},
	} {
		if _, err := New(cfg, http.DefaultTransport); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
