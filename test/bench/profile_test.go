//go:build linux

package bench

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"canopy.dev/canopy/test/testenv"
)

// profileDir is where the profiles of size n are kept: bin/bench/N=<n> (git-ignored).
func profileDir(n int) string {
	root, err := testenv.RepoRoot()
	if err != nil {
		root = os.TempDir()
	}
	return filepath.Join(root, "bin", "bench", fmt.Sprintf("N=%d", n))
}

// heapProfile is the manager's heap after a garbage collection: what stays live once the
// caches are full, apart from the garbage that the peak heap in use also counts.
type heapProfile struct {
	Phase string  // the phase after which it was taken
	Live  float64 // go_memstats_heap_alloc_bytes right after the collection
	Path  string  // the pprof profile (go tool pprof reads it)
	Top   string  // go tool pprof -top, the largest in-use allocation sites
}

// profileHeap asks the manager's pprof endpoint for a heap profile (gc=1 collects first),
// keeps it in dir, and summarizes it with go tool pprof.
func (m *managerProc) profileHeap(dir, name string) (heapProfile, error) {
	hp := heapProfile{Phase: name}
	if m.pprof == "" {
		return hp, fmt.Errorf("the manager serves no pprof endpoint")
	}
	cl := &http.Client{Timeout: time.Minute}
	resp, err := cl.Get(m.pprof + "/debug/pprof/heap?gc=1")
	if err != nil {
		return hp, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return hp, fmt.Errorf("heap profile: %s", resp.Status)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return hp, err
	}
	hp.Path = filepath.Join(dir, "heap-"+name+".pb.gz")
	f, err := os.Create(hp.Path)
	if err != nil {
		return hp, err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return hp, err
	}
	if err := f.Close(); err != nil {
		return hp, err
	}
	ss, err := scrape(m.metrics)
	if err != nil {
		return hp, err
	}
	hp.Live = ss.sum("go_memstats_heap_alloc_bytes", nil)
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=12", "-sample_index=inuse_space", hp.Path).CombinedOutput()
	if err != nil {
		return hp, fmt.Errorf("go tool pprof: %v\n%s", err, out)
	}
	hp.Top = pprofTable(string(out))
	return hp, nil
}

// pprofTable keeps the table of go tool pprof -top: the header line and the rows, without
// the file and build preamble.
func pprofTable(out string) string {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.Contains(l, "flat%") {
			return strings.TrimRight(strings.Join(lines[i:], "\n"), "\n")
		}
	}
	return strings.TrimSpace(out)
}
