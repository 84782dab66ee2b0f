//go:build linux

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"canopy.dev/canopy/test/testenv"
)

// TestMain sends controller-runtime's log (the benchmark's informer) to stderr, errors only.
func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	os.Exit(m.Run())
}

// defaultSizes are the Ns of `make bench`; BENCH_SIZES overrides them (e.g. "100,1000").
const defaultSizes = "100,1000,10000"

// prometheusUpTo is the largest N whose Canaries also run the Prometheus check: the
// simulator and Prometheus would otherwise take the CPU the manager is measured on.
const prometheusUpTo = 100

func config(n, fullUpTo int) scaleConfig {
	c := scaleConfig{
		N: n, Prometheus: n <= prometheusUpTo, Steps: 5, Interval: time.Second, PerNamespace: 250,
		// A reconcile mostly waits on the apiserver: the workers grow with the Canaries
		// stepping at once (with 16 at N=1000 all were busy and the queue held ~930).
		MaxConcurrent: max(16, n/10), QPS: 1000, Burst: 2000, PhaseTimeout: 5 * time.Minute, InitTimeout: max(7*time.Minute, time.Duration(n)*400*time.Millisecond),
	}
	if n > fullUpTo {
		// Beyond what the local cluster can roll out on this machine in a phase's time:
		// the caches, the memory and the no-op cost with every Canary initialized. The
		// targets run no pods (their primaries run one each), so that the cluster has half
		// the pods to start, and their Services are headless: the apiserver allocates a
		// ClusterIP one Service at a time, at a cost that grows with the Services there
		// are (docs/scaling.md), and canopy's two a Canary are enough to pace the phase.
		// What canopy caches and writes a Canary is the same. The workers stay at the
		// N=1000 count: more would only wait on that allocation.
		c.Phases, c.Lean, c.MaxConcurrent = []string{"initialize", "no-op"}, true, min(c.MaxConcurrent, 100)
	}
	return c
}

// BenchmarkScale runs every size once and writes docs/benchmarks.md (BENCH_OUT overrides
// the path).
func BenchmarkScale(b *testing.B) {
	sizes, err := parseSizes(envOr("BENCH_SIZES", defaultSizes))
	if err != nil {
		b.Fatal(err)
	}
	full, err := parseFullUpTo(envOr("BENCH_FULL_UPTO", defaultFullUpTo))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		m := describeMachine()
		m.Command, m.Sizes = "make bench", sizes
		if s := os.Getenv("BENCH_SIZES"); s != "" {
			m.Command = "BENCH_SIZES=" + s + " make bench"
		}
		if s := os.Getenv("BENCH_FULL_UPTO"); s != "" {
			m.Command = "BENCH_FULL_UPTO=" + s + " " + m.Command
		}
		if s := os.Getenv("BENCH_OUT"); s != "" {
			m.Command = "BENCH_OUT=" + s + " " + m.Command
		}
		root, err := testenv.RepoRoot()
		if err != nil {
			b.Fatal(err)
		}
		out, err := reportPath(root, os.Getenv("BENCH_OUT"))
		if err != nil {
			b.Fatal(err)
		}
		// The report is rewritten after every size: a run cut short keeps what it measured.
		results := measure(b, sizes, full, func(results []scaleResult) {
			m.LoadEnd, m.Took = loadavg(), time.Since(m.Started)
			if err := os.WriteFile(out, []byte(report(m, results)), 0o644); err != nil {
				b.Fatal(err)
			}
			b.Logf("wrote %s", out)
		})
		for _, r := range results {
			if r.Err != "" {
				b.Errorf("N=%d: %s", r.Config.N, r.Err)
			}
		}
	}
}

// TestScaleSmoke runs the benchmark's code with a few Canaries (with Prometheus), so that
// `go test ./...` keeps it working; it checks that every phase completes, that the no-op
// reconciles sent no request, and that the report is written; never how fast.
func TestScaleSmoke(t *testing.T) {
	testenv.SkipIfShort(t)
	results := measure(t, []int{5}, 5, func([]scaleResult) {})
	r := results[0]
	if r.Err != "" {
		t.Fatal(r.Err)
	}
	for _, name := range []string{"initialize", "no-op", "rollout", "rollback"} {
		ph := r.phase(name)
		if ph == nil || ph.Reached != 5 {
			t.Fatalf("phase %s: %+v", name, ph)
		}
	}
	// With label-scoped caches, a reconcile with nothing to do still sends no request.
	if ph := r.phase("no-op"); managerWrites(ph.Manager) != 0 || uncachedReads(ph.Manager) != 0 {
		t.Errorf("%.0f no-op reconciles sent requests: %v", ph.Reconciles, ph.Manager)
	}
	// The watch probe's writes were seen while the rollouts ran (seconds, many probes).
	if ph := r.phase("rollout"); len(ph.WatchLags) == 0 {
		t.Errorf("the watch probe saw none of its writes in the %s of the rollout phase", ph.Duration)
	}
	if ph := r.phase("rollback"); len(ph.Lags) != 5 || len(ph.RouteLags) != 5 || len(ph.WrittenLags) != 5 {
		t.Errorf("rollback lags of %d (status), %d (routes) and %d (written) Canaries, want 5", len(ph.Lags), len(ph.RouteLags), len(ph.WrittenLags))
	}
	// The apiserver's profiles are two, the steps' broken down by kind of work, the kinds apart.
	if a, sp := r.APIServerProfile, r.StepsProfile; a == nil || sp == nil || a.Path == sp.Path {
		t.Errorf("the apiserver's profiles of the rollouts' first seconds and of the steps: %+v, %+v", a, sp)
	}
	// Each is broken down by kind of work, the kinds apart: never more than the whole. The
	// first seconds hold the rollouts' writes; the steps' window may find the few Canaries
	// here done already (an idle apiserver: few samples, or none, which is 0 of each kind).
	for _, prof := range []*cpuProfile{r.APIServerProfile, r.StepsProfile} {
		if prof == nil || len(prof.Shares) != len(apiWorks) {
			t.Errorf("the apiserver's profile by kind of work: %+v", prof)
			continue
		}
		sum := 0.0
		for _, s := range prof.Shares {
			sum += s.Share
		}
		if sum > 1.0001 || (prof == r.APIServerProfile && sum <= 0) {
			t.Errorf("the kinds of work of the apiserver's profile %s add up to %.3f of it: %+v", prof.Path, sum, prof.Shares)
		}
	}
	md := report(describeMachine(), results)
	for _, want := range []string{"| 5 | Prometheus + webhook |", "### N=5", "APPLY virtualservices", "| N | first weight | Promoting | Finalising | Succeeded |", "on this cluster", "| 5 | new images (",
		"| phase | APPLY virtualservices | PATCH canaries/status | POST events | PUT deployments/scale | a Canary's change seen by a watch |", "| custom resources' status writes (the Canaries') | ", "the phase's work (", "canopy's route and status writes had returned (its CheckFailed event) p50 "} {
		if !strings.Contains(md, want) {
			t.Errorf("the report has no %q:\n%s", want, md)
		}
	}
	if err := os.WriteFile(filepath.Join(t.TempDir(), "benchmarks.md"), []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
}

// measure runs each size in turn (every phase up to fullUpTo Canaries), calling done with
// the results so far after each.
func measure(tb testing.TB, sizes []int, fullUpTo int, done func([]scaleResult)) []scaleResult {
	dir := tb.TempDir()
	bin, err := buildManager(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var out []scaleResult
	for _, n := range sizes {
		ctx, cancel := context.WithCancel(context.Background())
		out = append(out, runScale(ctx, tb.Logf, bin, config(n, fullUpTo)))
		cancel()
		done(out)
	}
	return out
}

// defaultFullUpTo is the largest N that runs every phase; BENCH_FULL_UPTO overrides it.
// Larger sizes run initialize and no-op only.
const defaultFullUpTo = "1000"

func parseFullUpTo(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("BENCH_FULL_UPTO: %q is not a positive number of Canaries", s)
	}
	return n, nil
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("BENCH_SIZES: %q is not a positive number of Canaries", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// The benchmark's settings refuse what is not a positive number, naming the variable.
func TestBenchSettingsRefuseBadNumbers(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"BENCH_SIZES", func() error { _, err := parseSizes("100,lots"); return err }()},
		{"BENCH_SIZES", func() error { _, err := parseSizes("0"); return err }()},
		{"BENCH_FULL_UPTO", func() error { _, err := parseFullUpTo("big"); return err }()},
		{"BENCH_FULL_UPTO", func() error { _, err := parseFullUpTo("-1"); return err }()},
	} {
		if tc.err == nil || !strings.HasPrefix(tc.err.Error(), tc.name+": ") {
			t.Errorf("want an error naming %s, got %v", tc.name, tc.err)
		}
	}
	if n, err := parseFullUpTo(defaultFullUpTo); err != nil || n != 1000 {
		t.Errorf("the default: %d, %v", n, err)
	}
}

// Sizes up to BENCH_FULL_UPTO run every phase with running targets; larger ones initialize
// and no-op only, with lean targets and no more workers than at N=1000.
func TestBenchSizesBeyondFullUpTo(t *testing.T) {
	full, big := config(1000, 1000), config(10000, 1000)
	if len(full.Phases) != 0 || full.Lean || full.MaxConcurrent != 100 {
		t.Errorf("N=1000: phases %v, lean %v, workers %d", full.Phases, full.Lean, full.MaxConcurrent)
	}
	if !slices.Equal(big.Phases, []string{"initialize", "no-op"}) || !big.Lean || big.MaxConcurrent != 100 {
		t.Errorf("N=10000: phases %v, lean %v, workers %d", big.Phases, big.Lean, big.MaxConcurrent)
	}
	if big.InitTimeout != 4000*time.Second {
		t.Errorf("N=10000: initialize timeout %s, want 400 ms a Canary", big.InitTimeout)
	}
}

// reportPath is where the report goes: docs/benchmarks.md, or BENCH_OUT, which is relative
// to the repository's root like the Makefile that runs it (go test runs in test/bench). Its
// directory must exist: the report is written after the first size, maybe an hour later.
func reportPath(root, env string) (string, error) {
	out := filepath.Join(root, "docs", "benchmarks.md")
	switch {
	case env == "":
	case filepath.IsAbs(env):
		out = env
	default:
		out = filepath.Join(root, env)
	}
	if st, err := os.Stat(filepath.Dir(out)); err != nil || !st.IsDir() {
		return "", fmt.Errorf("BENCH_OUT: %q: the directory %s does not exist", env, filepath.Dir(out))
	}
	return out, nil
}

func TestBenchReportPath(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(t.TempDir(), "b.md")
	for env, want := range map[string]string{"": root + "/docs/benchmarks.md", "docs/b.md": root + "/docs/b.md", abs: abs} {
		if got, err := reportPath(root, env); err != nil || got != want {
			t.Errorf("BENCH_OUT=%q: %s, %v; want %s", env, got, err, want)
		}
	}
	if _, err := reportPath(root, "nowhere/b.md"); err == nil || !strings.HasPrefix(err.Error(), "BENCH_OUT: ") {
		t.Errorf("BENCH_OUT into a missing directory: %v, want an error naming BENCH_OUT", err)
	}
}

// A profile of an idle apiserver may hold no sample at all: it is 0 of every kind of work
// (the report's table keeps its rows), not a missing breakdown.
func TestWorkSharesOfAProfileWithoutSamples(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.pb.gz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Skipf("a CPU profile is already running: %v", err)
	}
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	shares, err := workShares(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(shares) != len(apiWorks) {
		t.Fatalf("%d kinds of work, want %d: %+v", len(shares), len(apiWorks), shares)
	}
	for i, s := range shares {
		if s.Work != apiWorks[i].name || s.Share != 0 {
			t.Errorf("kind %d: %+v, want %q at 0", i, s, apiWorks[i].name)
		}
	}
}
