package controllers

import (
	"strconv"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// ownWrites remembers, object by object, what this process's last write of it returned (the
// object as the apiserver stored it), until the manager's cache has caught up with it. The
// cache sees a write a little later, seconds under a loaded apiserver (which decodes a
// resource's watch events one at a time: the benchmark measured Canaries reaching their
// watchers up to 20 s late). A reconcile started in between, by a timer or another object's
// event, must not decide from the older copy: it could take a step twice. It need not wait
// for the watch either: it decides from the written object, which is the newest version
// there is, unless someone else wrote since; then the optimistic lock of the status write
// refuses the reconcile's write, and the next one decides again from the newer version.
//
// Resource versions are etcd revisions here: comparing them is how the apiserver itself
// orders them; when one does not parse, the cache's copy is taken.
type ownWrites struct{ m sync.Map } // types.NamespacedName -> client.Object

// wrote records the object a write returned.
func (w *ownWrites) wrote(o client.Object) {
	w.m.Store(client.ObjectKeyFromObject(o), o.DeepCopyObject())
}

// latest is the newer of the cache's copy and this process's last write of the object: the
// copy when the cache has caught up with the write (which is then forgotten), else a copy of
// the written object.
func (w *ownWrites) latest(cached client.Object) client.Object {
	if written, ok := w.pending(cached); ok {
		return written.DeepCopyObject().(client.Object)
	}
	return cached
}

// pending is the last write of the object cached is a copy of, while the cache is behind it;
// once the cache has caught up (or holds another object of the same name), it is forgotten.
func (w *ownWrites) pending(cached client.Object) (client.Object, bool) {
	key := client.ObjectKeyFromObject(cached)
	e, ok := w.m.Load(key)
	if !ok {
		return nil, false
	}
	written := e.(client.Object)
	writtenRV, err1 := strconv.ParseUint(written.GetResourceVersion(), 10, 64)
	cachedRV, err2 := strconv.ParseUint(cached.GetResourceVersion(), 10, 64)
	if written.GetUID() != cached.GetUID() || err1 != nil || err2 != nil || cachedRV >= writtenRV {
		w.m.CompareAndDelete(key, e)
		return nil, false
	}
	return written, true
}

// forget drops what is remembered of an object that is gone.
func (w *ownWrites) forget(key types.NamespacedName) { w.m.Delete(key) }

// caughtUp is a predicate that passes no event: it forgets a write once the cache has it (or
// the object is gone), so that only the writes still on their way are remembered, not the
// last write of every Canary that has nothing to do for hours. List it first in an Or.
func (w *ownWrites) caughtUp() predicate.Funcs {
	return predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			_, _ = w.pending(e.ObjectNew)
			return false
		},
		DeleteFunc: func(e event.DeleteEvent) bool {
			w.forget(client.ObjectKeyFromObject(e.Object))
			return false
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}
