package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PrometheusOptions configure StartPrometheus.
type PrometheusOptions struct {
	// Targets are host:port addresses scraped at /metrics, e.g. the mesh simulator's.
	Targets []string
	// ScrapeInterval defaults to 1s, so that tests see fresh samples quickly.
	ScrapeInterval time.Duration
	// StateDir keeps the config, the TSDB and the log. By default a new temporary
	// directory, removed by Close; a given directory is kept.
	StateDir string
	// Args are extra flags, e.g. "--query.lookback-delta=10s".
	Args []string
}

// Prometheus is bin/prometheus on a fixed 127.0.0.1 port. It can be stopped and started
// again on the same port with the same data, as a real Prometheus restart would be.
type Prometheus struct {
	opts  PrometheusOptions
	port  int
	owned bool // StateDir is ours to remove

	mu   sync.Mutex
	proc *process
}

// StartPrometheus writes a scrape config for opts.Targets and starts Prometheus on a free
// 127.0.0.1 port, returning once it is ready to answer queries.
func StartPrometheus(opts PrometheusOptions) (_ *Prometheus, err error) {
	if opts.ScrapeInterval == 0 {
		opts.ScrapeInterval = time.Second
	}
	p := &Prometheus{opts: opts}
	if p.opts.StateDir == "" {
		if p.opts.StateDir, err = os.MkdirTemp("", "canopy-prometheus-"); err != nil {
			return nil, err
		}
		p.owned = true
		if err := reapDir(p.opts.StateDir); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(p.opts.StateDir, 0o750); err != nil {
		return nil, err
	}
	if p.port, err = FreePort(); err != nil {
		return nil, err
	}
	if err := p.writeConfig(); err != nil {
		return nil, err
	}
	if err := p.Start(); err != nil {
		_ = p.Close()
		return nil, err
	}
	return p, nil
}

// URL is Prometheus' base URL, e.g. http://127.0.0.1:PORT; it stays the same across
// Stop and Start.
func (p *Prometheus) URL() string { return "http://127.0.0.1:" + strconv.Itoa(p.port) }

// Start starts Prometheus again after Stop (StartPrometheus already started it) and waits
// until it is ready.
func (p *Prometheus) Start() error {
	path, err := binary("prometheus")
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil {
		return fmt.Errorf("prometheus is already running")
	}
	args := append([]string{
		"--config.file=" + p.configPath(),
		"--storage.tsdb.path=" + filepath.Join(p.opts.StateDir, "data"),
		"--web.listen-address=127.0.0.1:" + strconv.Itoa(p.port),
		"--web.enable-lifecycle", // for SetTargets' reload
	}, p.opts.Args...)
	proc, err := startProcess("prometheus", filepath.Join(p.opts.StateDir, "prometheus.log"), path, args...)
	if err != nil {
		return err
	}
	err = waitFor("prometheus to be ready", func() error {
		return httpOK(http.MethodGet, p.URL()+"/-/ready")
	}, proc)
	if err != nil {
		_ = proc.stop(5 * time.Second)
		return err
	}
	p.proc = proc
	return nil
}

// Stop stops Prometheus, keeping its port, config and data for Start.
func (p *Prometheus) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return nil
	}
	err := p.proc.stop(10 * time.Second)
	p.proc = nil
	return err
}

// Close stops Prometheus for good and removes a temporary state directory.
func (p *Prometheus) Close() error {
	err := p.Stop()
	if p.owned {
		if rmErr := os.RemoveAll(p.opts.StateDir); rmErr != nil && err == nil {
			err = rmErr
		}
		unreapDir(p.opts.StateDir)
	}
	return err
}

// SetTargets replaces the scraped targets and, if Prometheus runs, reloads its config.
func (p *Prometheus) SetTargets(targets ...string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.opts.Targets = targets
	if err := p.writeConfig(); err != nil {
		return err
	}
	if p.proc == nil {
		return nil
	}
	return httpOK(http.MethodPost, p.URL()+"/-/reload")
}

// Log returns the last lines of Prometheus' log, for a failing test's output.
func (p *Prometheus) Log() string { return tail(filepath.Join(p.opts.StateDir, "prometheus.log"), 60) }

func (p *Prometheus) configPath() string { return filepath.Join(p.opts.StateDir, "prometheus.yml") }

func (p *Prometheus) writeConfig() error {
	quoted := make([]string, len(p.opts.Targets))
	for i, t := range p.opts.Targets {
		quoted[i] = strconv.Quote(t)
	}
	// The timeout may not exceed the interval; scrapes of a local target are fast anyway.
	config := fmt.Sprintf(`global:
  scrape_interval: %[1]s
  scrape_timeout: %[1]s
  evaluation_interval: %[1]s
scrape_configs:
- job_name: canopy-test
  static_configs:
  - targets: [%[2]s]
`, p.opts.ScrapeInterval, strings.Join(quoted, ", "))
	return os.WriteFile(p.configPath(), []byte(config), 0o600)
}

func httpOK(method, url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	return nil
}
