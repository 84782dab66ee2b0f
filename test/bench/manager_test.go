//go:build linux

package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"canopy.dev/canopy/test/testenv"
)

// clockTicks is the unit of utime and stime in /proc/<pid>/stat (USER_HZ, 100 on Linux).
const clockTicks = 100

// buildManager builds the operator's binary from main.go into dir.
func buildManager(dir string) (string, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "manager")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build the manager: %v\n%s", err, b)
	}
	return out, nil
}

// managerProc is the operator running as a child process, sampled while it runs.
type managerProc struct {
	cmd     *exec.Cmd
	metrics string
	pprof   string // the base URL of its pprof endpoint
	args    []string
	done    chan struct{} // closed when the process exited, with its error in waitErr
	waitErr error

	logPath string
	// gcMu guards gcOffset, how far readGC has read the log.
	gcMu     sync.Mutex
	gcOffset int64

	mu        sync.Mutex
	gc        gcStats // from the runtime's GC trace in the log
	peakRSS   float64 // VmRSS, bytes
	peakDepth float64 // workqueue_depth of the canary controller since resetPeaks
	sampleErr error
}

// gcStats are what the runtime's GC trace (GODEBUG=gctrace=1) says of the heap: at every
// collection the heap at its start and end (the most it reached) and what stayed live.
// Unlike sampling the metrics endpoint, it misses no peak and costs the manager nothing.
type gcStats struct {
	peak      float64 // the largest heap of any collection, bytes
	phasePeak float64 // the same since resetPeaks
	live      float64 // live heap after the last collection
	cycles    int
}

// gcLine matches the heap sizes of a gctrace line: "..., 41->42->20 MB, 43 MB goal, ...".
var gcLine = regexp.MustCompile(`^gc \d+ @.* (\d+)->(\d+)->(\d+) MB, `)

// readGC parses the gctrace lines the log gained since the last call.
func (m *managerProc) readGC() {
	m.gcMu.Lock()
	defer m.gcMu.Unlock()
	f, err := os.Open(m.logPath)
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(m.gcOffset, io.SeekStart); err != nil {
		return
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return
	}
	// Only whole lines: a line being written is read next time.
	end := bytes.LastIndexByte(data, '\n') + 1
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, line := range strings.Split(string(data[:end]), "\n") {
		g := gcLine.FindStringSubmatch(line)
		if g == nil {
			continue
		}
		start, _ := strconv.ParseFloat(g[1], 64)
		stop, _ := strconv.ParseFloat(g[2], 64)
		live, _ := strconv.ParseFloat(g[3], 64)
		heap := max(start, stop) * (1 << 20)
		m.gc.peak, m.gc.phasePeak = max(m.gc.peak, heap), max(m.gc.phasePeak, heap)
		m.gc.live = live * (1 << 20)
		m.gc.cycles++
	}
	m.gcOffset += int64(end)
}

// startManager runs bin with the flags, against kubeconfig; its log goes to logPath.
func startManager(ctx context.Context, bin, kubeconfig, logPath string, flags []string) (*managerProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	pport, err := freePort()
	if err != nil {
		return nil, err
	}
	paddr := "127.0.0.1:" + strconv.Itoa(pport)
	args := append([]string{"--kubeconfig=" + kubeconfig, "--metrics-bind-address=" + addr, "--health-probe-bind-address=0",
		"--pprof-bind-address=" + paddr, "--leader-elect=false", "--enable-webhooks=false", "--zap-log-level=error"}, flags...)
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
	// The manager dies with the benchmark, even if the benchmark is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return nil, err
	}
	m := &managerProc{cmd: cmd, metrics: "http://" + addr + "/metrics", pprof: "http://" + paddr, args: args, logPath: logPath, done: make(chan struct{})}
	go func() { m.waitErr = cmd.Wait(); _ = log.Close(); close(m.done) }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := scrape(m.metrics); err == nil {
			break
		}
		select {
		case <-m.done:
			return nil, fmt.Errorf("the manager exited: %v; see %s", m.waitErr, logPath)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = m.stop()
			return nil, fmt.Errorf("the manager's metrics endpoint did not answer within 2m; see %s", logPath)
		}
	}
	go m.sampleLoop(ctx)
	return m, nil
}

// sampleLoop follows the GC trace and the RSS every 0.5 s, and the work queue's depth every
// metricsEvery: a scrape of thousands of Canaries' series is work for the manager, which the
// benchmark must not make it do twice a second.
func (m *managerProc) sampleLoop(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var scraped time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.done:
			return
		case <-t.C:
		}
		m.readGC()
		rss, rerr := m.rss()
		var ss samples
		var err error
		if time.Since(scraped) >= metricsEvery {
			scraped = time.Now()
			ss, err = scrape(m.metrics)
		}
		m.mu.Lock()
		switch {
		case err != nil:
			m.sampleErr = err
		case ss != nil:
			m.peakDepth = max(m.peakDepth, ss.sum("workqueue_depth", map[string]string{"name": "canary"}))
		}
		if rerr == nil {
			m.peakRSS = max(m.peakRSS, rss)
		}
		m.mu.Unlock()
	}
}

// metricsEvery is how often the sampler scrapes the manager's metrics.
const metricsEvery = 5 * time.Second

// resetPeaks starts a new period for the per-phase peaks.
func (m *managerProc) resetPeaks() {
	m.readGC()
	m.mu.Lock()
	m.peakDepth, m.gc.phasePeak = 0, 0
	m.mu.Unlock()
}

type peaks struct{ heap, phaseHeap, live, rss, depth float64 }

func (m *managerProc) peaks() peaks {
	m.readGC()
	m.mu.Lock()
	defer m.mu.Unlock()
	return peaks{m.gc.peak, m.gc.phasePeak, m.gc.live, m.peakRSS, m.peakDepth}
}

// rss is the resident set size, from /proc.
func (m *managerProc) rss() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", m.cmd.Process.Pid)
}

// cpuSeconds is the user and system CPU time the manager used so far, from /proc.
func (m *managerProc) cpuSeconds() (float64, error) {
	return procCPU(strconv.Itoa(m.cmd.Process.Pid))
}

// stop ends the manager with SIGTERM (SIGKILL after 20s).
func (m *managerProc) stop() error {
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
		return m.waitErr
	case <-time.After(20 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
		return fmt.Errorf("the manager did not stop within 20s of SIGTERM")
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
