package controllers

import (
	"context"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// staleRetry is how soon a reconcile that met a stale cache looks again if the watch event
// that brings the awaited write (see ownWrites) did not wake it first: a safety net, which
// the event almost always beats.
const staleRetry = 2 * time.Second

// ownWrites remembers the resourceVersion of this process's last write of each Canary (and
// MeshPolicy). The manager's cache sees a write a little later, seconds under a loaded
// apiserver. A reconcile started in between, by a timer or another object's event, must not
// decide from the older copy: it could take a step twice. It waits instead: it marks the
// write awaited, and the watch event that brings it into the cache passes caughtUp (status
// writes are otherwise filtered out) and wakes the object.
//
// Why wait rather than decide from what the write returned, which would be as correct: so
// that canopy has at most one write of an object that its watch has not delivered yet, and
// its writes go no faster than the apiserver hands them to its watchers. Deciding from the
// written object was tried and measured (docs/scaling.md, "Waiting for the watch").
//
// Resource versions are etcd revisions here: comparing them is how the apiserver itself
// orders them; when one does not parse, nothing is assumed stale. An entry is a few words,
// kept until a reconcile finds the cache caught up with it, or the object is deleted.
type ownWrites struct{ m sync.Map } // types.NamespacedName -> *ownWrite

type ownWrite struct {
	mu      sync.Mutex
	uid     types.UID
	rv      uint64
	awaited bool // a reconcile met an older version and waits for this one
}

// wrote records the version a write returned.
func (w *ownWrites) wrote(o client.Object) {
	if rv, err := strconv.ParseUint(o.GetResourceVersion(), 10, 64); err == nil {
		w.m.Store(client.ObjectKeyFromObject(o), &ownWrite{uid: o.GetUID(), rv: rv})
	}
}

// behind says whether cached is older than this process's last write of the object; if it
// is, the write is marked awaited, so that the watch event bringing it wakes the object.
func (w *ownWrites) behind(cached client.Object) bool {
	key := client.ObjectKeyFromObject(cached)
	e, ok := w.m.Load(key)
	if !ok {
		return false
	}
	last := e.(*ownWrite)
	rv, err := strconv.ParseUint(cached.GetResourceVersion(), 10, 64)
	last.mu.Lock()
	defer last.mu.Unlock()
	if err != nil || last.uid != cached.GetUID() || rv >= last.rv {
		// Caught up, or another object of the same name (deleted and created since).
		w.m.CompareAndDelete(key, last)
		return false
	}
	last.awaited = true
	return true
}

// fresh reads obj from the cache again when it is behind this process's last write: the
// event that brought the write may have passed caughtUp just before behind marked it
// awaited (the informer stores an object before it hands its event on). False: obj is still
// behind, and the watch event that brings the write will wake it.
func (w *ownWrites) fresh(ctx context.Context, cache client.Reader, obj client.Object) (bool, error) {
	if !w.behind(obj) {
		return true, nil
	}
	if err := cache.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return false, err
	}
	return !w.behind(obj), nil
}

// forget drops what is remembered of an object that is gone.
func (w *ownWrites) forget(key types.NamespacedName) { w.m.Delete(key) }

// caughtUp passes the update that brings an awaited write into the cache, and forgets the
// writes of deleted objects.
func (w *ownWrites) caughtUp() predicate.Funcs {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		DeleteFunc: func(e event.DeleteEvent) bool {
			w.forget(client.ObjectKeyFromObject(e.Object))
			return false
		},
		UpdateFunc: func(e event.UpdateEvent) bool {
			o := e.ObjectNew
			entry, ok := w.m.Load(client.ObjectKeyFromObject(o))
			if !ok {
				return false
			}
			rv, err := strconv.ParseUint(o.GetResourceVersion(), 10, 64)
			if err != nil {
				return false
			}
			last := entry.(*ownWrite)
			last.mu.Lock()
			defer last.mu.Unlock()
			return last.awaited && last.uid == o.GetUID() && rv >= last.rv
		},
	}
}
