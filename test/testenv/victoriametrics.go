package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// ErrOptionalBinary is returned when a binary only some tests need (victoria-metrics) is
// missing from the bin directories.
var ErrOptionalBinary = errors.New("optional test bed binary missing")

// optionalBinary finds name in $CANOPY_BIN, then in the repository's bin/: a component
// added after a shared bin directory was built is found where the worktree built it.
func optionalBinary(name string) (string, error) {
	var dirs []string
	if dir, err := BinDir(); err == nil {
		dirs = append(dirs, dir)
	}
	if root, err := RepoRoot(); err == nil {
		dirs = append(dirs, filepath.Join(root, "bin"))
	}
	for _, dir := range dirs {
		path := filepath.Join(dir, name)
		if info, err := os.Stat(path); err == nil && !info.IsDir() && info.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return "", fmt.Errorf("%w: %s is in none of %v: run `hack/build-components.sh %s`", ErrOptionalBinary, name, dirs, name)
}

// SkipUnlessOptional skips t when err is ErrOptionalBinary, except in CI (CI=true), where
// a missing component fails the test: CI must not pass without running it.
func SkipUnlessOptional(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ErrOptionalBinary) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	t.Fatal(err)
}

// VictoriaMetrics is bin/victoria-metrics, single-node, on a 127.0.0.1 port: a
// PromQL/MetricsQL server that is not Prometheus, for the victoriametrics metric provider.
type VictoriaMetrics struct {
	dir  string
	port int
	proc *process
}

// StartVictoriaMetrics starts VictoriaMetrics with an empty store in a temporary directory,
// answering queries on fresh samples at once (no latency offset, no result cache), and
// returns once it is ready. Samples are written with Import.
func StartVictoriaMetrics() (_ *VictoriaMetrics, err error) {
	path, err := optionalBinary("victoria-metrics")
	if err != nil {
		return nil, err
	}
	v := &VictoriaMetrics{}
	if v.dir, err = os.MkdirTemp("", "canopy-victoriametrics-"); err != nil {
		return nil, err
	}
	if err := reapDir(v.dir); err != nil {
		return nil, err
	}
	if v.port, err = FreePort(); err != nil {
		return nil, err
	}
	v.proc, err = startProcess("victoria-metrics", filepath.Join(v.dir, "victoria-metrics.log"), path,
		"-storageDataPath="+filepath.Join(v.dir, "data"),
		"-httpListenAddr=127.0.0.1:"+strconv.Itoa(v.port),
		"-retentionPeriod=1d",
		// A sample is visible to queries as soon as it is stored: tests write and query
		// within a second.
		"-search.latencyOffset=0s",
		"-search.disableCache",
		"-inmemoryDataFlushInterval=1s",
	)
	if err != nil {
		_ = v.Close()
		return nil, err
	}
	if err := waitFor("victoria-metrics to be ready", func() error { return httpOK(http.MethodGet, v.URL()+"/health") }, v.proc); err != nil {
		_ = v.Close()
		return nil, err
	}
	return v, nil
}

// URL is the base URL, e.g. http://127.0.0.1:PORT; /api/v1/query is under it.
func (v *VictoriaMetrics) URL() string { return "http://127.0.0.1:" + strconv.Itoa(v.port) }

// Import stores samples given in Prometheus' text exposition format, stamped now.
func (v *VictoriaMetrics) Import(ctx context.Context, text string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.URL()+"/api/v1/import/prometheus", bytes.NewBufferString(text))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("importing into VictoriaMetrics: %s", resp.Status)
	}
	return nil
}

// Log returns the last lines of the server's log, for a failing test's output.
func (v *VictoriaMetrics) Log() string { return tail(filepath.Join(v.dir, "victoria-metrics.log"), 60) }

// Close stops the server and removes its directory.
func (v *VictoriaMetrics) Close() error {
	var err error
	if v.proc != nil {
		err = v.proc.stop(10 * time.Second)
		v.proc = nil
	}
	if rmErr := os.RemoveAll(v.dir); rmErr != nil && err == nil {
		err = rmErr
	}
	unreapDir(v.dir)
	return err
}
