package influxdb

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/analysis/providers/providertest"
)

// fluxServer stands in for InfluxDB 2.x's POST /api/v2/query as documented: the org as a
// query parameter, "Authorization: Token ...", a JSON Query body ({"query","type":"flux",
// "dialect":{...}}) and Accept: application/csv; the answer annotated CSV (text/csv, CRLF
// lines), or an error body {"code":..,"message":..}.
func fluxServer(t *testing.T, code int, answer string) (*httptest.Server, *fluxRequest) {
	t.Helper()
	var seen fluxRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") != "Token tok":
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"code":"unauthorized","message":"unauthorized access"}`))
			return
		case r.Method != http.MethodPost || r.URL.Path != "/api/v2/query" || r.Header.Get("Content-Type") != "application/json" ||
			r.Header.Get("Accept") != "application/csv" || json.NewDecoder(r.Body).Decode(&seen) != nil:
			t.Errorf("request %s %s, Content-Type %q, Accept %q", r.Method, r.URL, r.Header.Get("Content-Type"), r.Header.Get("Accept"))
		case r.URL.Query().Get("org") != "shop":
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"code":"not found","message":"organization name \"` + r.URL.Query().Get("org") + `\" not found"}`))
			return
		}
		if code/100 == 2 {
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		} else {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(answer))
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

func csvLines(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n\r\n" }

const (
	fluxTypes  = "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string,string"
	fluxGroup  = "#group,false,false,true,true,false,false,true,true,true"
	fluxDef    = "#default,_result,,,,,,,,"
	fluxHeader = ",result,table,_start,_stop,_time,_value,_field,_measurement,service"
)

func fluxRow(table, value string) string {
	return ",," + table + ",2023-11-14T22:08:20Z,2023-11-14T22:13:20Z,2023-11-14T22:13:00Z," + value + ",rate,errors,reviews"
}

func newClient(t *testing.T, cfg providers.Config) *Client {
	t.Helper()
	c, err := New(cfg, http.DefaultTransport)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFluxSendsTheDocumentedRequest(t *testing.T) {
	srv, seen := fluxServer(t, 200, csvLines(fluxTypes, fluxGroup, fluxDef, fluxHeader, fluxRow("0", "0.5"), fluxRow("0", "0.75"), fluxRow("0", "")))
	c := newClient(t, providers.Config{Type: TypeFlux, Address: srv.URL, InfluxDB: providers.InfluxDB{Org: "shop"},
		Credentials: providers.Credentials{BearerToken: "tok"}})
	query := `from(bucket: "mesh") |> range(start: -5m) |> filter(fn: (r) => r.service == "reviews") |> last()`
	got, err := c.Query(context.Background(), query)
	if err != nil || got != 0.75 {
		t.Fatalf("Query = %v, %v; want the last non-null value 0.75", got, err)
	}
	if seen.Query != query || seen.Type != "flux" || !seen.Dialect.Header || strings.Join(seen.Dialect.Annotations, ",") != "datatype,group,default" {
		t.Errorf("body %+v", seen)
	}
}

func TestFluxAnswers(t *testing.T) {
	for _, tt := range []struct {
		name     string
		code     int
		answer   string
		cfg      providers.Config
		want     float64
		wantKind providers.Kind
		wantMsg  string
	}{
		{name: "long", code: 200, answer: csvLines("#datatype,string,long,long", "#group,false,false,false", "#default,_result,,", ",result,table,_value", ",,0,42"), want: 42},
		{name: "no table", code: 200, answer: "\r\n", wantKind: providers.NoData},
		{name: "two tables", code: 200, answer: csvLines(fluxTypes, fluxGroup, fluxDef, fluxHeader, fluxRow("0", "1"), fluxRow("1", "2")), wantKind: providers.BadQuery, wantMsg: "2 tables"},
		{name: "string value", code: 200, answer: csvLines("#datatype,string,long,string", "#group,false,false,false", "#default,_result,,", ",result,table,_value", ",,0,up"), wantKind: providers.BadQuery, wantMsg: "string"},
		{name: "error in the stream", code: 200, answer: csvLines("#datatype,string,string", "#group,true,true", "#default,,", ",error,reference", `,"runtime error @1:1-1:20: from: bucket ""mesh"" not found",`),
			wantKind: providers.BadQuery, wantMsg: `bucket \"mesh\" not found`},
		{name: "compilation error", code: 400, answer: `{"code":"invalid","message":"compilation failed: error at @1:1-1:4: undefined identifier fro"}`, wantKind: providers.BadQuery, wantMsg: "undefined identifier fro"},
		{name: "unknown org", code: 200, answer: "", cfg: providers.Config{InfluxDB: providers.InfluxDB{Org: "other"}}, wantKind: providers.Other, wantMsg: `organization name \"other\" not found`},
		{name: "bad token", code: 200, answer: "", cfg: providers.Config{Credentials: providers.Credentials{BearerToken: "nope"}}, wantKind: providers.Other, wantMsg: "unauthorized access"},
		{name: "not InfluxDB", code: 200, answer: "<html>secret</html>", wantKind: providers.Other, wantMsg: "not an InfluxDB API answer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := fluxServer(t, tt.code, tt.answer)
			cfg := providers.Config{Type: TypeFlux, Address: srv.URL, InfluxDB: providers.InfluxDB{Org: "shop"}, Credentials: providers.Credentials{BearerToken: "tok"}}
			if tt.cfg.InfluxDB.Org != "" {
				cfg.InfluxDB = tt.cfg.InfluxDB
			}
			if tt.cfg.Credentials.BearerToken != "" {
				cfg.Credentials = tt.cfg.Credentials
			}
			got, err := newClient(t, cfg).Query(context.Background(), "q")
			providertest.CheckQuery(t, got, err, tt.want, tt.wantKind, tt.wantMsg)
		})
	}
}

// influxQLServer stands in for InfluxDB 1.x's GET /query as documented: db, rp, q and epoch
// as query parameters, basic auth; the answer {"results":[{"statement_id":0,"series":[{
// "name","columns","values"}]}]}, a statement's error in "results" with status 200, and
// {"error":...} for a request InfluxDB refuses.
func influxQLServer(t *testing.T, code int, answer string) (*httptest.Server, *http.Request) {
	t.Helper()
	var seen http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = *r.Clone(context.Background())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Influxdb-Version", "1.8.10")
		if user, pass, ok := r.BasicAuth(); !ok || user != "canopy" || pass != "pw" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"authorization failed"}`))
			return
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(answer))
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

func TestInfluxQLSendsTheDocumentedRequest(t *testing.T) {
	srv, seen := influxQLServer(t, 200, `{"results":[{"statement_id":0,"series":[{"name":"requests","columns":["time","mean"],"values":[[1699999880000,0.5],[1699999940000,0.25],[1700000000000,null]]}]}]}`)
	c := newClient(t, providers.Config{Type: TypeInfluxQL, Address: srv.URL + "/influx", InfluxDB: providers.InfluxDB{Database: "mesh", RetentionPolicy: "week"},
		Credentials: providers.Credentials{Username: "canopy", Password: "pw"}})
	query := `SELECT mean("errors") FROM "requests" WHERE "service" = 'reviews' AND time > now() - 5m`
	got, err := c.Query(context.Background(), query)
	if err != nil || got != 0.25 {
		t.Fatalf("Query = %v, %v; want the last non-null value 0.25", got, err)
	}
	q := seen.URL.Query()
	if seen.Method != http.MethodGet || seen.URL.Path != "/influx/query" || q.Get("q") != query || q.Get("db") != "mesh" || q.Get("rp") != "week" || q.Get("epoch") != "ms" {
		t.Errorf("request %s %s", seen.Method, seen.URL)
	}
}

func TestInfluxQLAnswers(t *testing.T) {
	for _, tt := range []struct {
		name     string
		code     int
		answer   string
		password string
		want     float64
		wantKind providers.Kind
		wantMsg  string
	}{
		{name: "integer", code: 200, answer: `{"results":[{"statement_id":0,"series":[{"name":"m","columns":["time","count"],"values":[[1,7]]}]}]}`, want: 7},
		{name: "no series", code: 200, answer: `{"results":[{"statement_id":0}]}`, wantKind: providers.NoData},
		{name: "only nulls", code: 200, answer: `{"results":[{"statement_id":0,"series":[{"name":"m","columns":["time","mean"],"values":[[1,null]]}]}]}`, wantKind: providers.NoData},
		{name: "grouped", code: 200, answer: `{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"host":"a"},"columns":["time","mean"],"values":[[1,1]]},{"name":"m","tags":{"host":"b"},"columns":["time","mean"],"values":[[1,2]]}]}]}`,
			wantKind: providers.BadQuery, wantMsg: "2 series"},
		{name: "two fields", code: 200, answer: `{"results":[{"statement_id":0,"series":[{"name":"m","columns":["time","a","b"],"values":[[1,1,2]]}]}]}`, wantKind: providers.BadQuery, wantMsg: "2 values"},
		{name: "two statements", code: 200, answer: `{"results":[{"statement_id":0},{"statement_id":1}]}`, wantKind: providers.BadQuery, wantMsg: "2 statements"},
		{name: "unknown database", code: 200, answer: `{"results":[{"statement_id":0,"error":"database not found: mesh"}]}`, wantKind: providers.BadQuery, wantMsg: "database not found"},
		{name: "parse error", code: 400, answer: `{"error":"error parsing query: found FRO, expected FROM at line 1, char 15"}`, wantKind: providers.BadQuery, wantMsg: "expected FROM"},
		{name: "bad password", code: 200, answer: `{}`, password: "nope", wantKind: providers.Other, wantMsg: "authorization failed"},
		{name: "not InfluxDB", code: 200, answer: `{"secret":1}`, wantKind: providers.Other, wantMsg: "not an InfluxDB API answer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := influxQLServer(t, tt.code, tt.answer)
			password := tt.password
			if password == "" {
				password = "pw"
			}
			got, err := newClient(t, providers.Config{Type: TypeInfluxQL, Address: srv.URL, InfluxDB: providers.InfluxDB{Database: "mesh"},
				Credentials: providers.Credentials{Username: "canopy", Password: password}}).Query(context.Background(), "SELECT 1")
			providertest.CheckQuery(t, got, err, tt.want, tt.wantKind, tt.wantMsg)
		})
	}
}

func TestNewNeedsWhereTheQueryRuns(t *testing.T) {
	if _, err := New(providers.Config{Type: TypeFlux, Address: "https://influx.example.com"}, http.DefaultTransport); err == nil || !strings.Contains(err.Error(), "influxDB.org") {
		t.Errorf("Flux without an org: %v", err)
	}
	if _, err := New(providers.Config{Type: TypeInfluxQL, Address: "https://influx.example.com"}, http.DefaultTransport); err == nil || !strings.Contains(err.Error(), "influxDB.database") {
		t.Errorf("InfluxQL without a database: %v", err)
	}
}
