package controllers

import (
	"context"
	"sync"
	"testing"

	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"canopy.dev/canopy/internal/apply"
	"canopy.dev/canopy/internal/workload"
	"canopy.dev/canopy/test/testenv"
)

// laggingReader reads like the manager's cache, except that while frozen it answers the
// VirtualService it held when frozen: a cache that has not caught up with the writes since.
type laggingReader struct {
	cacheLikeReader
	mu     sync.Mutex
	frozen *istionetv1.VirtualService
}

func (r *laggingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	r.mu.Lock()
	frozen := r.frozen
	r.mu.Unlock()
	if vs, ok := obj.(*istionetv1.VirtualService); ok && frozen != nil {
		frozen.DeepCopyInto(vs)
		return nil
	}
	return r.cacheLikeReader.Get(ctx, key, obj, opts...)
}

func (r *laggingReader) freeze(ctx context.Context, t *testing.T, key client.ObjectKey) {
	t.Helper()
	vs := &istionetv1.VirtualService{}
	if err := r.cacheLikeReader.Get(ctx, key, vs); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.frozen = vs
	r.mu.Unlock()
}

func (r *laggingReader) thaw() {
	r.mu.Lock()
	r.frozen = nil
	r.mu.Unlock()
}

func routeTo(ns string, canaryWeight int32) *istionetv1.VirtualService {
	return &istionetv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec: networkingv1.VirtualService{
			Hosts: []string{"reviews"},
			Http: []*networkingv1.HTTPRoute{{Route: []*networkingv1.HTTPRouteDestination{
				{Destination: &networkingv1.Destination{Host: "reviews-primary"}, Weight: 100 - canaryWeight},
				{Destination: &networkingv1.Destination{Host: "reviews-canary"}, Weight: canaryWeight},
			}}},
		},
	}
}

func canaryWeightOf(t *testing.T, key client.ObjectKey) int32 {
	t.Helper()
	vs := &istionetv1.VirtualService{}
	if err := env.Client.Get(t.Context(), key, vs); err != nil {
		t.Fatal(err)
	}
	return vs.Spec.GetHttp()[0].GetRoute()[1].GetWeight()
}

// Under a cache that has not caught up with canopy's last write, the applier neither writes
// the same state twice nor trusts the stale copy: what the object holds is what it wrote.
// Someone else's newer change is compared in full and put back.
func TestTheApplierKnowsItsOwnWritesBeforeTheCacheDoes(t *testing.T) {
	testenv.SkipIfShort(t)
	ctx := t.Context()
	ns := env.CreateNamespace(t)
	applies := &applyCounter{Client: env.Client}
	reader := &laggingReader{cacheLikeReader: cacheLikeReader{env.Client}}
	a := &apply.Applier{Client: applies, Reader: reader}
	key := client.ObjectKey{Namespace: ns, Name: "reviews"}
	apply := func(weight int32, wantSent bool) {
		t.Helper()
		before := applies.n.Load()
		if _, err := a.Apply(ctx, routeTo(ns, weight)); err != nil {
			t.Fatal(err)
		}
		if sent := applies.n.Load() > before; sent != wantSent {
			t.Fatalf("applying canary weight %d: request sent %v, want %v", weight, sent, wantSent)
		}
		if got := canaryWeightOf(t, key); got != weight {
			t.Fatalf("the VirtualService routes %d%% to the canary, want %d%%", got, weight)
		}
	}

	apply(10, true)
	reader.freeze(ctx, t, key) // the cache stays at weight 10 from here
	apply(20, true)
	apply(20, false) // the cache still says 10, but 20 is what was written
	apply(10, true)  // the stale copy says 10, but the object holds 20: 10 must be written
	reader.thaw()
	apply(10, false)

	// Someone else routes half the traffic to the canary: a newer version, compared in full.
	vs := &istionetv1.VirtualService{}
	if err := env.Client.Get(ctx, key, vs); err != nil {
		t.Fatal(err)
	}
	vs.Spec.Http[0].Route[0].Weight, vs.Spec.Http[0].Route[1].Weight = 50, 50
	if err := env.Client.Update(ctx, vs); err != nil {
		t.Fatal(err)
	}
	apply(10, true)
}

// The watch events of canopy's own writes (applies, scales) wake no Canary; another writer's
// change of the same object and every deletion do.
func TestOwnWritesWakeNoCanary(t *testing.T) {
	testenv.SkipIfShort(t)
	ctx := t.Context()
	ns := env.CreateNamespace(t)
	a := &apply.Applier{Client: env.Client, Reader: cacheLikeReader{env.Client}}
	others := a.Writes().NotOwn()
	if _, err := a.Apply(ctx, routeTo(ns, 10)); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKey{Namespace: ns, Name: "reviews"}
	ours := &istionetv1.VirtualService{}
	if err := env.Client.Get(ctx, key, ours); err != nil {
		t.Fatal(err)
	}
	if others.Create(event.CreateEvent{Object: ours}) || others.Update(event.UpdateEvent{ObjectOld: ours, ObjectNew: ours}) {
		t.Fatal("the events of canopy's own apply passed")
	}
	theirs := ours.DeepCopy()
	theirs.Spec.Http[0].Route[0].Weight, theirs.Spec.Http[0].Route[1].Weight = 50, 50
	if err := env.Client.Update(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	if !others.Update(event.UpdateEvent{ObjectOld: ours, ObjectNew: theirs}) {
		t.Fatal("another writer's change did not pass")
	}
	if !others.Delete(event.DeleteEvent{Object: ours}) {
		t.Fatal("the deletion of canopy's own write did not pass")
	}

	// A scale through the scale subresource, as a Canary scales its target.
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "reviews"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "reviews"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "reviews:v1"}}},
			},
		},
	}
	if err := env.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	r := &CanaryReconciler{Client: env.Client, Applier: a}
	if err := r.scale(ctx, d, 0); err != nil {
		t.Fatal(err)
	}
	scaled := &appsv1.Deployment{}
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "reviews"}, scaled); err != nil {
		t.Fatal(err)
	}
	if workload.Replicas(scaled) != 0 || scaled.ResourceVersion != d.ResourceVersion {
		t.Fatalf("scaled to %d at version %s; the scale answered version %s", workload.Replicas(scaled), scaled.ResourceVersion, d.ResourceVersion)
	}
	if others.Update(event.UpdateEvent{ObjectOld: d, ObjectNew: scaled}) {
		t.Fatal("the event of canopy's own scale passed")
	}
}
