package apply

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// Writes is canopy's one memory of its own writes: for each object (kind, namespace/name,
// UID) the resourceVersion this process last wrote, or found to hold what it would have
// written, and the digest of that desired state. The manager's cache sees a write a little
// later (seconds under a loaded apiserver); three questions are answered from it before the
// cache catches up:
//
//   - the stale-cache guard (Fresh, CaughtUp): a Canary or MeshPolicy reconcile that reads an
//     older copy than canopy's last write of it waits for the watch event that brings the
//     write, instead of deciding twice from the old copy;
//   - no-op applies (Applier.Apply): a copy that is canopy's last write, or older, holds what
//     was written, so the same desired state is not sent again, and another one is;
//   - own events (Own, NotOwn): the watch event of canopy's own write of a generated object
//     wakes no Canary, since the reconcile that wrote it already acted on it.
//
// A deleted and re-created object has another UID: what was written to its predecessor says
// nothing of it. Versions are compared as the apiserver orders them
// (resourceversion.CompareResourceVersion); a version that does not compare is not assumed
// stale, nor own. An entry is a few words, forgotten when the object's deletion is seen, and
// otherwise after knownFor (see remember): both the cache's lag and a write's watch event come
// within seconds.
type Writes struct {
	scheme *runtime.Scheme
	clock  clock.PassiveClock
	m      sync.Map // writeKey -> *written
	stored atomic.Uint64
}

// NewWrites returns an empty memory; scheme names the kinds of the objects it is given, clock
// dates the entries (nil: the real clock).
func NewWrites(scheme *runtime.Scheme, clk clock.PassiveClock) *Writes {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Writes{scheme: scheme, clock: clk}
}

// knownFor is how long an entry is trusted to tell canopy's own watch events and no-op
// applies, and kept when nobody waits for it.
const knownFor = 10 * time.Minute

type writeKey struct {
	kind schema.GroupKind
	key  types.NamespacedName
}

type written struct {
	uid types.UID
	rv  string
	// hash is the digest of the desired state the version holds; empty for a write that was
	// not an apply (a status write, a scale, a finalizer).
	hash string
	at   time.Time
	// awaited: a reconcile met an older copy and waits for the event that brings this one.
	awaited atomic.Bool
}

func (w *Writes) keyOf(obj client.Object) (writeKey, bool) {
	gvk, err := apiutil.GVKForObject(obj, w.scheme)
	if err != nil {
		return writeKey{}, false
	}
	return writeKey{gvk.GroupKind(), client.ObjectKeyFromObject(obj)}, true
}

// lookup returns the entry of obj's kind and name when it is of the same object (UID).
func (w *Writes) lookup(obj client.Object) (writeKey, *written, bool) {
	key, ok := w.keyOf(obj)
	if !ok {
		return key, nil, false
	}
	v, ok := w.m.Load(key)
	if !ok {
		return key, nil, false
	}
	e := v.(*written)
	return key, e, sameUID(e.uid, obj.GetUID())
}

// sameUID: an unknown UID (an object built from a response that did not carry one) matches.
func sameUID(a, b types.UID) bool { return a == "" || b == "" || a == b }

// compare orders two resourceVersions; ok is false when either is not one the apiserver
// hands out, and then nothing is concluded from them.
func compare(a, b string) (int, bool) {
	c, err := resourceversion.CompareResourceVersion(a, b)
	return c, err == nil
}

// Wrote records a write of obj that was not an apply (a status write, a finalizer, a scale)
// at the version it returned.
func (w *Writes) Wrote(obj client.Object) {
	if key, ok := w.keyOf(obj); ok {
		w.remember(key, obj.GetUID(), obj.GetResourceVersion(), "")
	}
}

// remember records version rv of an object, unless a newer one of the same object is known;
// every 1024 records, the entries older than knownFor that nobody waits for are dropped, so
// that the objects deleted unseen are forgotten.
func (w *Writes) remember(key writeKey, uid types.UID, rv, hash string) {
	if _, ok := compare(rv, rv); !ok {
		return
	}
	if v, ok := w.m.Load(key); ok {
		old := v.(*written)
		if c, ok := compare(old.rv, rv); ok && c > 0 && sameUID(old.uid, uid) {
			return
		}
	}
	now := w.clock.Now()
	w.m.Store(key, &written{uid: uid, rv: rv, hash: hash, at: now})
	if w.stored.Add(1)%1024 != 0 {
		return
	}
	w.m.Range(func(k, v any) bool {
		if e := v.(*written); now.Sub(e.at) >= knownFor && !e.awaited.Load() {
			w.m.CompareAndDelete(k, v)
		}
		return true
	})
}

// recent returns the entry of obj when it is recent enough to tell own events and no-ops.
func (w *Writes) recent(obj client.Object) (*written, bool) {
	_, e, ok := w.lookup(obj)
	if !ok || w.clock.Since(e.at) >= knownFor {
		return nil, false
	}
	return e, true
}

// Own says whether obj, as a watch event brings it, is the version canopy wrote (or found to
// hold what it would have written): an event a reconcile need not follow, since the one that
// wrote it already acted on it. Another writer's change is a newer version.
func (w *Writes) Own(obj client.Object) bool {
	e, ok := w.recent(obj)
	return ok && e.rv == obj.GetResourceVersion()
}

// Behind says whether cached is older than canopy's last write of the object; if it is, the
// write is marked awaited, so that the watch event bringing it passes CaughtUp. However long
// ago the write was, a copy older than it is stale.
func (w *Writes) Behind(cached client.Object) bool {
	_, e, ok := w.lookup(cached)
	if !ok {
		return false
	}
	if c, ok := compare(cached.GetResourceVersion(), e.rv); !ok || c >= 0 {
		e.awaited.Store(false) // caught up
		return false
	}
	e.awaited.Store(true)
	return true
}

// Fresh reads obj from the cache again when it is behind canopy's last write: the event that
// brought the write may have passed CaughtUp just before Behind marked it awaited (the
// informer stores an object before it hands its event on). False: obj is still behind, and
// the watch event that brings the write will wake it.
func (w *Writes) Fresh(ctx context.Context, cache client.Reader, obj client.Object) (bool, error) {
	if !w.Behind(obj) {
		return true, nil
	}
	if err := cache.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return false, err
	}
	return !w.Behind(obj), nil
}

// Forget drops what is remembered of obj, which is gone. Only its name and kind are needed;
// when it carries a UID, a successor's entry of the same name is kept.
func (w *Writes) Forget(obj client.Object) {
	if key, e, ok := w.lookup(obj); ok {
		w.m.CompareAndDelete(key, e)
	}
}

// CaughtUp passes the update that brings an awaited write into the cache (status writes are
// otherwise filtered out of a Canary's or MeshPolicy's own watch), and forgets the writes of
// deleted objects.
func (w *Writes) CaughtUp() predicate.Funcs {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		DeleteFunc: func(e event.DeleteEvent) bool {
			w.Forget(e.Object)
			return false
		},
		UpdateFunc: func(e event.UpdateEvent) bool {
			_, last, ok := w.lookup(e.ObjectNew)
			if !ok || !last.awaited.Load() {
				return false
			}
			c, ok := compare(e.ObjectNew.GetResourceVersion(), last.rv)
			return ok && c >= 0
		},
	}
}

// NotOwn drops the watch events of canopy's own writes of the objects it generates or
// scales: the reconcile that wrote one already acted on it, and each step would otherwise
// wake its owner again, for nothing, as soon as the object's event came. Someone else's
// change is a newer version and passes, and so does every deletion (which is forgotten).
func (w *Writes) NotOwn() predicate.Funcs {
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return !w.Own(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool { return !w.Own(e.ObjectNew) },
		DeleteFunc: func(e event.DeleteEvent) bool {
			w.Forget(e.Object)
			return true
		},
	}
}
