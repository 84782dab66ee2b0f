package controllers

import (
	"context"
	"strconv"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// staleRetry is how soon a reconcile that met a stale cache looks again if the watch event
// that brings the awaited version (see resourceVersions) did not wake it first: a safety net,
// which the event almost always beats.
const staleRetry = 2 * time.Second

// resourceVersions remembers the resourceVersion each object had after this process last
// wrote it. The manager's cache catches up with a write a little later; a reconcile started
// in between (a timer, another object's event) would decide from the old status and
// could take a step twice. Resource versions are etcd revisions here: comparing them is how
// the apiserver itself orders them; when one does not parse, nothing is assumed stale.
//
// A reconcile that meets a stale cache does not poll for it: it marks the version awaited,
// and the watch event that brings that version into the cache passes caughtUp (status writes
// are otherwise filtered out) and wakes the object. Under a loaded apiserver the cache can lag
// seconds behind, and a fixed 200 ms retry made a thousand Canaries spin through thousands of
// reconciles that could decide nothing.
type resourceVersions struct{ m sync.Map } // UID -> *written

type written struct {
	mu       sync.Mutex
	rv       uint64
	deferred bool // a reconcile met a version older than rv and waits for it
}

func (v *resourceVersions) wrote(o client.Object) {
	if rv, err := strconv.ParseUint(o.GetResourceVersion(), 10, 64); err == nil {
		v.m.Store(o.GetUID(), &written{rv: rv})
	}
}

// stale says whether o is older than this process's last write of it; if it is, the version
// is marked awaited.
func (v *resourceVersions) stale(o client.Object) bool {
	e, ok := v.m.Load(o.GetUID())
	if !ok {
		return false
	}
	rv, err := strconv.ParseUint(o.GetResourceVersion(), 10, 64)
	if err != nil {
		return false
	}
	w := e.(*written)
	w.mu.Lock()
	defer w.mu.Unlock()
	if rv >= w.rv {
		v.m.CompareAndDelete(o.GetUID(), w) // caught up
		return false
	}
	w.deferred = true
	return true
}

// fresh reads obj again after stale() marked its version awaited: the event bringing that
// version may have passed caughtUp just before the mark, when nothing awaited it.
func (v *resourceVersions) fresh(ctx context.Context, c client.Reader, obj client.Object) (bool, error) {
	if !v.stale(obj) {
		return true, nil
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return false, err
	}
	return !v.stale(obj), nil
}

// caughtUp passes the update that brings an awaited version into the cache.
func (v *resourceVersions) caughtUp() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o := e.ObjectNew
			entry, ok := v.m.Load(o.GetUID())
			if !ok {
				return false
			}
			rv, err := strconv.ParseUint(o.GetResourceVersion(), 10, 64)
			if err != nil {
				return false
			}
			w := entry.(*written)
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.deferred && rv >= w.rv
		},
	}
}
