package controllers

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

func canaryAt(rv string) *meshv1.Canary {
	return &meshv1.Canary{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "reviews", UID: types.UID("u1"), ResourceVersion: rv}}
}

// cacheAt is a cache that holds one version of the Canary.
type cacheAt struct {
	client.Reader
	rv string
}

func (c cacheAt) Get(_ context.Context, _ client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	canaryAt(c.rv).DeepCopyInto(obj.(*meshv1.Canary))
	return nil
}

// A reconcile that meets a cache older than our last write waits for the event bringing
// that write, instead of polling; only that event passes, and only while someone waits.
func TestAStaleCacheIsAwaitedNotPolled(t *testing.T) {
	var v resourceVersions
	caughtUp := v.caughtUp()
	update := func(rv string) bool {
		return caughtUp.Update(event.UpdateEvent{ObjectOld: canaryAt("1"), ObjectNew: canaryAt(rv)})
	}
	v.wrote(canaryAt("10"))
	if update("10") {
		t.Fatal("our own write's event woke the Canary although no reconcile waited for it")
	}

	c := canaryAt("9")
	if fresh, err := v.fresh(context.Background(), cacheAt{rv: "9"}, c); err != nil || fresh {
		t.Fatalf("version 9 after writing 10: fresh %v, %v", fresh, err)
	}
	if update("9") {
		t.Fatal("an older version woke the waiting Canary")
	}
	if !update("10") {
		t.Fatal("the awaited version did not wake the waiting Canary")
	}

	// The event came between the reconcile's read and its check: the second read sees it.
	v.wrote(canaryAt("20"))
	c = canaryAt("19")
	if fresh, err := v.fresh(context.Background(), cacheAt{rv: "20"}, c); err != nil || !fresh || c.ResourceVersion != "20" {
		t.Fatalf("the cache holds 20: fresh %v (read %s), %v", fresh, c.ResourceVersion, err)
	}
	if update("21") {
		t.Fatal("an update woke the Canary after it caught up and nobody waits")
	}
}
