package dashboard

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// Kinds the cache watches, as named in the stream and in its errors.
const (
	kindCanary     = "Canary"
	kindMeshPolicy = "MeshPolicy"
	kindEvent      = "Event"
)

// cache is the watches shared by every tab: informers on Canaries, MeshPolicies and the
// Canaries' events, the weight history they feed, and the tabs to tell of changes.
type cache struct {
	cl        client.WithWatch
	namespace string
	keep      int
	now       func() time.Time

	canaries, policies, events toolscache.SharedIndexInformer

	mu sync.Mutex
	// errs are, per kind, why its watch fails (RBAC, mostly); cleared when it works again.
	errs    map[string]string
	history map[string]*ring
	subs    map[chan struct{}]struct{}
	// changed are the kinds changed since the tabs were last told.
	changed map[string]bool
}

func newCache(cl client.WithWatch, namespace string, keep int, now func() time.Time) *cache {
	c := &cache{cl: cl, namespace: namespace, keep: keep, now: now,
		errs: map[string]string{}, history: map[string]*ring{}, subs: map[chan struct{}]struct{}{}, changed: map[string]bool{}}
	c.canaries = c.informer(kindCanary, &meshv1.Canary{}, func() client.ObjectList { return &meshv1.CanaryList{} }, nil)
	c.policies = c.informer(kindMeshPolicy, &meshv1.MeshPolicy{}, func() client.ObjectList { return &meshv1.MeshPolicyList{} }, nil)
	c.events = c.informer(kindEvent, &eventsv1.Event{}, func() client.ObjectList { return &eventsv1.EventList{} },
		fields.OneTermEqualSelector("regarding.kind", kindCanary))
	_, _ = c.canaries.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { c.observe(nil, o) },
		UpdateFunc: c.observe,
		DeleteFunc: func(o any) { c.forget(o); c.notify(kindCanary) },
	})
	for kind, inf := range map[string]toolscache.SharedIndexInformer{kindMeshPolicy: c.policies, kindEvent: c.events} {
		_, _ = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { c.notify(kind) },
			UpdateFunc: func(any, any) { c.notify(kind) },
			DeleteFunc: func(any) { c.notify(kind) },
		})
	}
	return c
}

// informer lists and watches one kind through the user's client.
func (c *cache) informer(kind string, obj runtime.Object, newList func() client.ObjectList, sel fields.Selector) toolscache.SharedIndexInformer {
	opts := func(o metav1.ListOptions) []client.ListOption {
		if sel != nil {
			o.FieldSelector = sel.String()
		}
		out := []client.ListOption{&client.ListOptions{Raw: &o}}
		if c.namespace != "" {
			out = append(out, client.InNamespace(c.namespace))
		}
		return out
	}
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			list := newList()
			err := c.cl.List(ctx, list, opts(o)...)
			c.setErr(kind, err)
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.cl.Watch(ctx, newList(), opts(o)...)
		},
	}
	inf := toolscache.NewSharedIndexInformer(lw, obj, 0, toolscache.Indexers{})
	_ = inf.SetWatchErrorHandler(func(_ *toolscache.Reflector, err error) { c.setErr(kind, err) })
	return inf
}

func (c *cache) setErr(kind string, err error) {
	c.mu.Lock()
	old := c.errs[kind]
	switch {
	case err == nil:
		delete(c.errs, kind)
	case apierrors.IsForbidden(err):
		c.errs[kind] = err.Error()
	default:
		c.errs[kind] = fmt.Sprintf("watching %s: %v", kind, err)
	}
	now := c.errs[kind]
	c.mu.Unlock()
	if old != now {
		c.notify(kind)
	}
}

// errors are the watches' errors, by kind.
func (c *cache) errors() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.errs)
}

// run starts the watches until ctx ends.
func (c *cache) run(ctx context.Context) {
	for _, inf := range []toolscache.SharedIndexInformer{c.canaries, c.policies, c.events} {
		go inf.RunWithContext(ctx)
	}
	go c.broadcast(ctx)
}

// synced waits until each watch has listed once (or failed to), for at most d.
func (c *cache) synced(ctx context.Context, d time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	toolscache.WaitForCacheSync(ctx.Done(), c.canaries.HasSynced, c.policies.HasSynced, c.events.HasSynced)
}

// observe records a Canary's weight and checks as they change.
func (c *cache) observe(oldObj, newObj any) {
	cn, ok := newObj.(*meshv1.Canary)
	if !ok {
		return
	}
	var old *meshv1.Canary
	if o, ok := oldObj.(*meshv1.Canary); ok {
		old = o
	}
	key := cn.Namespace + "/" + cn.Name
	c.mu.Lock()
	r := c.history[key]
	if r == nil || r.uid != cn.UID {
		r = &ring{uid: cn.UID, keep: c.keep}
		c.history[key] = r
	}
	t := c.now()
	if old == nil && cn.Status.LastStepTime != nil {
		t = cn.Status.LastStepTime.Time // the weight holds since its last step
	}
	r.weight(WeightPoint{T: t, Weight: cn.Status.CanaryWeight, Phase: string(cn.Status.Phase)})
	for _, ck := range cn.Status.Checks {
		if ck.LastMeasured == nil || (old != nil && sameMeasurement(old.Status.Checks, ck)) {
			continue
		}
		r.check(CheckPoint{T: ck.LastMeasured.Time, Name: ck.Name, Value: ck.Value, Threshold: ck.Threshold, Outcome: string(ck.Outcome)})
	}
	c.mu.Unlock()
	c.notify(kindCanary)
}

func sameMeasurement(old []meshv1.CheckStatus, ck meshv1.CheckStatus) bool {
	for _, o := range old {
		if o.Name == ck.Name {
			return o.LastMeasured != nil && o.LastMeasured.Equal(ck.LastMeasured) && o.Value == ck.Value
		}
	}
	return false
}

func (c *cache) forget(o any) {
	if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if cn, ok := o.(*meshv1.Canary); ok {
		c.mu.Lock()
		delete(c.history, cn.Namespace+"/"+cn.Name)
		c.mu.Unlock()
	}
}

// historyOf is a copy of the Canary's history.
func (c *cache) historyOf(key string) History {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := History{Source: "watch", Weight: []WeightPoint{}, Checks: []CheckPoint{}}
	if r := c.history[key]; r != nil {
		h.Weight = append(h.Weight, r.weights...)
		h.Checks = append(h.Checks, r.checks...)
	}
	return h
}

// listCanaries are the cached Canaries, by namespace and name.
func (c *cache) listCanaries() []*meshv1.Canary {
	return sorted[*meshv1.Canary](c.canaries.GetStore().List())
}

func (c *cache) listPolicies() []*meshv1.MeshPolicy {
	return sorted[*meshv1.MeshPolicy](c.policies.GetStore().List())
}

func (c *cache) canary(ns, name string) *meshv1.Canary {
	o, ok, _ := c.canaries.GetStore().GetByKey(ns + "/" + name)
	if !ok {
		return nil
	}
	return o.(*meshv1.Canary)
}

func (c *cache) policy(ns, name string) *meshv1.MeshPolicy {
	o, ok, _ := c.policies.GetStore().GetByKey(ns + "/" + name)
	if !ok {
		return nil
	}
	return o.(*meshv1.MeshPolicy)
}

// eventsOf are the cached events about the Canary (an older Canary's of the same name
// left out), and why they cannot be read if they cannot.
func (c *cache) eventsOf(cn *meshv1.Canary) ([]eventsv1.Event, error) {
	var out []eventsv1.Event
	for _, o := range c.events.GetStore().List() {
		e := o.(*eventsv1.Event)
		if e.Namespace == cn.Namespace && e.Regarding.Name == cn.Name && (e.Regarding.UID == "" || e.Regarding.UID == cn.UID) {
			out = append(out, *e)
		}
	}
	if msg := c.errors()[kindEvent]; msg != "" && len(out) == 0 {
		return nil, fmt.Errorf("%s", msg)
	}
	return out, nil
}

func sorted[T client.Object](objs []any) []T {
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(T))
	}
	slices.SortFunc(out, func(a, b T) int {
		return strings.Compare(a.GetNamespace()+"/"+a.GetName(), b.GetNamespace()+"/"+b.GetName())
	})
	return out
}

// subscribe returns a channel that receives a value after changes (coalesced), until
// unsubscribe.
func (c *cache) subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	c.subs[ch] = struct{}{}
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.subs, ch)
		c.mu.Unlock()
	}
}

func (c *cache) notify(kind string) {
	c.mu.Lock()
	c.changed[kind] = true
	c.mu.Unlock()
}

// broadcast tells every tab of changes at most every 200 ms: a rollout step changes the
// Canary several times in a row, and each tab reads the cache once for all of them.
func (c *cache) broadcast(ctx context.Context) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// Under one lock: a change marked after the tabs were told waits for the next tick.
		c.mu.Lock()
		if len(c.changed) > 0 {
			for ch := range c.subs {
				select {
				case ch <- struct{}{}:
				default: // the tab has not read the last change yet; it will read this one too
				}
			}
			clear(c.changed)
		}
		c.mu.Unlock()
	}
}
