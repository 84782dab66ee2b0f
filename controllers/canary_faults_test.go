package controllers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/apply"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/testenv"
)

// faults makes a fraction of the write requests fail the way an apiserver under load or a
// flaky network makes them fail: 409 conflicts, 500 and 503 answers, and timeouts, half of
// which come after the write has landed (the response was lost, the change was not).
type faults struct {
	mu       sync.Mutex
	rng      *rand.Rand
	rate     float64
	injected map[string]int
}

func newFaults(seed uint64, rate float64) *faults {
	return &faults{rng: rand.New(rand.NewPCG(seed, seed)), rate: rate, injected: map[string]int{}}
}

// around runs write unless a fault is drawn for it, and returns what the client would see.
func (f *faults) around(obj client.Object, write func() error) error {
	f.mu.Lock()
	fail, kind, afterWrite := f.rng.Float64() < f.rate, f.rng.IntN(4), f.rng.IntN(2) == 0
	f.mu.Unlock()
	if !fail {
		return write()
	}
	gr := schema.GroupResource{Resource: fmt.Sprintf("%T", obj)}
	var err error
	switch kind {
	case 0:
		err = apierrors.NewConflict(gr, obj.GetName(), errors.New("injected: the object has been modified"))
	case 1:
		err = apierrors.NewInternalError(errors.New("injected: etcdserver: request timed out"))
	case 2:
		err = apierrors.NewServiceUnavailable("injected: the server is currently unable to handle the request")
	default:
		err = apierrors.NewTimeoutError("injected: the response was lost", 1)
		if afterWrite {
			if werr := write(); werr != nil {
				return werr
			}
		}
	}
	f.mu.Lock()
	f.injected[string(apierrors.ReasonForError(err))]++
	f.mu.Unlock()
	return err
}

// client wraps c so that its writes go through the fault injector; reads are left alone
// (a failed read is a failed reconcile that changed nothing, the easy case).
func (f *faults) client(c client.WithWatch) client.WithWatch {
	return interceptor.NewClient(c, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			return f.around(obj, func() error { return c.Create(ctx, obj, opts...) })
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			return f.around(obj, func() error { return c.Update(ctx, obj, opts...) })
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
			return f.around(obj, func() error { return c.Patch(ctx, obj, p, opts...) })
		},
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			return f.around(&appsv1.Deployment{}, func() error { return c.Apply(ctx, obj, opts...) })
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			return f.around(obj, func() error { return c.Delete(ctx, obj, opts...) })
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			return f.around(obj, func() error { return c.SubResource(sub).Update(ctx, obj, opts...) })
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			return f.around(obj, func() error { return c.SubResource(sub).Patch(ctx, obj, p, opts...) })
		},
		List: listByTargetIndex,
	})
}

func (f *faults) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprint(f.injected)
}

// withFaults makes the harness's reconciler write through the fault injector.
func (h *harness) withFaults(f *faults) {
	h.t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		h.t.Fatal(err)
	}
	faulty := f.client(wc)
	h.r.Client = faulty
	h.r.Applier = &apply.Applier{Client: faulty, Reader: faulty}
}

// vsRecorder watches the namespace's VirtualServices from the apiserver and keeps every
// version it stores: what the mesh would have been told, in order.
type vsRecorder struct {
	mu       sync.Mutex
	versions []*istionetv1.VirtualService
}

func (h *harness) recordVirtualServices() *vsRecorder {
	h.t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		h.t.Fatal(err)
	}
	w, err := wc.Watch(h.t.Context(), &istionetv1.VirtualServiceList{}, client.InNamespace(h.ns))
	if err != nil {
		h.t.Fatal(err)
	}
	rec := &vsRecorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if vs, ok := ev.Object.(*istionetv1.VirtualService); ok && (ev.Type == watch.Added || ev.Type == watch.Modified) {
				rec.mu.Lock()
				rec.versions = append(rec.versions, vs)
				rec.mu.Unlock()
			}
		}
	}()
	h.t.Cleanup(func() { w.Stop(); <-done })
	return rec
}

// canaryWeights returns the canary's weight in each recorded version, consecutive repeats
// folded, after checking that every route of every version splits 0..100 summing to 100.
func (r *vsRecorder) canaryWeights(t *testing.T, name string) []int32 {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int32
	for _, vs := range r.versions {
		for i, rt := range vs.Spec.Http {
			var sum int32
			for _, d := range rt.Route {
				if d.Weight < 0 || d.Weight > 100 {
					t.Fatalf("VirtualService %s version %s route %d has weight %d", vs.Name, vs.ResourceVersion, i, d.Weight)
				}
				sum += d.Weight
			}
			if len(rt.Route) > 1 && sum != 100 {
				t.Fatalf("VirtualService %s version %s route %d splits %d%% of the traffic", vs.Name, vs.ResourceVersion, i, sum)
			}
		}
		if vs.Name != name {
			continue
		}
		if _, c, ok := render.ObservedWeights(vs, name); ok && (len(out) == 0 || out[len(out)-1] != c) {
			out = append(out, c)
		}
	}
	return out
}

// settleThroughFaults reconciles as a manager would, retrying failed reconciles, until a
// reconcile succeeds and changes nothing.
func (h *harness) settleThroughFaults(name string) *meshv1.Canary {
	h.t.Helper()
	var last string
	for range 60 {
		_, err := h.r.Reconcile(h.t.Context(), reconcileRequest(h.ns, name))
		c := &meshv1.Canary{}
		if gerr := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: name}, c); gerr != nil {
			h.t.Fatal(gerr)
		}
		if err == nil && c.ResourceVersion == last {
			return c
		}
		last = c.ResourceVersion
	}
	h.t.Fatalf("canary %s did not settle in 60 reconciles under injected faults", name)
	return nil
}

// markRolledOut does what kube-controller-manager does: every Deployment whose spec changed
// reports itself rolled out.
func (h *harness) markRolledOut() {
	h.t.Helper()
	list := &appsv1.DeploymentList{}
	if err := h.c.List(h.t.Context(), list, client.InNamespace(h.ns)); err != nil {
		h.t.Fatal(err)
	}
	for _, d := range list.Items {
		n := ptr.Deref(d.Spec.Replicas, 1)
		if d.Status.ObservedGeneration != d.Generation || d.Status.ReadyReplicas != n || d.Status.UpdatedReplicas != n {
			h.markReady(d.Name)
		}
	}
}

// runUntil plays the world around the reconciler (Deployments rolling out, the clock moving
// one analysis interval at a time) until the canary reaches one of the phases.
func (h *harness) runUntil(name string, phases ...meshv1.CanaryPhase) *meshv1.Canary {
	h.t.Helper()
	for range 40 {
		h.markRolledOut()
		c := h.settleThroughFaults(name)
		if slices.Contains(phases, c.Status.Phase) {
			return c
		}
		h.clock.Step(time.Minute)
	}
	h.t.Fatalf("canary %s never reached %v", name, phases)
	return nil
}

// TestCanaryConvergesThroughWriteFaults runs whole rollouts, promoted and rolled back, while
// a quarter of the reconciler's writes fail with conflicts, server errors and timeouts (some
// after the write landed). Every rollout ends where it should, the mesh never sees a split
// outside 0..100 or not summing to 100, and no step is skipped or repeated.
func TestCanaryConvergesThroughWriteFaults(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			h := newHarness(t)
			f := newFaults(seed, 0.25)
			h.withFaults(f)
			rec := h.recordVirtualServices()
			h.create(deployment("reviews", "reviews:v1", 2), reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10)}))
			h.runUntil("reviews", meshv1.PhaseInitialized)

			h.setImage("reviews", "reviews:v2")
			c := h.runUntil("reviews", meshv1.PhaseSucceeded, meshv1.PhaseFailed)
			expectPhase(t, c, meshv1.PhaseSucceeded)
			if img := h.deployment("reviews-primary").Spec.Template.Spec.Containers[0].Image; img != "reviews:v2" {
				t.Fatalf("primary runs %s after promotion, want reviews:v2", img)
			}

			h.setImage("reviews", "reviews:v3")
			h.runUntil("reviews", meshv1.PhaseProgressing)
			h.analyzer.set(meshv1.OutcomeFail, "80.00")
			c = h.runUntil("reviews", meshv1.PhaseFailed, meshv1.PhaseSucceeded)
			expectPhase(t, c, meshv1.PhaseFailed)
			if img := h.deployment("reviews-primary").Spec.Template.Spec.Containers[0].Image; img != "reviews:v2" {
				t.Fatalf("primary runs %s after the rollback, want reviews:v2 untouched", img)
			}
			if n := ptr.Deref(h.deployment("reviews").Spec.Replicas, -1); n != 0 {
				t.Fatalf("canary has %d replicas after the rollback, want 0", n)
			}

			// Initialization (target first, then primary), 10-20-30, promotion, then v3's
			// first step and the rollback: no step skipped, none repeated.
			want := []int32{100, 0, 10, 20, 30, 0, 10, 0}
			testenv.Eventually(t, 10*time.Second, func() error {
				if got := rec.canaryWeights(t, "reviews"); !slices.Equal(got, want) {
					return fmt.Errorf("the mesh saw canary weights %v, want %v (faults injected: %s)", got, want, f)
				}
				return nil
			})
			t.Logf("faults injected: %s", f)
		})
	}
}
