package testenv

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// InfluxDB is bin/influxd, an InfluxDB 1.x server on 127.0.0.1 ports with authentication
// on, for the influxql metric provider (GET /query) and the influxdb one (Flux, POST
// /api/v2/query, whose token is user:password on 1.x). InfluxDB 1.8 is the newest 1.x that
// builds without cgo: later ones link Flux's Rust library; see docs/testing.md.
type InfluxDB struct {
	localServer
	port           int
	user, password string
}

// StartInfluxDB starts influxd with an empty store in a temporary directory, with HTTP
// authentication on and one admin user, user with password, and returns once it answers.
// Points are written with Write.
func StartInfluxDB(user, password string) (_ *InfluxDB, err error) {
	path, err := optionalBinary("influxd")
	if err != nil {
		return nil, err
	}
	v := &InfluxDB{user: user, password: password}
	if err := v.init("influxd"); err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		_ = v.Close()
		return nil, err
	}
	v.port = ports[0]
	config := filepath.Join(v.dir, "influxdb.conf")
	// Every listener on 127.0.0.1; the services that are off by default (graphite, udp,
	// collectd, opentsdb) stay off; no usage reporting, no self-monitoring store.
	conf := fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:%d"
[meta]
  dir = %q
[data]
  dir = %q
  wal-dir = %q
  query-log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[http]
  bind-address = "127.0.0.1:%d"
  auth-enabled = true
  flux-enabled = true
  log-enabled = false
`, ports[1], filepath.Join(v.dir, "meta"), filepath.Join(v.dir, "data"), filepath.Join(v.dir, "wal"), v.port)
	if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
		_ = v.Close()
		return nil, err
	}
	if err := v.start(path, "run", "-config", config); err != nil {
		_ = v.Close()
		return nil, err
	}
	if err := waitFor("influxd to be ready", func() error { return httpOK(http.MethodGet, v.URL()+"/ping?verbose=true") }, v.proc); err != nil {
		_ = v.Close()
		return nil, err
	}
	// With authentication on, InfluxDB 1.x lets the first user be created without
	// credentials, and only an admin.
	create := fmt.Sprintf("CREATE USER %q WITH PASSWORD '%s' WITH ALL PRIVILEGES", user, strings.ReplaceAll(password, "'", `\'`))
	if err := v.post(context.Background(), "/query", url.Values{"q": {create}}, ""); err != nil {
		_ = v.Close()
		return nil, err
	}
	return v, nil
}

// URL is the base URL, e.g. http://127.0.0.1:PORT; /query and /write are under it.
func (v *InfluxDB) URL() string { return "http://127.0.0.1:" + strconv.Itoa(v.port) }

// Write creates database db if it does not exist and stores points given in InfluxDB's line
// protocol, stamped now where they carry no timestamp.
func (v *InfluxDB) Write(ctx context.Context, db, lines string) error {
	if err := v.post(ctx, "/query", url.Values{"q": {fmt.Sprintf("CREATE DATABASE %q", db)}}, ""); err != nil {
		return err
	}
	return v.post(ctx, "/write", url.Values{"db": {db}}, lines)
}

// post sends body to path as the admin user and wants a 2xx answer.
func (v *InfluxDB) post(ctx context.Context, path string, query url.Values, body string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.URL()+path+"?"+query.Encode(), strings.NewReader(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth(v.user, v.password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("InfluxDB %s: %s: %s", path, resp.Status, strings.TrimSpace(string(msg)))
	}
	// /query answers 200 with the statement's error in its body.
	if strings.Contains(string(msg), `"error"`) {
		return fmt.Errorf("InfluxDB %s: %s", path, strings.TrimSpace(string(msg)))
	}
	return nil
}
