//go:build linux

package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

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
	path, err := m.fetchProfile("/debug/pprof/heap?gc=1", filepath.Join(dir, "heap-"+name+".pb.gz"))
	if err != nil {
		return hp, err
	}
	hp.Path = path
	ss, err := scrape(m.metrics)
	if err != nil {
		return hp, err
	}
	hp.Live = ss.sum("go_memstats_heap_alloc_bytes", nil)
	hp.Top, err = pprofTop(path, "-sample_index=inuse_space")
	return hp, err
}

// cpuProfile is where the manager spent its CPU during part of a phase.
type cpuProfile struct {
	Phase   string
	Seconds int
	Path    string
	Top     string      // go tool pprof -top -cum
	Shares  []workShare // the apiserver's: its CPU by kind of work
	// Start is when the profile began, after the phase's start, where it did not begin with it.
	Start time.Duration
}

// profileCPU records the manager's CPU for the given seconds (it blocks that long).
func (m *managerProc) profileCPU(dir, name string, seconds int) (cpuProfile, error) {
	cp := cpuProfile{Phase: name, Seconds: seconds}
	path, err := m.fetchProfile(fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds), filepath.Join(dir, "cpu-"+name+".pb.gz"))
	if err != nil {
		return cp, err
	}
	cp.Path = path
	cp.Top, err = pprofTop(path, "-cum")
	return cp, err
}

// fetchProfile saves the manager's pprof answer at query into path.
func (m *managerProc) fetchProfile(query, path string) (string, error) {
	if m.pprof == "" {
		return "", fmt.Errorf("the manager serves no pprof endpoint")
	}
	cl := &http.Client{Timeout: 5 * time.Minute}
	resp, err := cl.Get(m.pprof + query)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("profile %s: %s", query, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return "", err
	}
	return path, f.Close()
}

// pprofTop summarizes a profile with go tool pprof -top.
func pprofTop(path string, args ...string) (string, error) {
	args = append(append([]string{"tool", "pprof", "-top", "-nodecount=15"}, args...), path)
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof: %v\n%s", err, out)
	}
	return pprofTable(string(out)), nil
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

// profileAPIServerCPU records the apiserver's CPU for the given seconds, through its
// /debug/pprof endpoint (which it serves to system:masters): where a loaded control plane's
// time goes.
func profileAPIServerCPU(ctx context.Context, cs *kubernetes.Clientset, dir, name string, seconds int) (cpuProfile, error) {
	cp := cpuProfile{Phase: name, Seconds: seconds}
	raw, err := cs.RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", strconv.Itoa(seconds)).Timeout(time.Duration(seconds+60) * time.Second).DoRaw(ctx)
	if err != nil {
		return cp, fmt.Errorf("the apiserver's CPU profile: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return cp, err
	}
	cp.Path = filepath.Join(dir, "apiserver-cpu-"+name+".pb.gz")
	if err := os.WriteFile(cp.Path, raw, 0o644); err != nil {
		return cp, err
	}
	if cp.Top, err = pprofTop(cp.Path, "-cum"); err != nil {
		return cp, err
	}
	cp.Shares, err = workShares(cp.Path)
	return cp, err
}

// apiWork is a kind of work of the apiserver, told apart in a CPU profile by a function on
// the stack of its samples.
type apiWork struct {
	name  string
	focus string // a regular expression of go tool pprof -focus
}

// apiWorks are the kinds of work the report tells apart in the apiserver's profiles. A sample
// counts for every kind whose function is on its stack; the kinds do not overlap (a request's
// handler runs on its own goroutine, apart from the filters of the handler chain, which are
// left out; a collection that a request's allocation assists is counted with the request).
var apiWorks = []apiWork{
	{"custom resources' status writes (the Canaries')", `customresource\.\(\*StatusREST\)\.Update`},
	{"server-side applies (VirtualServices, primaries)", `handlers\.\(\*applyPatcher\)`},
	{"strategic merge patches (pods' status, images)", `handlers\.\(\*smpPatcher\)`},
	{"creates (events, pods, ReplicaSets, bindings)", `handlers\.CreateResource`},
	{"updates (the controllers' status writes, scale)", `handlers\.UpdateResource`},
	{"deletes", `handlers\.DeleteResource`},
	{"gets and lists", `handlers\.(ListResource|GetResource)`},
	{"serving watches", `handlers\.serveWatch|\(\*WatchServer\)`},
	{"decoding etcd's watch events (the watch caches)", `etcd3\.\(\*watchChan\)`},
	{"garbage collection in the background", `runtime\.gcBgMarkWorker`},
}

// workShare is the share of a profile's samples with a kind of work on their stack.
type workShare struct {
	Work  string
	Share float64 // 0..1
}

// workShares breaks the profile at path down by apiWorks.
func workShares(path string) ([]workShare, error) {
	total, err := profileSeconds(path)
	if err != nil {
		return nil, err
	}
	out := make([]workShare, 0, len(apiWorks))
	for _, w := range apiWorks {
		share := workShare{Work: w.name} // an idle apiserver's profile has no sample: 0 of each
		if total > 0 {
			s, err := focusedSeconds(path, w.focus)
			if err != nil {
				return nil, err
			}
			share.Share = s / total
		}
		out = append(out, share)
	}
	return out, nil
}

// totalSamples matches the CPU time of go tool pprof's header: "Total samples = 13.13s".
var totalSamples = regexp.MustCompile(`Total samples = ([0-9.]+)s`)

// profileSeconds is the CPU time of all the samples of the profile at path.
func profileSeconds(path string) (float64, error) {
	out, err := pprofOut(path, "-top", "-nodecount=1", "-unit=s")
	if err != nil {
		return 0, err
	}
	m := totalSamples.FindStringSubmatch(out)
	if m == nil {
		return 0, nil // no sample
	}
	return strconv.ParseFloat(m[1], 64)
}

// focusedSeconds is the CPU time of the samples that pass -focus: every such sample has
// the focused function on its stack, so the largest cumulative time of go tool pprof -top
// -cum is theirs.
func focusedSeconds(path, focus string) (float64, error) {
	out, err := pprofOut(path, "-top", "-cum", "-nodecount=1", "-unit=s", "-focus="+focus)
	if err != nil {
		return 0, err
	}
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if !strings.Contains(l, "flat%") || i+1 >= len(lines) {
			continue
		}
		f := strings.Fields(lines[i+1])
		if len(f) < 5 {
			return 0, nil // nothing passed the focus
		}
		return strconv.ParseFloat(strings.TrimSuffix(f[3], "s"), 64)
	}
	return 0, nil
}

func pprofOut(path string, args ...string) (string, error) {
	out, err := exec.Command("go", append(append([]string{"tool", "pprof"}, args...), path)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof: %v\n%s", err, out)
	}
	return string(out), nil
}
