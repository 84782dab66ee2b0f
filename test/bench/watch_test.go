//go:build linux

package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/test/testenv"
)

// statusWrite is what changed in one write of a Canary's status, as the benchmark's
// informer saw it.
type statusWrite string

const (
	writeStep  statusWrite = "weight step"  // the canary weight went up during the analysis
	writePhase statusWrite = "phase change" // the phase changed (the weight may have with it)
	writeOther statusWrite = "other"        // conditions, check results or gates only
)

// watcher records when each Canary entered each phase, and what each status write changed,
// from an informer (which sees every version the apiserver stored, in order).
type watcher struct {
	mu     sync.Mutex
	last   map[string]meshv1.CanaryPhase
	at     map[string]map[meshv1.CanaryPhase]time.Time
	writes map[statusWrite]int
	// lastStep is when each Canary's last weight step was seen; steps are the steps taken
	// on the analysis interval.
	lastStep map[string]time.Time
	steps    []observedStep
	// firstWeight is when each Canary's weight last left 0 while Progressing.
	firstWeight map[string]time.Time
}

// observedStep is a step taken on the analysis interval, seen by the informer: since, when
// the step before it was seen.
type observedStep struct {
	since, seen time.Time
}

func startWatcher(ctx context.Context, cfg *rest.Config) (*watcher, error) {
	w := &watcher{last: map[string]meshv1.CanaryPhase{}, at: map[string]map[meshv1.CanaryPhase]time.Time{}, writes: map[statusWrite]int{}, lastStep: map[string]time.Time{}, firstWeight: map[string]time.Time{}}
	err := watchLabelled(ctx, cfg, &meshv1.Canary{}, benchLabel+"=yes", "Canary", toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if c, ok := obj.(*meshv1.Canary); ok {
				w.record(c)
			}
		},
		UpdateFunc: func(old, obj any) {
			o, ok1 := old.(*meshv1.Canary)
			c, ok2 := obj.(*meshv1.Canary)
			if ok1 && ok2 {
				w.count(c.Namespace+"/"+c.Name, &o.Status, &c.Status)
				w.record(c)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (w *watcher) record(c *meshv1.Canary) {
	now := time.Now()
	key := c.Namespace + "/" + c.Name
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last[key] == c.Status.Phase {
		return
	}
	w.last[key] = c.Status.Phase
	if w.at[key] == nil {
		w.at[key] = map[meshv1.CanaryPhase]time.Time{}
	}
	w.at[key][c.Status.Phase] = now
}

// count classifies a status write (an update that changed nothing of the status, such as
// the finalizer being added, is not one), and records the steps taken on the interval: a
// weight step after the first (the first is taken when the canary is ready) and the
// promotion, each due one interval after the step before it.
func (w *watcher) count(key string, old, cur *meshv1.CanaryStatus) {
	now := time.Now()
	var kind statusWrite
	switch {
	case equality.Semantic.DeepEqual(old, cur):
		return
	case old.Phase != cur.Phase:
		kind = writePhase
	case cur.Phase == meshv1.PhaseProgressing && cur.CanaryWeight > old.CanaryWeight:
		kind = writeStep
	default:
		kind = writeOther
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes[kind]++
	if cur.Phase == meshv1.PhaseProgressing && cur.CanaryWeight > 0 && old.CanaryWeight == 0 {
		w.firstWeight[key] = now
	}
	onInterval := old.Phase == meshv1.PhaseProgressing && old.CanaryWeight > 0 && (kind == writeStep || cur.Phase == meshv1.PhasePromoting)
	if since, ok := w.lastStep[key]; ok && onInterval {
		w.steps = append(w.steps, observedStep{since: since, seen: now})
	}
	switch kind {
	case writeStep:
		w.lastStep[key] = now
	case writePhase:
		delete(w.lastStep, key)
	case writeOther:
	}
}

// stepLags are the lags of the steps seen since t0, sorted: how much longer than the
// interval each step taken on the interval came after the step before it.
func (w *watcher) stepLags(t0 time.Time, interval time.Duration) []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []time.Duration
	for _, s := range w.steps {
		if !s.seen.Before(t0) {
			out = append(out, s.seen.Sub(s.since)-interval)
		}
	}
	slices.Sort(out)
	return out
}

// milestone is a point of a rollout the timeline reports.
type milestone string

const (
	mFirstWeight milestone = "first weight" // the canary ready and the first weight routed
	mPromoting   milestone = "Promoting"    // the analysis passed at the last step
	mFinalising  milestone = "Finalising"   // the primary runs the revision; all traffic routed to it
	mSucceeded   milestone = "Succeeded"    // drained, the canary scaled down
)

var milestones = []milestone{mFirstWeight, mPromoting, mFinalising, mSucceeded}

// milestonePhases are the milestones a phase entered marks.
var milestonePhases = map[milestone]meshv1.CanaryPhase{mPromoting: meshv1.PhasePromoting, mFinalising: meshv1.PhaseFinalising, mSucceeded: meshv1.PhaseSucceeded}

// timeline is, milestone by milestone, how long after t0 each Canary reached it (sorted):
// where the time of a rollout goes.
func (w *watcher) timeline(t0 time.Time) map[milestone][]time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[milestone][]time.Duration{}
	add := func(m milestone, t time.Time, ok bool) {
		if ok && !t.Before(t0) {
			out[m] = append(out[m], t.Sub(t0))
		}
	}
	for key, at := range w.at {
		t, ok := w.firstWeight[key]
		add(mFirstWeight, t, ok)
		for m, ph := range milestonePhases {
			t, ok := at[ph]
			add(m, t, ok)
		}
	}
	for _, d := range out {
		slices.Sort(d)
	}
	return out
}

// statusWrites is a copy of the counts so far.
func (w *watcher) statusWrites() map[statusWrite]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[statusWrite]int, len(w.writes))
	for k, v := range w.writes {
		out[k] = v
	}
	return out
}

// countSince counts the Canaries that entered phase after t0.
func (w *watcher) countSince(phase meshv1.CanaryPhase, t0 time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, at := range w.at {
		if t, ok := at[phase]; ok && !t.Before(t0) {
			n++
		}
	}
	return n
}

// lags are, Canary by Canary, the time from the failing check to the phase.
func (w *watcher) lags(failures map[string]time.Time, phase meshv1.CanaryPhase) []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []time.Duration
	for key, failed := range failures {
		if t, ok := w.at[key][phase]; ok && t.After(failed) {
			out = append(out, t.Sub(failed))
		}
	}
	slices.Sort(out)
	return out
}

// routeWatcher records when each Canary's VirtualService stopped sending traffic to the
// canary: when a rollback has landed in the mesh (the status write comes after it).
type routeWatcher struct {
	mu     sync.Mutex
	weight map[string]int32 // the canary destination's weight, by namespace/name
	zeroAt map[string]time.Time
}

func startRouteWatcher(ctx context.Context, cfg *rest.Config) (*routeWatcher, error) {
	rw := &routeWatcher{weight: map[string]int32{}, zeroAt: map[string]time.Time{}}
	record := func(obj any) {
		if vs, ok := obj.(*istionetv1.VirtualService); ok {
			rw.record(vs)
		}
	}
	if err := watchLabelled(ctx, cfg, &istionetv1.VirtualService{}, meshv1.LabelManagedBy+"="+meshv1.ManagedByValue, "VirtualService",
		toolscache.ResourceEventHandlerFuncs{AddFunc: record, UpdateFunc: func(_, obj any) { record(obj) }}); err != nil {
		return nil, err
	}
	return rw, nil
}

// record notes the canary destination's weight (the benchmark's Canaries are named after
// their targets, and the canary destination is the Service <name>-canary).
func (rw *routeWatcher) record(vs *istionetv1.VirtualService) {
	now := time.Now()
	canaryHost := vs.Name + "-canary"
	var w int32
	for _, h := range vs.Spec.GetHttp() {
		for _, r := range h.GetRoute() {
			if host := r.GetDestination().GetHost(); host == canaryHost || strings.HasPrefix(host, canaryHost+".") {
				w = max(w, r.GetWeight())
			}
		}
	}
	key := vs.Namespace + "/" + vs.Name
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.weight[key] > 0 && w == 0 {
		rw.zeroAt[key] = now
	}
	rw.weight[key] = w
}

// lags are, Canary by Canary, the time from the failing check to the route back.
func (rw *routeWatcher) lags(failures map[string]time.Time) []time.Duration {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	var out []time.Duration
	for key, failed := range failures {
		if t, ok := rw.zeroAt[key]; ok && t.After(failed) {
			out = append(out, t.Sub(failed))
		}
	}
	slices.Sort(out)
	return out
}

// watchLabelled runs an informer of the objects of obj's kind that match the label selector,
// with handler, until ctx ends; it returns once the informer synced.
func watchLabelled(ctx context.Context, cfg *rest.Config, obj client.Object, selector, what string, handler toolscache.ResourceEventHandler) error {
	sel, err := labels.Parse(selector)
	if err != nil {
		return err
	}
	cch, err := cache.New(cfg, cache.Options{Scheme: testenv.Scheme(), ByObject: map[client.Object]cache.ByObject{obj: {Label: sel}}})
	if err != nil {
		return err
	}
	inf, err := cch.GetInformer(ctx, obj)
	if err != nil {
		return err
	}
	if _, err := inf.AddEventHandler(handler); err != nil {
		return err
	}
	go func() { _ = cch.Start(ctx) }()
	if !cch.WaitForCacheSync(ctx) {
		return fmt.Errorf("the benchmark's %s informer did not sync", what)
	}
	return nil
}
