package prometheus

import (
	"context"
	"encoding/pem"
	"errors"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"canopy.dev/canopy/internal/analysis/providers"
)

// The servers below stand in for Prometheus' HTTP API: they answer what the API
// documentation says Prometheus answers.

func answer(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
}

func vector(values ...string) string {
	var samples []string
	for i, v := range values {
		samples = append(samples, `{"metric":{"i":"`+string(rune('a'+i))+`"},"value":[1700000000.123,"`+v+`"]}`)
	}
	return `{"status":"success","data":{"resultType":"vector","result":[` + strings.Join(samples, ",") + `]}}`
}

func TestQueryResults(t *testing.T) {
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		want     float64
		wantKind providers.Kind
		wantMsg  string
	}{
		{name: "one sample", handler: answer(200, vector("99.51")), want: 99.51},
		{name: "scalar", handler: answer(200, `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"42"]}}`), want: 42},
		{name: "NaN is a value", handler: answer(200, vector("NaN")), want: math.NaN()},
		{name: "+Inf is a value", handler: answer(200, vector("+Inf")), want: math.Inf(1)},
		{name: "empty vector", handler: answer(200, vector()), wantKind: providers.NoData},
		{name: "several series", handler: answer(200, vector("1", "2")), wantKind: providers.BadQuery, wantMsg: "2 series"},
		{name: "matrix", handler: answer(200, `{"status":"success","data":{"resultType":"matrix","result":[]}}`), wantKind: providers.BadQuery, wantMsg: "matrix"},
		{
			name:    "native histogram",
			handler: answer(200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"histogram":[1,{"count":"1"}]}]}}`),
			// The check needs a number; a histogram sample has none.
			wantKind: providers.BadQuery, wantMsg: "histogram",
		},
		{
			name:     "parse error",
			handler:  answer(400, `{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected \"}\""}`),
			wantKind: providers.BadQuery, wantMsg: "parse error",
		},
		{
			name:     "execution error",
			handler:  answer(422, `{"status":"error","errorType":"execution","error":"found duplicate series for the match group"}`),
			wantKind: providers.BadQuery, wantMsg: "duplicate series",
		},
		{
			name:     "query timeout in Prometheus",
			handler:  answer(503, `{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}`),
			wantKind: providers.Timeout,
		},
		{name: "proxy without Prometheus behind", handler: answer(502, "<html>Bad Gateway</html>"), wantKind: providers.Unreachable, wantMsg: "answer 502"},
		{name: "proxy timeout", handler: answer(504, "upstream timed out"), wantKind: providers.Timeout},
		{name: "unauthorized", handler: answer(401, "Unauthorized"), wantKind: providers.Other, wantMsg: "401"},
		{name: "internal error", handler: answer(500, `{"status":"error","errorType":"internal","error":"boom"}`), wantKind: providers.Other, wantMsg: "boom"},
		{name: "not JSON", handler: answer(200, "hello"), wantKind: providers.Other, wantMsg: "not a Prometheus API answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			c, err := New(providers.Config{Address: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Query(context.Background(), "up")
			if tt.wantKind != "" {
				if err == nil {
					t.Fatalf("Query() = %v, want a %s error", got, tt.wantKind)
				}
				if k := providers.KindOf(err); k != tt.wantKind {
					t.Fatalf("Query() error kind = %s (%v), want %s", k, err, tt.wantKind)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("Query() error = %q, want it to contain %q", err, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Query() error = %v", err)
			}
			if got != tt.want && !(math.IsNaN(got) && math.IsNaN(tt.want)) {
				t.Fatalf("Query() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestQuerySendsTheQuery(t *testing.T) {
	var gotMethod, gotPath, gotQuery, gotTimeout string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Errorf("ParseForm: %v", err)
		}
		gotMethod, gotPath = r.Method, r.URL.Path
		gotQuery, gotTimeout = r.Form.Get("query"), r.Form.Get("timeout")
		answer(200, vector("1"))(w, r)
	}))
	defer srv.Close()

	c, err := New(providers.Config{Address: srv.URL + "/prometheus/", Timeout: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	short := `sum(rate(m{a="x y&z"}[1m]))`
	if _, err := c.Query(context.Background(), short); err != nil {
		t.Fatal(err)
	}
	if gotMethod != http.MethodGet || gotPath != "/prometheus/api/v1/query" || gotQuery != short || gotTimeout != "1.5s" {
		t.Fatalf("got %s %s query=%q timeout=%q", gotMethod, gotPath, gotQuery, gotTimeout)
	}

	long := `sum(m{a="` + strings.Repeat("x", 5000) + `"})`
	if _, err := c.Query(context.Background(), long); err != nil {
		t.Fatal(err)
	}
	if gotMethod != http.MethodPost || gotQuery != long {
		t.Fatalf("a long query went as %s with %d bytes", gotMethod, len(gotQuery))
	}
}

func TestQueryAuth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, basic := r.BasicAuth()
		switch {
		case r.Header.Get("Authorization") == "Bearer s3cret":
		case basic && user == "canopy" && pass == "p@ss":
		default:
			answer(401, "Unauthorized")(w, r)
			return
		}
		answer(200, vector("1"))(w, r)
	}))
	defer srv.Close()

	for name, creds := range map[string]providers.Credentials{
		"bearer": {BearerToken: "s3cret"},
		"basic":  {Username: "canopy", Password: "p@ss"},
	} {
		c, err := New(providers.Config{Address: srv.URL, Credentials: creds})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Query(context.Background(), "up"); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	c, _ := New(providers.Config{Address: srv.URL, Credentials: providers.Credentials{BearerToken: "wrong"}})
	if _, err := c.Query(context.Background(), "up"); providers.KindOf(err) != providers.Other || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong token: %v", err)
	}
}

func TestQueryTLS(t *testing.T) {
	srv := httptest.NewTLSServer(answer(200, vector("7")))
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	c, err := New(providers.Config{Address: srv.URL, Credentials: providers.Credentials{CA: ca}})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := c.Query(context.Background(), "up"); err != nil || v != 7 {
		t.Fatalf("with the CA: %v, %v", v, err)
	}

	c, _ = New(providers.Config{Address: srv.URL})
	_, err = c.Query(context.Background(), "up")
	if providers.KindOf(err) != providers.Other || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the CA: %v", err)
	}

	c, _ = New(providers.Config{Address: srv.URL, InsecureSkipVerify: true})
	if _, err := c.Query(context.Background(), "up"); err != nil {
		t.Fatalf("insecureSkipVerify: %v", err)
	}

	if _, err := New(providers.Config{Address: srv.URL, Credentials: providers.Credentials{CA: []byte("junk")}}); err == nil {
		t.Fatal("a CA bundle without certificates was accepted")
	}
}

func TestQueryTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	c, err := New(providers.Config{Address: srv.URL, Timeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Query(context.Background(), "up")
	if providers.KindOf(err) != providers.Timeout {
		t.Fatalf("Query() error = %v, want a Timeout", err)
	}
}

func TestQueryCancelledIsNotATimeout(t *testing.T) {
	srv := httptest.NewServer(answer(200, vector("1")))
	defer srv.Close()
	c, _ := New(providers.Config{Address: srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Query(ctx, "up"); providers.KindOf(err) != providers.Other {
		t.Fatalf("Query() error = %v, want Error", err)
	}
}

func TestQueryUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there any more: connection refused

	c, _ := New(providers.Config{Address: "http://" + addr})
	_, err = c.Query(context.Background(), "up")
	if providers.KindOf(err) != providers.Unreachable {
		t.Fatalf("Query() error = %v, want Unreachable", err)
	}
}

func TestClassifyDNSFailure(t *testing.T) {
	// The shape net/http returns when a name does not resolve; resolving a real name here
	// would send a query off this machine.
	err := &url.Error{Op: "Get", URL: "http://prometheus.monitoring:9090/api/v1/query", Err: &net.OpError{
		Op: "dial", Net: "tcp",
		Err: &net.DNSError{Err: "no such host", Name: "prometheus.monitoring", IsNotFound: true},
	}}
	got := classifyTransportError(context.Background(), err)
	if providers.KindOf(got) != providers.Unreachable || !errors.Is(got, err.Err) {
		t.Fatalf("classify = %v (%s), want Unreachable wrapping the cause", got, providers.KindOf(got))
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, cfg := range []providers.Config{
		{},
		{Address: "prometheus:9090"},
		{Address: "ftp://prometheus:9090"},
		{Address: "http://user:pw@prometheus:9090"},
		{Address: "http://prometheus:9090", Type: "datadog"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("New(%+v) error leaks the password: %v", cfg, err)
		}
	}
}

func TestFactorySharesTransports(t *testing.T) {
	f := NewFactory()
	a, err := f.New(providers.Config{Address: "http://a:9090"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := f.New(providers.Config{Address: "http://b:9090", Credentials: providers.Credentials{BearerToken: "t"}})
	c, _ := f.New(providers.Config{Address: "http://a:9090", InsecureSkipVerify: true})
	if a.(*Client).http.Transport != b.(*Client).http.Transport {
		t.Error("two clients with the same TLS settings have different transports")
	}
	if a.(*Client).http.Transport == c.(*Client).http.Transport {
		t.Error("clients with different TLS settings share a transport")
	}
}
