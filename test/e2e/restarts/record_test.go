package restarts

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
)

// step is where a rollout stands, as its status says.
type step struct {
	Phase        meshv1.CanaryPhase
	StepIndex    int32
	Weight       int32
	FailedChecks int32
}

func (s step) String() string {
	return fmt.Sprintf("%s/%d/%d%%/%df", s.Phase, s.StepIndex, s.Weight, s.FailedChecks)
}

// event is one change the recorder saw; exactly one of its fields is set.
type event struct {
	canary     *meshv1.Canary
	deployment *appsv1.Deployment
	deleted    bool // the object of canary or deployment was deleted
	weight     *int32
}

// recorder watches one namespace's Canary, VirtualService and Deployments from the start of
// a test and keeps what a user would have seen: every split of the VirtualService and every
// status of the Canary. Watches, not polling: a watch delivers every change in order, so a
// step that lasted a millisecond is still in the record.
type recorder struct {
	ns, name string
	cancel   context.CancelFunc

	mu      sync.Mutex
	weights []int32  // the canary's weight, each change once
	routes  []string // the routing (weight, match, mirror), each change once
	// stepWeight is what each step of a Progressing status adds to the weight: the
	// weighted strategy's step, 0 for the strategies that count iterations.
	stepWeight int32
	steps      []step // the status, each change once
	bad        []string
	writers    [][]string // the status' field managers after each change of the status
	triggers   []*trigger
	closed     []string
}

type trigger struct {
	match func(event) bool
	fired chan struct{}
}

func record(t *testing.T, ns, name string) *recorder {
	t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &recorder{ns: ns, name: name, cancel: cancel, stepWeight: stepWeight}
	t.Cleanup(cancel)
	for _, list := range []client.ObjectList{&meshv1.CanaryList{}, &istionetv1.VirtualServiceList{}, &appsv1.DeploymentList{}} {
		w, err := wc.Watch(ctx, list, client.InNamespace(ns))
		if err != nil {
			t.Fatal(err)
		}
		go r.consume(ctx, fmt.Sprintf("%T", list), w)
	}
	return r
}

func (r *recorder) consume(ctx context.Context, what string, w watch.Interface) {
	defer w.Stop()
	for ev := range w.ResultChan() {
		deleted := ev.Type == watch.Deleted
		switch o := ev.Object.(type) {
		case *meshv1.Canary:
			if o.Name == r.name {
				r.sawCanary(o, deleted)
			}
		case *istionetv1.VirtualService:
			if o.Name == r.name && !deleted {
				r.sawVirtualService(o)
			}
		case *appsv1.Deployment:
			r.fire(event{deployment: o, deleted: deleted})
		}
	}
	if ctx.Err() == nil {
		r.mu.Lock()
		r.closed = append(r.closed, what)
		r.mu.Unlock()
	}
}

func stepOf(st meshv1.CanaryStatus) step {
	return step{st.Phase, st.StepIndex, st.CanaryWeight, st.FailedChecks}
}

func (r *recorder) sawCanary(c *meshv1.Canary, deleted bool) {
	s := stepOf(c.Status)
	r.mu.Lock()
	if n := len(r.steps); !deleted && (n == 0 || r.steps[n-1] != s) {
		r.steps = append(r.steps, s)
		var managers []string
		for _, f := range c.ManagedFields {
			if f.Subresource == "status" {
				managers = append(managers, f.Manager)
			}
		}
		r.writers = append(r.writers, managers)
	}
	r.mu.Unlock()
	r.fire(event{canary: c, deleted: deleted})
}

// sawVirtualService checks every route's split and records the canary's weight.
func (r *recorder) sawVirtualService(vs *istionetv1.VirtualService) {
	r.mu.Lock()
	for i, rt := range vs.Spec.Http {
		if len(rt.Route) < 2 {
			continue
		}
		var sum int32
		for _, d := range rt.Route {
			if d.Weight < 0 || d.Weight > 100 {
				r.bad = append(r.bad, fmt.Sprintf("route %d sends %d%% to %s", i, d.Weight, d.GetDestination().GetHost()))
			}
			sum += d.Weight
		}
		if sum != 100 {
			r.bad = append(r.bad, fmt.Sprintf("route %d's weights add up to %d", i, sum))
		}
	}
	p, c, ok := render.ObservedWeights(vs, r.name)
	if !ok {
		r.bad = append(r.bad, fmt.Sprintf("no primary/canary split (%d/%d) at resourceVersion %s", p, c, vs.ResourceVersion))
	}
	if n := len(r.weights); ok && (n == 0 || r.weights[n-1] != c) {
		r.weights = append(r.weights, c)
	}
	if rt := routeOf(vs, r.name, c); ok && (len(r.routes) == 0 || r.routes[len(r.routes)-1] != rt) {
		r.routes = append(r.routes, rt)
	}
	r.mu.Unlock()
	r.fire(event{weight: &c})
}

// routeOf describes what the VirtualService does with the canary: its weight, "+match"
// when a route with a match sends to it alone (A/B testing), "+mirror N%" when requests
// are mirrored to it.
func routeOf(vs *istionetv1.VirtualService, name string, weight int32) string {
	out := fmt.Sprintf("%d%%", weight)
	for _, rt := range vs.Spec.Http {
		if len(rt.Match) > 0 && len(rt.Route) == 1 && rt.Route[0].GetDestination().GetHost() == render.CanaryName(name) {
			out += " +match"
			break
		}
	}
	for _, rt := range vs.Spec.Http {
		if rt.Mirror.GetHost() == render.CanaryName(name) {
			out += fmt.Sprintf(" +mirror %g%%", rt.MirrorPercentage.GetValue())
			break
		}
	}
	return out
}

func (r *recorder) fire(ev event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := r.triggers[:0]
	for _, tr := range r.triggers {
		if tr.match(ev) {
			close(tr.fired)
			continue
		}
		kept = append(kept, tr)
	}
	r.triggers = kept
}

// when returns a channel closed at the first event that matches, from now on.
func (r *recorder) when(match func(event) bool) <-chan struct{} {
	tr := &trigger{match: match, fired: make(chan struct{})}
	r.mu.Lock()
	r.triggers = append(r.triggers, tr)
	r.mu.Unlock()
	return tr.fired
}

// whenStatus fires at the first status of the Canary that matches.
func (r *recorder) whenStatus(match func(meshv1.CanaryStatus) bool) <-chan struct{} {
	return r.when(func(ev event) bool { return ev.canary != nil && !ev.deleted && match(ev.canary.Status) })
}

func (r *recorder) whenPhase(p meshv1.CanaryPhase) <-chan struct{} {
	return r.whenStatus(func(st meshv1.CanaryStatus) bool { return st.Phase == p })
}

// whenWeight fires when the VirtualService starts sending w% to the canary.
func (r *recorder) whenWeight(w int32) <-chan struct{} {
	return r.when(func(ev event) bool { return ev.weight != nil && *ev.weight == w })
}

// checkRoutes fails the test unless the routing went exactly through want (see routeOf).
func (r *recorder) checkRoutes(t *testing.T, want []string) {
	t.Helper()
	r.checkSplits(t)
	r.mu.Lock()
	got := slices.Clone(r.routes)
	r.mu.Unlock()
	if !slices.Equal(got, want) {
		t.Errorf("the routing went %q, want %q", got, want)
	}
}

func (r *recorder) snapshot() (weights []int32, steps []step, writers [][]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.weights), slices.Clone(r.steps), slices.Clone(r.writers)
}

// checkSplits fails the test if a split was out of bounds or a watch ended early.
func (r *recorder) checkSplits(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) > 0 {
		t.Errorf("the VirtualService had bad splits: %v", r.bad)
	}
	if len(r.closed) > 0 {
		t.Errorf("watches ended before the test did, the record may lack changes: %v", r.closed)
	}
}

// checkWeights fails the test unless the canary's weights went exactly through want.
func (r *recorder) checkWeights(t *testing.T, want []int32) {
	t.Helper()
	r.checkSplits(t)
	if got, _, _ := r.snapshot(); !slices.Equal(got, want) {
		t.Errorf("the canary's weights went %v, want %v", got, want)
	}
}

// checkSteps fails the test unless the status moved one step at a time: the step index
// rises by one with each change of weight, by the recorder's stepWeight (0 when the steps
// are iterations), never back; the phases follow the rollout's order; the failed checks
// only go up.
func (r *recorder) checkSteps(t *testing.T, phases []meshv1.CanaryPhase) {
	t.Helper()
	_, steps, _ := r.snapshot()
	var seenPhases []meshv1.CanaryPhase
	for i, s := range steps {
		if s.Phase == "" {
			continue // created, not yet reconciled
		}
		if n := len(seenPhases); n == 0 || seenPhases[n-1] != s.Phase {
			seenPhases = append(seenPhases, s.Phase)
		}
		if i == 0 || s.Phase != meshv1.PhaseProgressing {
			continue
		}
		prev := steps[i-1]
		if prev.Phase != meshv1.PhaseProgressing {
			if s.StepIndex > 1 {
				t.Errorf("status %d (%s) starts progressing at step %d", i, s, s.StepIndex)
			}
			continue
		}
		if s.StepIndex != prev.StepIndex && (s.StepIndex != prev.StepIndex+1 || s.Weight != prev.Weight+r.stepWeight) {
			t.Errorf("status went from %s to %s: a step skipped or repeated", prev, s)
		}
		if s.StepIndex == prev.StepIndex && s.Weight != prev.Weight {
			t.Errorf("status went from %s to %s: the weight moved within a step", prev, s)
		}
		if s.FailedChecks < prev.FailedChecks {
			t.Errorf("status went from %s to %s: failed checks went down", prev, s)
		}
	}
	if !slices.Equal(seenPhases, phases) {
		t.Errorf("the phases went %v, want %v (statuses %v)", seenPhases, phases, steps)
	}
}

// checkEventsOnce fails the test if an event of the Canary with one of reasons was
// recorded more than once with the same message: a step taken twice announces itself twice.
func checkEventsOnce(t *testing.T, ns, name string, reasons ...string) {
	t.Helper()
	list := &eventsv1.EventList{}
	if err := env.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	count := map[string]int32{}
	for _, e := range list.Items {
		if e.Regarding.Kind != "Canary" || e.Regarding.Name != name || !slices.Contains(reasons, e.Reason) {
			continue
		}
		n := int32(1)
		if e.Series != nil {
			n = e.Series.Count
		}
		count[e.Reason+": "+e.Note] += n
	}
	for note, n := range count {
		if n > 1 {
			t.Errorf("event %q recorded %d times", note, n)
		}
	}
}
