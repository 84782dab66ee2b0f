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

// localServer is a test bed server with a temporary directory of its own, which holds its
// data and its log.
type localServer struct {
	name string
	dir  string
	proc *process
}

// init creates the server's directory, removed by Close (or by the reaper if the tests die).
func (s *localServer) init(name string) error {
	s.name = name
	dir, err := os.MkdirTemp("", "canopy-"+name+"-")
	if err != nil {
		return err
	}
	s.dir = dir
	return reapDir(dir)
}

// start runs the server's binary with args, logging to its directory.
func (s *localServer) start(path string, args ...string) (err error) {
	s.proc, err = startProcess(s.name, filepath.Join(s.dir, s.name+".log"), path, args...)
	return err
}

// Log returns the last lines of the server's log, for a failing test's output.
func (s *localServer) Log() string { return tail(filepath.Join(s.dir, s.name+".log"), 60) }

// Close stops the server and removes its directory.
func (s *localServer) Close() error {
	var err error
	if s.proc != nil {
		err = s.proc.stop(10 * time.Second)
		s.proc = nil
	}
	if s.dir == "" {
		return err
	}
	if rmErr := os.RemoveAll(s.dir); rmErr != nil && err == nil {
		err = rmErr
	}
	unreapDir(s.dir)
	return err
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
	localServer
	port int
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
	if err := v.init("victoria-metrics"); err != nil {
		return nil, err
	}
	if v.port, err = FreePort(); err != nil {
		_ = v.Close()
		return nil, err
	}
	err = v.start(path,
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
