package apply

import (
	"context"
	"testing"
	"time"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/scheme"
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

func newWrites() (*Writes, *clocktesting.FakePassiveClock) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
	return NewWrites(scheme.New(), clk), clk
}

// A reconcile that meets a cache older than canopy's last write waits for the event that
// brings that write, instead of polling; only that event passes, and only while someone waits.
func TestAStaleCacheIsAwaitedNotPolled(t *testing.T) {
	w, clk := newWrites()
	caughtUp := w.CaughtUp()
	update := func(rv string) bool {
		return caughtUp.Update(event.UpdateEvent{ObjectOld: canaryAt("u1", "1", 0), ObjectNew: canaryAt("u1", rv, 0)})
	}
	w.Wrote(canaryAt("u1", "10", 20))
	if update("10") {
		t.Fatal("canopy's own write's event woke the Canary although no reconcile waited for it")
	}

	// However long the cache lags, a copy older than the write is stale.
	clk.SetTime(clk.Now().Add(time.Hour))
	c := canaryAt("u1", "9", 10)
	if fresh, err := w.Fresh(t.Context(), cacheAt{uid: "u1", rv: "9"}, c); err != nil || fresh {
		t.Fatalf("version 9 after writing 10: fresh %v, %v", fresh, err)
	}
	if update("9") {
		t.Fatal("an older version woke the waiting Canary")
	}
	if !update("10") {
		t.Fatal("the awaited version did not wake the waiting Canary")
	}

	// The event came between the reconcile's read and its check: the second read sees it.
	w.Wrote(canaryAt("u1", "20", 30))
	c = canaryAt("u1", "19", 20)
	if fresh, err := w.Fresh(t.Context(), cacheAt{uid: "u1", rv: "20"}, c); err != nil || !fresh || c.ResourceVersion != "20" {
		t.Fatalf("the cache holds 20: fresh %v (read %s), %v", fresh, c.ResourceVersion, err)
	}
	if update("21") {
		t.Fatal("an update woke the Canary after it caught up and nobody waits")
	}

	// Deleted and created again under the same name: the old object's write is not awaited.
	w.Wrote(canaryAt("u1", "30", 30))
	if fresh, err := w.Fresh(t.Context(), cacheAt{uid: "u2", rv: "25"}, canaryAt("u2", "25", 0)); err != nil || !fresh {
		t.Fatalf("a write of the deleted Canary was awaited for the new one: fresh %v, %v", fresh, err)
	}
	// A deletion forgets the write.
	w.Wrote(canaryAt("u2", "40", 10))
	if caughtUp.Delete(event.DeleteEvent{Object: canaryAt("u2", "40", 10)}) {
		t.Fatal("the predicate passed a deletion")
	}
	key := writeKey{schema.GroupKind{Group: meshv1.GroupVersion.Group, Kind: "Canary"}, types.NamespacedName{Namespace: "shop", Name: "reviews"}}
	if _, ok := w.m.Load(key); ok {
		t.Fatal("the write of a deleted Canary is still remembered")
	}
}

// Versions are ordered as the apiserver orders them, not as text ("9" < "10"), and one that is
// not a resourceVersion the apiserver hands out is assumed neither stale nor own.
func TestVersionsCompareAsTheAPIServerOrdersThem(t *testing.T) {
	w, _ := newWrites()
	w.Wrote(canaryAt("u1", "10", 0))
	if !w.Behind(canaryAt("u1", "9", 0)) {
		t.Fatal("9 is not behind 10")
	}
	for _, rv := range []string{"10", "100", "", "x", "010"} {
		if w.Behind(canaryAt("u1", rv, 0)) {
			t.Fatalf("%q is behind 10", rv)
		}
	}
	w.Wrote(canaryAt("u1", "9", 0)) // an older answer never replaces a newer one
	if !w.Own(canaryAt("u1", "10", 0)) || w.Own(canaryAt("u1", "9", 0)) {
		t.Fatal("an older version replaced the newer one")
	}
	w.Wrote(canaryAt("u1", "bogus", 0))
	if !w.Own(canaryAt("u1", "10", 0)) {
		t.Fatal("a malformed version replaced a known one")
	}
}

// Own events are told by kind, name and UID, and for knownFor on the tracker's clock.
func TestOwnIsKeyedByKindNameAndUID(t *testing.T) {
	w, clk := newWrites()
	vs := &istionetv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "reviews", UID: "v1", ResourceVersion: "7"}}
	w.Wrote(vs)
	if !w.Own(vs) {
		t.Fatal("canopy's own write is not known as its own")
	}
	if w.Own(canaryAt("v1", "7", 0)) {
		t.Fatal("a Canary of the same name and version is taken for the VirtualService")
	}
	successor := vs.DeepCopy()
	successor.UID = "v2"
	if w.Own(successor) {
		t.Fatal("another object of the same name is taken for canopy's write")
	}
	w.NotOwn().Delete(event.DeleteEvent{Object: successor})
	if !w.Own(vs) {
		t.Fatal("the deletion of another object of the same name forgot canopy's write")
	}
	clk.SetTime(clk.Now().Add(knownFor))
	if w.Own(vs) {
		t.Fatal("a write older than knownFor is still taken as the watch event's")
	}
}
