//go:build linux

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/hooks"
	"canopy.dev/canopy/internal/workload"
	"canopy.dev/canopy/test/meshsim"
	"canopy.dev/canopy/test/testenv"
)

// benchLabel marks what the benchmark creates.
const benchLabel = "bench.canopy.dev/run"

// scaleConfig is one measured run.
type scaleConfig struct {
	N             int           // Canaries, each with its Deployment and Service
	Lean          bool          // targets of no pod, with headless Services (sizes that only initialize)
	Prometheus    bool          // a success-rate check on the real Prometheus scraping the simulator
	Steps         int           // weight steps of a rollout
	Interval      time.Duration // analysis interval
	PerNamespace  int           // Canaries per namespace
	MaxConcurrent int           // --max-concurrent-reconciles
	QPS, Burst    int           // --kube-api-qps, --kube-api-burst
	PhaseTimeout  time.Duration // how long one phase may take before it is reported unfinished
	InitTimeout   time.Duration // the same for the initialize phase
	// Phases are the phases run besides initialize, which always runs (empty: all).
	Phases []string
}

func (c scaleConfig) managerFlags(prometheus string) []string {
	flags := []string{
		fmt.Sprintf("--max-concurrent-reconciles=%d", c.MaxConcurrent),
		fmt.Sprintf("--kube-api-qps=%d", c.QPS), fmt.Sprintf("--kube-api-burst=%d", c.Burst),
		// The rollback check is a webhook served by the benchmark on the loopback address.
		"--webhook-allowed-cidrs=127.0.0.0/8",
	}
	if prometheus != "" {
		flags = append(flags, "--prometheus-address="+prometheus)
	}
	return flags
}

// phaseResult is what one phase measured.
type phaseResult struct {
	Name     string
	Duration time.Duration // until every Canary got there (or the timeout)
	Reached  int           // Canaries that got there
	CPU      float64       // the manager's CPU seconds
	// APIServer counts the apiserver's requests by "VERB resource[/subresource]" (all
	// clients: the manager, the controller-manager, the scheduler, kwok and the benchmark).
	APIServer map[string]float64
	// Manager counts the manager's own requests by the apiserver's verb (get, list, watch,
	// create, update, patch, apply, delete), from canopy_api_requests_total; ManagerRequests
	// by "verb resource[/subresource]".
	Manager, ManagerRequests map[string]float64
	// WatchLags are the watch probe's lags in the phase, sorted: how late a Canary's
	// change reached the watchers.
	WatchLags []time.Duration
	// Latency is, for each of canopy's kinds of write (canopyWrites), the apiserver's
	// request duration in the phase, p50 and p99 in seconds: how long a write waited on it.
	Latency map[string][2]float64
	// Refused counts the apiserver's answers other than 2xx to writes, by "VERB
	// resource[/subresource] code" (a 409 is an optimistic lock or a create race).
	Refused map[string]float64
	// StatusWrites classifies the Canaries' status writes the benchmark's informer saw.
	StatusWrites map[statusWrite]float64
	Reconciles   float64 // reconciles of the canary controller
	P50, P99     float64 // reconcile latency, seconds
	PeakDepth    float64 // peak of the canary controller's work queue depth
	PeakHeap     float64 // the manager's largest heap in the phase (GC trace)
	LiveHeap     float64 // its live heap after the last collection of the phase
	// Components is the CPU seconds of every process of the run in the phase.
	Components map[string]float64
	// StepLags are, for every step decided on the analysis interval (a weight step after
	// the first, or the promotion), how long after it was due the benchmark saw it.
	StepLags []time.Duration
	// Timeline is, for the rollout phase, how long after the new images each Canary
	// reached each milestone.
	Timeline map[milestone][]time.Duration
	// CPUSeries is, for the rollout phase, every process's CPU seconds so far, sampled
	// every second: which process had the cores between the milestones.
	CPUSeries []cpuSample
	// Lags are, for the rollback phase, the time from each Canary's failing measurement to
	// the benchmark's watch seeing its status RollingBack; RouteLags to the watch seeing its
	// VirtualService route nothing to the canary; WrittenLags to canopy's CheckFailed event,
	// which the manager records once the route and the status writes have returned: when the
	// rollback was in the apiserver, before any watcher (istiod's included) was told.
	Lags        []time.Duration
	RouteLags   []time.Duration
	WrittenLags []time.Duration
}

// scaleResult is one run.
type scaleResult struct {
	Config     scaleConfig
	ManagerCmd string
	Setup      time.Duration // the Deployments of the run created and Available
	// Baseline is how long the cluster alone (no canopy) took to roll every Deployment to
	// a new image: what each of a rollout's two Deployment rollouts (the canary's, then the
	// primary's) costs at this N, whatever the operator.
	Baseline   time.Duration
	Phases     []phaseResult
	Heap       []heapProfile // after the initialize phase and at the end
	CPUProfile *cpuProfile   // the first cpuProfileSeconds of the rollout phase
	// APIServerProfile is the apiserver's CPU over the same seconds.
	APIServerProfile *cpuProfile
	// StepsProfile is the apiserver's CPU for cpuProfileSeconds once half of the Canaries
	// routed their first weight: the analysis steps, where the rollouts lose most time.
	StepsProfile *cpuProfile
	Peak         peaks
	CPU          float64
	Err          string
}

// phase is one measured phase: what starts it, and how many Canaries are through.
type phase struct {
	name string
	act  func(context.Context) error
	done func(t0 time.Time, before samples) (int, error)
}

// runScale measures one configuration on a local cluster of its own.
func runScale(ctx context.Context, logf func(string, ...any), managerBin string, cfg scaleConfig) (res scaleResult) {
	res.Config = cfg
	if err := runScaleErr(ctx, logf, managerBin, cfg, &res); err != nil {
		res.Err = err.Error()
		logf("N=%d: %v", cfg.N, err)
	}
	return res
}

func runScaleErr(ctx context.Context, logf func(string, ...any), managerBin string, cfg scaleConfig, res *scaleResult) error {
	// etcd's data on tmpfs: the benchmark measures canopy, not this machine's disk.
	state, err := os.MkdirTemp("/dev/shm", "canopy-bench-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(state) }()
	env, err := testenv.Start(testenv.Options{
		StateDir: state, LocalCluster: true, NodePods: 3*cfg.N + 100,
		// The control plane is sized for N like a real one of that size: the controller-
		// manager rolls N primaries and scales N targets at once, and with its defaults
		// (20 QPS, 5 Deployment workers) it, not canopy, sets the pace of the rollouts.
		ComponentQPS: max(100, 2*cfg.N), ComponentWorkers: max(5, cfg.N/20),
		// Three Services a Canary: the apex, the primary and the canary.
		ServiceIPRange: "10.96.0.0/16",
		// The mesh simulator routes by what istiod sends; without it no istiod runs.
		Istio: cfg.Prometheus,
	})
	if err != nil {
		return fmt.Errorf("starting the local cluster: %w", err)
	}
	defer func() {
		if res.Err != "" {
			env.DumpLogs(os.Stderr)
		}
		if err := env.Stop(); err != nil {
			logf("stopping the local cluster: %v", err)
		}
	}()
	// Everything below that talks to the cluster stops before the cluster does.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	drv := rest.CopyConfig(env.Config)
	drv.QPS, drv.Burst = 2000, 4000
	c, err := client.New(drv, client.Options{Scheme: env.Scheme})
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(drv)
	if err != nil {
		return err
	}
	r := &run{cfg: cfg, c: c, cs: cs, logf: logf, state: state}
	if err := r.createNamespaces(ctx); err != nil {
		return err
	}

	hook := newHookServer()
	defer hook.Close()
	var promURL string
	if cfg.Prometheus {
		simCtx, cancelSim := context.WithCancel(ctx)
		sim, err := meshsim.Start(simCtx, env.Config, meshsim.Options{Namespaces: r.namespaces, XDSAddress: env.Istio.XDSAddress})
		if err != nil {
			cancelSim()
			return fmt.Errorf("starting the mesh simulator: %w", err)
		}
		defer func() { cancelSim(); <-sim.Done() }()
		prom, err := testenv.StartPrometheus(testenv.PrometheusOptions{Targets: []string{sim.Addr()}, ScrapeInterval: time.Second,
			StateDir: filepath.Join(state, "prometheus")})
		if err != nil {
			return fmt.Errorf("starting Prometheus: %w", err)
		}
		defer func() { _ = prom.Close() }()
		promURL = prom.URL()
	}

	w, err := startWatcher(ctx, env.Config)
	if err != nil {
		return err
	}
	probe, err := startWatchProbe(ctx, env.Config, c, r.namespaces[0])
	if err != nil {
		return err
	}
	r.probe = probe
	routes, err := startRouteWatcher(ctx, env.Config)
	if err != nil {
		return err
	}
	setupStart := time.Now()
	if err := r.createWorkloads(ctx); err != nil {
		return err
	}
	if err := r.waitAvailable(ctx); err != nil {
		return err
	}
	res.Setup = time.Since(setupStart)
	logf("N=%d: %d Deployments Available in %s", cfg.N, cfg.N, res.Setup.Round(time.Millisecond))
	baseStart := time.Now()
	if err := r.setImages(ctx, "bench/app:v1.1"); err != nil {
		return err
	}
	if err := r.waitAvailable(ctx); err != nil {
		return err
	}
	res.Baseline = time.Since(baseStart)
	logf("N=%d: %d Deployments rolled to a new image, without canopy, in %s", cfg.N, cfg.N, res.Baseline.Round(time.Millisecond))

	flags := cfg.managerFlags(promURL)
	m, err := startManager(ctx, managerBin, env.Kubeconfig, filepath.Join(env.StateDir, "logs", "canopy.log"), flags)
	if err != nil {
		return err
	}
	res.ManagerCmd = "manager " + strings.Join(flags, " ")
	defer func() {
		if err := m.stop(); err != nil {
			logf("stopping the manager: %v", err)
		}
	}()
	r.m, r.w = m, w

	phases := []phase{
		{"initialize", func(ctx context.Context) error { return r.createCanaries(ctx, hook.URL) }, r.allIn(meshv1.PhaseInitialized)},
		{"no-op", r.touchTargets, r.reconciledOnce},
		{"rollout", func(ctx context.Context) error { return r.setImages(ctx, "bench/app:v2") }, r.allIn(meshv1.PhaseSucceeded)},
		{"rollback", func(ctx context.Context) error {
			hook.fail(true)
			return r.setImages(ctx, "bench/app:bad-v3")
		}, r.allIn(meshv1.PhaseFailed)},
	}
	if len(cfg.Phases) > 0 {
		phases = slices.DeleteFunc(phases, func(p phase) bool {
			return p.name != "initialize" && !slices.Contains(cfg.Phases, p.name)
		})
	}
	// The peaks and CPU time are recorded whatever happens, before the manager stops.
	defer func() { res.Peak = m.peaks(); res.CPU, _ = m.cpuSeconds() }()
	// A phase that times out is reported, and the next phase runs anyway (without waiting
	// for a quiet queue, which a rollout still in progress keeps busy).
	var unfinished []string
	settled := true
	for _, p := range phases {
		if settled {
			if err := r.quiet(ctx); err != nil {
				return fmt.Errorf("before phase %s: %w", p.name, err)
			}
		}
		timeout := cfg.PhaseTimeout
		if p.name == "initialize" {
			timeout = cfg.InitTimeout
		}
		var cpuDone chan struct{}
		if p.name == "rollout" {
			// Where the manager's CPU goes while the rollouts run (the profile is taken
			// alongside the phase, which it does not slow measurably).
			cpuDone = make(chan struct{})
			t0 := time.Now()
			go func() {
				defer close(cpuDone)
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					// The apiserver's profiles are taken one after the other (its Go runtime
					// runs one CPU profile at a time): the first seconds, then the steps.
					first, err := profileAPIServerCPU(ctx, cs, profileDir(cfg.N), p.name, cpuProfileSeconds)
					if err != nil {
						logf("N=%d: %v", cfg.N, err)
					} else {
						res.APIServerProfile = &first
					}
					if !r.awaitFirstWeights(ctx, t0, (cfg.N+1)/2, timeout) {
						return
					}
					start := time.Since(t0)
					steps, err := profileAPIServerCPU(ctx, cs, profileDir(cfg.N), p.name+"-steps", cpuProfileSeconds)
					if err != nil {
						logf("N=%d: %v", cfg.N, err)
						return
					}
					steps.Start = start
					res.StepsProfile = &steps
				}()
				cp, err := m.profileCPU(profileDir(cfg.N), p.name, cpuProfileSeconds)
				wg.Wait()
				if err != nil {
					logf("N=%d: CPU profile of %s: %v", cfg.N, p.name, err)
					return
				}
				res.CPUProfile = &cp
			}()
		}
		pr, err := r.measure(ctx, p.name, timeout, p.act, p.done)
		if cpuDone != nil {
			<-cpuDone
		}
		if p.name == "rollback" {
			// The reconcile that records the failing measurement routes everything back to
			// the primary and enters RollingBack; Failed follows after a drain interval.
			pr.Lags = w.lags(hook.failures(), meshv1.PhaseRollingBack)
			pr.RouteLags = routes.lags(hook.failures())
			if pr.WrittenLags, err = r.writtenLags(ctx, hook.failures()); err != nil {
				logf("N=%d: rollback events: %v", cfg.N, err)
			}
		}
		res.Phases = append(res.Phases, pr)
		logf("N=%d: %s: %d/%d in %s", cfg.N, p.name, pr.Reached, cfg.N, pr.Duration.Round(time.Millisecond))
		if p.name == "initialize" || p.name == phases[len(phases)-1].name {
			// What stays live with every Canary's objects cached, and after the rollouts.
			hp, err := m.profileHeap(profileDir(cfg.N), p.name)
			if err != nil {
				logf("N=%d: heap profile after %s: %v", cfg.N, p.name, err)
			} else {
				res.Heap = append(res.Heap, hp)
			}
		}
		settled = err == nil
		if err != nil {
			if pr.Duration == 0 {
				return fmt.Errorf("phase %s: %w", p.name, err)
			}
			unfinished = append(unfinished, fmt.Sprintf("phase %s: %v", p.name, err))
		}
	}
	if len(unfinished) > 0 {
		return errors.New(strings.Join(unfinished, "; "))
	}
	return nil
}

// cpuProfileSeconds is how much of the rollout phase the CPU profile covers.
const cpuProfileSeconds = 10

// awaitFirstWeights waits until n Canaries routed their first weight since t0; false when
// the phase's timeout or the context ends first.
func (r *run) awaitFirstWeights(ctx context.Context, t0 time.Time, n int, timeout time.Duration) bool {
	deadline := time.After(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for len(r.w.timeline(t0)[mFirstWeight]) < n {
		select {
		case <-ctx.Done():
			return false
		case <-deadline:
			return false
		case <-tick.C:
		}
	}
	return true
}

// run is the state of one measured run.
type run struct {
	cfg        scaleConfig
	state      string // the cluster's state directory, named in its processes' command lines
	c          client.Client
	cs         *kubernetes.Clientset
	logf       func(string, ...any)
	namespaces []string
	m          *managerProc
	w          *watcher
	probe      *watchProbe
	// scraped and reconciled are the last scrape of reconciledOnce and what it found.
	scraped    time.Time
	reconciled int
}

func (r *run) name(i int) (ns, name string) {
	return r.namespaces[i/r.cfg.PerNamespace], fmt.Sprintf("svc-%05d", i)
}

func (r *run) createNamespaces(ctx context.Context) error {
	for i := 0; i*r.cfg.PerNamespace < r.cfg.N; i++ {
		ns := fmt.Sprintf("bench-%d", i)
		if err := r.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
		r.namespaces = append(r.namespaces, ns)
	}
	return nil
}

// parallel runs f for 0..n-1 on 32 workers and returns the first error.
func parallel(n int, f func(i int) error) error {
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// createWorkloads creates each Canary's target Deployment (one replica, none if lean) and
// its Service (headless if lean), which the Canary adopts.
func (r *run) createWorkloads(ctx context.Context) error {
	return parallel(r.cfg.N, func(i int) error {
		ns, name := r.name(i)
		lbl := map[string]string{"app": name}
		replicas, clusterIP := int32(1), ""
		if r.cfg.Lean {
			replicas, clusterIP = 0, corev1.ClusterIPNone
		}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name, benchLabel: "yes"}},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(replicas),
				Selector: &metav1.LabelSelector{MatchLabels: lbl},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: lbl},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name: "app", Image: "bench/app:v1", Ports: []corev1.ContainerPort{{ContainerPort: 9080}},
					}}},
				},
			},
		}
		if err := r.c.Create(ctx, d); err != nil {
			return fmt.Errorf("creating Deployment %s/%s: %w", ns, name, err)
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{benchLabel: "yes"}},
			Spec: corev1.ServiceSpec{Selector: lbl, ClusterIP: clusterIP, Ports: []corev1.ServicePort{{
				Name: "http", Port: 9080, TargetPort: intstr.FromInt32(9080),
			}}},
		}
		if err := r.c.Create(ctx, svc); err != nil {
			return fmt.Errorf("creating Service %s/%s: %w", ns, name, err)
		}
		return nil
	})
}

// waitAvailable waits until every target Deployment runs its template on every replica,
// all available, with no older pod left: what canopy waits for (workload.Ready).
func (r *run) waitAvailable(ctx context.Context) error {
	deadline := time.Now().Add(r.cfg.PhaseTimeout)
	for {
		n := 0
		for _, ns := range r.namespaces {
			list := &appsv1.DeploymentList{}
			if err := r.c.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{benchLabel: "yes"}); err != nil {
				return err
			}
			for _, d := range list.Items {
				if ok, _ := workload.Ready(&d); ok {
					n++
				}
			}
		}
		if n >= r.cfg.N {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d Deployments rolled out after %s", n, r.cfg.N, r.cfg.PhaseTimeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// canary is the Canary of target i: 5 steps of 10% at a 1 s interval by default, a
// rollout webhook (the benchmark's, which fails during the rollback phase), threshold 1,
// and with Prometheus the built-in success-rate check.
func (r *run) canary(i int, hookURL string) *meshv1.Canary {
	ns, name := r.name(i)
	step := int32(10)
	c := &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{benchLabel: "yes"}},
		Spec: meshv1.CanarySpec{
			TargetRef: meshv1.TargetRef{APIVersion: "apps/v1", Kind: "Deployment", Name: name},
			Service:   meshv1.CanaryService{Port: 9080},
			Analysis: meshv1.CanaryAnalysis{
				Interval:   meshv1.Duration(r.cfg.Interval.String()),
				Threshold:  1,
				StepWeight: &step,
				MaxWeight:  step * int32(r.cfg.Steps),
				Webhooks: []meshv1.CanaryWebhook{{
					Name: "bench-check", Type: meshv1.WebhookRollout, URL: hookURL, Timeout: "5s", Retries: ptr.To[int32](0),
				}},
			},
		},
	}
	if r.cfg.Prometheus {
		c.Spec.Analysis.Metrics = []meshv1.CanaryMetric{{
			Name: "request-success-rate", ThresholdRange: meshv1.ThresholdRange{Min: ptr.To(99.0)}, Interval: "30s",
		}}
	}
	return c
}

func (r *run) createCanaries(ctx context.Context, hookURL string) error {
	return parallel(r.cfg.N, func(i int) error {
		c := r.canary(i, hookURL)
		if err := r.c.Create(ctx, c); err != nil {
			return fmt.Errorf("creating Canary %s/%s: %w", c.Namespace, c.Name, err)
		}
		return nil
	})
}

// setImages starts a new revision of every target.
func (r *run) setImages(ctx context.Context, image string) error {
	return parallel(r.cfg.N, func(i int) error {
		ns, name := r.name(i)
		patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":%q}]}}}}`, image)
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		return r.c.Patch(ctx, d, client.RawPatch("application/strategic-merge-patch+json", []byte(patch)))
	})
}

// touchTargets annotates every target Deployment's metadata: an event for its Canary with
// nothing to do (the pod template is unchanged).
func (r *run) touchTargets(ctx context.Context) error {
	stamp := time.Now().Format(time.RFC3339Nano)
	return parallel(r.cfg.N, func(i int) error {
		ns, name := r.name(i)
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"bench.canopy.dev/touched":%q}}}`, stamp)
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		return r.c.Patch(ctx, d, client.RawPatch("application/merge-patch+json", []byte(patch)))
	})
}

// allIn is done when every Canary entered phase after t0.
func (r *run) allIn(phase meshv1.CanaryPhase) func(time.Time, samples) (int, error) {
	return func(t0 time.Time, _ samples) (int, error) { return r.w.countSince(phase, t0), nil }
}

// reconciledOnce is done when the canary controller ran at least one reconcile a Canary
// after t0 and its queue is empty.
func (r *run) reconciledOnce(_ time.Time, before samples) (int, error) {
	// At most one scrape a second: a scrape is work for the manager that it measures.
	if time.Since(r.scraped) < time.Second {
		return r.reconciled, nil
	}
	r.scraped = time.Now()
	now, err := scrape(r.m.metrics)
	if err != nil {
		return 0, err
	}
	match := map[string]string{"controller": "canary"}
	n := int(now.sum("controller_runtime_reconcile_total", match) - before.sum("controller_runtime_reconcile_total", match))
	r.reconciled = min(n, r.cfg.N-1)
	if n >= r.cfg.N && now.sum("workqueue_depth", map[string]string{"name": "canary"}) == 0 {
		r.reconciled = r.cfg.N
	}
	return r.reconciled, nil
}

// quiet waits until the canary controller's queue stayed empty for two seconds.
func (r *run) quiet(ctx context.Context) error {
	deadline := time.Now().Add(r.cfg.PhaseTimeout)
	calm := 0
	for calm < 4 {
		if time.Now().After(deadline) {
			return fmt.Errorf("the work queue did not empty within %s", r.cfg.PhaseTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		ss, err := scrape(r.m.metrics)
		if err != nil {
			return err
		}
		if ss.sum("workqueue_depth", map[string]string{"name": "canary"}) == 0 {
			calm++
		} else {
			calm = 0
		}
	}
	return nil
}

// snapshot is the counters a phase diffs.
type snapshot struct {
	api     map[string]float64
	latency map[string]histogram // the apiserver's request duration of canopy's writes
	refused map[string]float64
	status  map[statusWrite]int
	manager samples
	cpu     float64
	procs   map[string]float64 // CPU seconds by component
}

func (r *run) snapshot(ctx context.Context) (snapshot, error) {
	raw, err := r.cs.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return snapshot{}, fmt.Errorf("reading the apiserver's metrics: %w", err)
	}
	api, err := parseMetrics(strings.NewReader(string(raw)))
	if err != nil {
		return snapshot{}, err
	}
	mgr, err := scrape(r.m.metrics)
	if err != nil {
		return snapshot{}, err
	}
	cpu, err := r.m.cpuSeconds()
	if err != nil {
		return snapshot{}, err
	}
	resource := func(l map[string]string) string {
		res := l["resource"]
		if l["subresource"] != "" {
			res += "/" + l["subresource"]
		}
		return l["verb"] + " " + res
	}
	latency := map[string]histogram{}
	for _, w := range canopyWrites {
		latency[w.key()] = api.histogram("apiserver_request_duration_seconds", w.labels())
	}
	return snapshot{
		api:     api.by("apiserver_request_total", resource),
		latency: latency,
		refused: writes(api.by("apiserver_request_total", func(l map[string]string) string {
			if strings.HasPrefix(l["code"], "2") {
				return "ok"
			}
			return resource(l) + " " + l["code"]
		})),
		status:  r.w.statusWrites(),
		manager: mgr,
		cpu:     cpu,
		procs:   componentCPU(r.state),
	}, nil
}

// measure runs one phase: act, then wait until done says every Canary is through.
func (r *run) measure(ctx context.Context, name string, timeout time.Duration, act func(context.Context) error, done func(time.Time, samples) (int, error)) (phaseResult, error) {
	pr := phaseResult{Name: name}
	before, err := r.snapshot(ctx)
	if err != nil {
		return pr, err
	}
	r.m.resetPeaks()
	t0 := time.Now()
	stopCPU := func() {}
	if name == "rollout" {
		stopCPU = r.sampleCPU(t0, &pr.CPUSeries)
		defer stopCPU()
	}
	if err := act(ctx); err != nil {
		return pr, err
	}
	deadline := t0.Add(timeout)
	var waitErr error
	for {
		n, err := done(t0, before.manager)
		if err != nil {
			return pr, err
		}
		pr.Reached = n
		if n >= r.cfg.N {
			pr.Duration = time.Since(t0)
			break
		}
		if time.Now().After(deadline) {
			pr.Duration = time.Since(t0)
			waitErr = fmt.Errorf("%d of %d Canaries through after %s", n, r.cfg.N, timeout)
			break
		}
		select {
		case <-ctx.Done():
			return pr, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	stopCPU()
	after, err := r.snapshot(ctx)
	if err != nil {
		return pr, err
	}
	pr.CPU = after.cpu - before.cpu
	pr.Components = diff(before.procs, after.procs)
	pr.StepLags = r.w.stepLags(t0, r.cfg.Interval)
	if name == "rollout" {
		pr.Timeline = r.w.timeline(t0)
	}
	pr.APIServer = diff(before.api, after.api)
	pr.WatchLags = r.probe.lagsBetween(t0, time.Now())
	pr.Latency = map[string][2]float64{}
	for k, h := range after.latency {
		if d := h.sub(before.latency[k]); !math.IsNaN(d.quantile(0.5)) {
			pr.Latency[k] = [2]float64{d.quantile(0.5), d.quantile(0.99)}
		}
	}
	pr.Refused = diff(before.refused, after.refused)
	pr.StatusWrites = map[statusWrite]float64{}
	for k, v := range after.status {
		if d := v - before.status[k]; d > 0 {
			pr.StatusWrites[k] = float64(d)
		}
	}
	verb := func(l map[string]string) string { return l["verb"] }
	pr.Manager = diff(before.manager.by("canopy_api_requests_total", verb), after.manager.by("canopy_api_requests_total", verb))
	resource := func(l map[string]string) string {
		if l["subresource"] != "" {
			return l["verb"] + " " + l["resource"] + "/" + l["subresource"]
		}
		return l["verb"] + " " + l["resource"]
	}
	pr.ManagerRequests = diff(before.manager.by("canopy_api_requests_total", resource), after.manager.by("canopy_api_requests_total", resource))
	match := map[string]string{"controller": "canary"}
	pr.Reconciles = after.manager.sum("controller_runtime_reconcile_total", match) - before.manager.sum("controller_runtime_reconcile_total", match)
	h := after.manager.histogram("controller_runtime_reconcile_time_seconds", match).sub(before.manager.histogram("controller_runtime_reconcile_time_seconds", match))
	pr.P50, pr.P99 = h.quantile(0.5), h.quantile(0.99)
	pk := r.m.peaks()
	pr.PeakDepth, pr.PeakHeap, pr.LiveHeap = pk.depth, pk.phaseHeap, pk.live
	return pr, waitErr
}

// apiWrite is a kind of write, as the apiserver's metrics label it.
type apiWrite struct{ verb, group, resource, subresource string }

func (w apiWrite) key() string {
	if w.subresource != "" {
		return w.verb + " " + w.resource + "/" + w.subresource
	}
	return w.verb + " " + w.resource
}

func (w apiWrite) labels() map[string]string {
	return map[string]string{"verb": w.verb, "group": w.group, "resource": w.resource, "subresource": w.subresource}
}

// canopyWrites are the writes of a rollout's steps and phase changes, whose latency at the
// apiserver the report shows (the events are the events.k8s.io ones the recorder posts).
var canopyWrites = []apiWrite{
	{"APPLY", "networking.istio.io", "virtualservices", ""},
	{"PATCH", "mesh.canopy.dev", "canaries", "status"},
	{"POST", "events.k8s.io", "events", ""},
	{"PUT", "apps", "deployments", "scale"},
}

// cpuSample is every process's CPU seconds At after a phase began.
type cpuSample struct {
	At  time.Duration
	CPU map[string]float64
}

// sampleCPU appends a cpuSample to out every second until the returned stop is called
// (which takes a last one, and returns once out is complete; calling it again does nothing).
func (r *run) sampleCPU(t0 time.Time, out *[]cpuSample) (stop func()) {
	take := func() { *out = append(*out, cpuSample{At: time.Since(t0), CPU: componentCPU(r.state)}) }
	take()
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-quit:
				take()
				return
			case <-t.C:
				take()
			}
		}
	}()
	return sync.OnceFunc(func() { close(quit); <-done })
}

// hookServer answers the Canaries' rollout webhook: 200, or 500 once fail(true) was
// called, recording when each Canary was first refused (its failing measurement: with
// threshold 1 it is the one that reaches the threshold).
type hookServer struct {
	*httptest.Server
	failing atomic.Bool
	mu      sync.Mutex
	first   map[string]time.Time
}

func newHookServer() *hookServer {
	h := &hookServer{first: map[string]time.Time{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var p hooks.Payload
		if err := json.NewDecoder(req.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !h.failing.Load() {
			return
		}
		now := time.Now()
		h.mu.Lock()
		if _, ok := h.first[p.Namespace+"/"+p.Name]; !ok {
			h.first[p.Namespace+"/"+p.Name] = now
		}
		h.mu.Unlock()
		http.Error(w, "the benchmark's check fails", http.StatusInternalServerError)
	}))
	return h
}

func (h *hookServer) fail(on bool) { h.failing.Store(on) }

func (h *hookServer) failures() map[string]time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]time.Time, len(h.first))
	for k, v := range h.first {
		out[k] = v
	}
	return out
}

// writtenLags are, Canary by Canary, the time from its failing measurement to the time of
// canopy's CheckFailed event (set by the manager's recorder when the reconcile that rolled
// back announced it, after its writes returned).
func (r *run) writtenLags(ctx context.Context, failures map[string]time.Time) ([]time.Duration, error) {
	first := map[string]time.Time{}
	for _, ns := range r.namespaces {
		opts := metav1.ListOptions{Limit: 1000}
		for {
			list, err := r.cs.EventsV1().Events(ns).List(ctx, opts)
			if err != nil {
				return nil, err
			}
			for _, e := range list.Items {
				key := ns + "/" + e.Regarding.Name
				failed, ok := failures[key]
				t := e.EventTime.Time
				if !ok || e.Regarding.Kind != "Canary" || e.Reason != meshv1.ReasonCheckFailed || t.Before(failed) {
					continue
				}
				if at, seen := first[key]; !seen || t.Before(at) {
					first[key] = t
				}
			}
			if opts.Continue = list.Continue; opts.Continue == "" {
				break
			}
		}
	}
	out := make([]time.Duration, 0, len(first))
	for key, t := range first {
		out = append(out, t.Sub(failures[key]))
	}
	slices.Sort(out)
	return out, nil
}

// quantileDuration is the q-quantile of sorted durations.
func quantileDuration(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}
