package controllers

import (
	"context"
	"testing"
	"time"

	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/test/testenv"
)

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
