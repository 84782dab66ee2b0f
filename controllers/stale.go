package controllers

import (
	"strconv"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
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
	key := client.ObjectKeyFromObject(cached)
	e, ok := w.m.Load(key)
	if !ok {
		return cached
	}
	written := e.(client.Object)
	if written.GetUID() != cached.GetUID() {
		w.m.CompareAndDelete(key, e) // deleted and created again since
		return cached
	}
	writtenRV, err1 := strconv.ParseUint(written.GetResourceVersion(), 10, 64)
	cachedRV, err2 := strconv.ParseUint(cached.GetResourceVersion(), 10, 64)
	if err1 != nil || err2 != nil || cachedRV >= writtenRV {
		w.m.CompareAndDelete(key, e)
		return cached
	}
	return written.DeepCopyObject().(client.Object)
}

// forget drops what is remembered of an object that is gone.
func (w *ownWrites) forget(key types.NamespacedName) { w.m.Delete(key) }
