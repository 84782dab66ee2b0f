//go:build linux

package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

	mu        sync.Mutex
	peakHeap  float64 // go_memstats_heap_inuse_bytes
	peakAlloc float64 // go_memstats_heap_alloc_bytes
	peakRSS   float64 // VmRSS, bytes
	peakDepth float64 // workqueue_depth of the canary controller since resetPeaks
	sampleErr error
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
	// The manager dies with the benchmark, even if the benchmark is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return nil, err
	}
	m := &managerProc{cmd: cmd, metrics: "http://" + addr + "/metrics", pprof: "http://" + paddr, args: args, done: make(chan struct{})}
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

func (m *managerProc) sampleLoop(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.done:
			return
		case <-t.C:
		}
		ss, err := scrape(m.metrics)
		rss, rerr := m.rss()
		m.mu.Lock()
		if err != nil {
			m.sampleErr = err
		} else {
			m.peakHeap = max(m.peakHeap, ss.sum("go_memstats_heap_inuse_bytes", nil))
			m.peakAlloc = max(m.peakAlloc, ss.sum("go_memstats_heap_alloc_bytes", nil))
			m.peakDepth = max(m.peakDepth, ss.sum("workqueue_depth", map[string]string{"name": "canary"}))
		}
		if rerr == nil {
			m.peakRSS = max(m.peakRSS, rss)
		}
		m.mu.Unlock()
	}
}

// resetPeaks starts a new period for the queue depth's peak.
func (m *managerProc) resetPeaks() {
	m.mu.Lock()
	m.peakDepth = 0
	m.mu.Unlock()
}

type peaks struct{ heap, alloc, rss, depth float64 }

func (m *managerProc) peaks() peaks {
	m.mu.Lock()
	defer m.mu.Unlock()
	return peaks{m.peakHeap, m.peakAlloc, m.peakRSS, m.peakDepth}
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
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndex(s, ")")+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", m.cmd.Process.Pid)
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parsing /proc/%d/stat: %v %v", m.cmd.Process.Pid, err1, err2)
	}
	return (utime + stime) / clockTicks, nil
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
