package controllers

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/test/testenv"
)

func canaryAt(uid, rv string, weight int32) *meshv1.Canary {
	return &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "reviews", UID: types.UID(uid), ResourceVersion: rv},
		Status:     meshv1.CanaryStatus{CanaryWeight: weight},
	}
}

// cacheAt is a cache that holds one version of the Canary.
type cacheAt struct {
	client.Reader
	uid, rv string
}

func (c cacheAt) Get(_ context.Context, _ client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	canaryAt(c.uid, c.rv, 0).DeepCopyInto(obj.(*meshv1.Canary))
	return nil
}

// A reconcile that meets a cache older than canopy's last write waits for the event that
// brings that write, instead of polling; only that event passes, and only while someone waits.
func TestAStaleCacheIsAwaitedNotPolled(t *testing.T) {
	var w ownWrites
	caughtUp := w.caughtUp()
	update := func(rv string) bool {
		return caughtUp.Update(event.UpdateEvent{ObjectOld: canaryAt("u1", "1", 0), ObjectNew: canaryAt("u1", rv, 0)})
	}
	w.wrote(canaryAt("u1", "10", 20))
	if update("10") {
		t.Fatal("canopy's own write's event woke the Canary although no reconcile waited for it")
	}

	c := canaryAt("u1", "9", 10)
	if fresh, err := w.fresh(t.Context(), cacheAt{uid: "u1", rv: "9"}, c); err != nil || fresh {
		t.Fatalf("version 9 after writing 10: fresh %v, %v", fresh, err)
	}
	if update("9") {
		t.Fatal("an older version woke the waiting Canary")
	}
	if !update("10") {
		t.Fatal("the awaited version did not wake the waiting Canary")
	}

	// The event came between the reconcile's read and its check: the second read sees it.
	w.wrote(canaryAt("u1", "20", 30))
	c = canaryAt("u1", "19", 20)
	if fresh, err := w.fresh(t.Context(), cacheAt{uid: "u1", rv: "20"}, c); err != nil || !fresh || c.ResourceVersion != "20" {
		t.Fatalf("the cache holds 20: fresh %v (read %s), %v", fresh, c.ResourceVersion, err)
	}
	if update("21") {
		t.Fatal("an update woke the Canary after it caught up and nobody waits")
	}

	// Deleted and created again under the same name: the old object's write is not awaited.
	w.wrote(canaryAt("u1", "30", 30))
	if fresh, err := w.fresh(t.Context(), cacheAt{uid: "u2", rv: "25"}, canaryAt("u2", "25", 0)); err != nil || !fresh {
		t.Fatalf("a write of the deleted Canary was awaited for the new one: fresh %v, %v", fresh, err)
	}
	// A deletion forgets the write.
	w.wrote(canaryAt("u2", "40", 10))
	if caughtUp.Delete(event.DeleteEvent{Object: canaryAt("u2", "40", 10)}) {
		t.Fatal("the predicate passed a deletion")
	}
	if _, ok := w.m.Load(types.NamespacedName{Namespace: "shop", Name: "reviews"}); ok {
		t.Fatal("the write of a deleted Canary is still remembered")
	}
}

// canaryFrozen answers the Canary as it was when frozen, like a cache whose watch lags behind
// canopy's writes; everything else is read through.
type canaryFrozen struct {
	client.Client
	frozen *meshv1.Canary
}

func (c *canaryFrozen) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if cn, ok := obj.(*meshv1.Canary); ok && c.frozen != nil {
		c.frozen.DeepCopyInto(cn)
		return nil
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

// While the cache lags behind canopy's status writes no step is taken, neither again from
// the old copy nor ahead of the watch; once the cache has the write, the step that is due is
// taken, once, with one VirtualService apply and one status write.
func TestALaggingCacheRepeatsNoStep(t *testing.T) {
	testenv.SkipIfShort(t)
	h := newHarness(t)
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10), MaxWeight: 50}))
	h.startRollout("reviews:v2")
	h.expectWeights(90, 10)

	lagging := &canaryFrozen{Client: h.r.Client}
	h.r.Client = lagging
	for _, want := range []int32{20, 30, 40} {
		// The cache has every write so far, and keeps this copy from now on.
		frozen := &meshv1.Canary{}
		if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews"}, frozen); err != nil {
			t.Fatal(err)
		}
		lagging.frozen = frozen
		h.clock.Step(time.Minute)
		h.writes.Store(0)
		if c, _ := h.reconcile("reviews"); c.Status.CanaryWeight != want {
			t.Fatalf("status weight %d after a step to %d", c.Status.CanaryWeight, want)
		}
		if n := h.writes.Load(); n != 2 {
			t.Fatalf("the step to %d sent %d writes, want 2 (the route, the status)", want, n)
		}

		// The next step is due, but the cache has not seen this one's status yet.
		h.clock.Step(time.Minute)
		h.writes.Store(0)
		for range 3 {
			c, res := h.reconcile("reviews")
			if c.Status.CanaryWeight != want {
				t.Fatalf("a reconcile on a lagging cache moved the weight to %d", c.Status.CanaryWeight)
			}
			if res.RequeueAfter != staleRetry {
				t.Fatalf("a reconcile on a lagging cache requeued after %s, want the safety net's %s", res.RequeueAfter, staleRetry)
			}
		}
		if n := h.writes.Load(); n != 0 {
			t.Fatalf("reconciles on a lagging cache sent %d writes", n)
		}
		h.expectWeights(100-want, want)
	}
}
