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

// A reconcile decides from the newer of the cache's copy and canopy's last write, and the
// write is forgotten once the cache has it.
func TestOwnWritesAreNewerThanALaggingCache(t *testing.T) {
	var w ownWrites
	w.wrote(canaryAt("u1", "10", 20))

	got := w.latest(canaryAt("u1", "9", 10)).(*meshv1.Canary)
	if got.ResourceVersion != "10" || got.Status.CanaryWeight != 20 {
		t.Fatalf("behind the write, the cache's copy was taken: version %s, weight %d", got.ResourceVersion, got.Status.CanaryWeight)
	}
	got.Status.CanaryWeight = 99 // a reconcile changes its copy, not what is remembered
	if again := w.latest(canaryAt("u1", "9", 10)).(*meshv1.Canary); again.Status.CanaryWeight != 20 {
		t.Fatalf("the remembered write was changed through a reconcile's copy: weight %d", again.Status.CanaryWeight)
	}

	// Caught up (or someone else wrote since): the cache's copy, and the write is forgotten.
	if got := w.latest(canaryAt("u1", "11", 30)).(*meshv1.Canary); got.ResourceVersion != "11" {
		t.Fatalf("a newer copy in the cache was not taken: version %s", got.ResourceVersion)
	}
	if got := w.latest(canaryAt("u1", "9", 10)).(*meshv1.Canary); got.ResourceVersion != "9" {
		t.Fatalf("the write was not forgotten once the cache had caught up: version %s", got.ResourceVersion)
	}

	// Deleted and created again under the same name: the old object's write is not it.
	w.wrote(canaryAt("u1", "20", 20))
	if got := w.latest(canaryAt("u2", "15", 0)).(*meshv1.Canary); got.UID != "u2" {
		t.Fatalf("a write of the deleted Canary stood for the new one: uid %s", got.UID)
	}
	w.wrote(canaryAt("u2", "30", 10))
	w.forget(types.NamespacedName{Namespace: "shop", Name: "reviews"})
	if got := w.latest(canaryAt("u2", "25", 0)).(*meshv1.Canary); got.ResourceVersion != "25" {
		t.Fatalf("a forgotten write was still taken: version %s", got.ResourceVersion)
	}
}

// The watch event that brings canopy's write into the cache forgets it (and wakes nothing):
// only the writes still on their way are remembered, not every idle Canary's last one.
func TestOwnWritesAreForgottenWhenTheWatchBringsThem(t *testing.T) {
	var w ownWrites
	caughtUp := w.caughtUp()
	w.wrote(canaryAt("u1", "10", 20))
	if caughtUp.Update(event.UpdateEvent{ObjectOld: canaryAt("u1", "9", 10), ObjectNew: canaryAt("u1", "9", 10)}) {
		t.Fatal("the predicate passed an event")
	}
	if got := w.latest(canaryAt("u1", "9", 10)); got.GetResourceVersion() != "10" {
		t.Fatal("an older version's event forgot the write")
	}
	caughtUp.Update(event.UpdateEvent{ObjectOld: canaryAt("u1", "9", 10), ObjectNew: canaryAt("u1", "10", 20)})
	if _, ok := w.m.Load(types.NamespacedName{Namespace: "shop", Name: "reviews"}); ok {
		t.Fatal("the write is still remembered after its own event")
	}
	w.wrote(canaryAt("u1", "12", 30))
	if caughtUp.Delete(event.DeleteEvent{Object: canaryAt("u1", "11", 20)}) {
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

// While the cache lags behind canopy's status writes, the steps neither wait for it nor
// repeat: each interval takes the next step, with one VirtualService apply and one status
// write.
func TestALaggingCacheDelaysNoStepAndRepeatsNone(t *testing.T) {
	testenv.SkipIfShort(t)
	h := newHarness(t)
	h.initialize(reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10), MaxWeight: 50}))
	h.startRollout("reviews:v2")
	h.expectWeights(90, 10)

	lagging := &canaryFrozen{Client: h.r.Client}
	h.r.Client = lagging
	frozen := &meshv1.Canary{}
	if err := h.c.Get(t.Context(), client.ObjectKey{Namespace: h.ns, Name: "reviews"}, frozen); err != nil {
		t.Fatal(err)
	}
	lagging.frozen = frozen // the cache stays here, at the first step
	for _, want := range []int32{20, 30, 40} {
		h.clock.Step(time.Minute)
		h.writes.Store(0)
		c, _ := h.reconcile("reviews")
		h.expectWeights(100-want, want)
		if c.Status.CanaryWeight != want {
			t.Fatalf("status weight %d after a step to %d", c.Status.CanaryWeight, want)
		}
		if n := h.writes.Load(); n != 2 {
			t.Fatalf("the step to %d sent %d writes, want 2 (the route, the status)", want, n)
		}
		// Reconciles before the next interval change nothing, though the cache says 10.
		h.writes.Store(0)
		for range 3 {
			if c, _ := h.reconcile("reviews"); c.Status.CanaryWeight != want {
				t.Fatalf("a reconcile between steps moved the weight to %d", c.Status.CanaryWeight)
			}
		}
		if n := h.writes.Load(); n != 0 {
			t.Fatalf("reconciles between steps sent %d writes", n)
		}
		h.expectWeights(100-want, want)
	}
}
