package e2e

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/internal/workload"
	"canopy.dev/canopy/test/testenv"
)

// Issue 20, item 1, as it was reproduced: a Canary with default settings on a user's
// Deployment and Service, Initialized, then deleted. The Service used to have no ready
// endpoint for some 40 s (the adopted Service still selected the primary's pods, which
// garbage collection removed). Now, from the deletion until the Canary is gone, the
// Service always has a ready endpoint (polled until the primary's pods are gone, after the
// Canary); at the end it selects the target's pods, the target is ready at the primary's
// scale, and the generated objects are gone.
func TestDeletingACanaryKeepsTheServiceUp(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	startOperator(t, manager.Options{Analyzer: imageAnalyzer{env.Client}})
	labels := map[string]string{"app": "reviews"}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}},
	}
	for _, o := range []client.Object{newDeployment(ns, "reviews", "bookinfo/reviews:v1", 3), svc, newCanary(ns, "reviews", 10, 30)} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	waitPhase(t, ns, "reviews", meshv1.PhaseInitialized)
	// Initialized for good: the target scaled to zero, the Service's endpoints the primary's.
	testenv.Eventually(t, 2*time.Minute, func() error {
		target := &appsv1.Deployment{}
		if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews"}, target); err != nil {
			return err
		}
		if n := workload.Replicas(target); n != 0 || target.Status.Replicas != 0 {
			return fmt.Errorf("target runs %d replicas (%d pods), waiting for 0", n, target.Status.Replicas)
		}
		if n, desc := readyEndpoints(t.Context(), ns, "reviews"); n != 3 {
			return fmt.Errorf("Service reviews has %d ready endpoints, waiting for the primary's 3: %s", n, desc)
		}
		return nil
	})

	watch := watchEndpoints(t, ns, "reviews")
	if err := env.Client.Delete(t.Context(), &meshv1.Canary{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"}}); err != nil {
		t.Fatal(err)
	}
	waitCanaryGone(t, ns, "reviews")
	// The watch goes on until the primary's pods are gone: an outage would come then.
	expectHandedOver(t, ns, labels, 3)
	if outage := watch.stop(); outage != "" {
		t.Errorf("Service reviews had no ready endpoint during the deletion: %s", outage)
	}
}

// A rollout in progress when the Canary is deleted: the primary keeps serving all traffic
// and the deletion waits, until a confirm-deletion request hands the new revision over.
func TestDeletingACanaryDuringARolloutWaits(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	startOperator(t, manager.Options{Analyzer: imageAnalyzer{env.Client}})
	labels := map[string]string{"app": "reviews"}
	c := newCanary(ns, "reviews", 10, 30)
	c.Spec.Analysis.Interval = "1h" // the rollout stays in progress
	for _, o := range []client.Object{newDeployment(ns, "reviews", "bookinfo/reviews:v1", 2), c} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	waitPhase(t, ns, "reviews", meshv1.PhaseInitialized)
	setImage(t, ns, "reviews", "bookinfo/reviews:v2")
	waitPhase(t, ns, "reviews", meshv1.PhaseProgressing)
	watch := watchEndpoints(t, ns, "reviews")
	if err := env.Client.Delete(t.Context(), &meshv1.Canary{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, func() error {
		if r := condition(t, getCanary(t, ns, "reviews"), meshv1.ConditionReady).Reason; r != meshv1.ReasonDeletionBlocked {
			return fmt.Errorf("Ready reason %q, waiting for %s", r, meshv1.ReasonDeletionBlocked)
		}
		vs := &istionetv1.VirtualService{}
		if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews"}, vs); err != nil {
			return err
		}
		if p, _, ok := render.ObservedWeights(vs, "reviews"); !ok || p != 100 {
			return fmt.Errorf("the primary gets %d%% of the traffic, want 100", p)
		}
		return nil
	})
	waitEvents(t, ns, "reviews", meshv1.ReasonDeletionBlocked, 1)
	time.Sleep(3 * time.Second) // longer than a hand-over step: the deletion still waits
	if r := condition(t, getCanary(t, ns, "reviews"), meshv1.ConditionReady).Reason; r != meshv1.ReasonDeletionBlocked {
		t.Fatalf("Ready reason %q while the target carries an unpromoted revision, want %s", r, meshv1.ReasonDeletionBlocked)
	}

	patch := []byte(`{"metadata":{"annotations":{"` + meshv1.AnnotationRequest + `":"confirm-deletion:1"}}}`)
	if err := env.Client.Patch(t.Context(), &meshv1.Canary{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"}}, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
	waitCanaryGone(t, ns, "reviews")
	expectHandedOver(t, ns, labels, 2)
	if outage := watch.stop(); outage != "" {
		t.Errorf("Service reviews had no ready endpoint during the deletion: %s", outage)
	}
	if n := readyPods(t, ns, labels, "bookinfo/reviews:v2"); n != 2 {
		t.Errorf("%d target pods ready on the confirmed v2, want 2", n)
	}
}

func waitCanaryGone(t *testing.T, ns, name string) {
	t.Helper()
	testenv.Eventually(t, 3*time.Minute, func() error {
		if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, &meshv1.Canary{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("the Canary is still there (%v)", err)
		}
		return nil
	})
}

// expectHandedOver waits until the generated objects and the primary's pods are gone, then
// checks that the apex Service selects the target's pods (labels) and is the user's, and
// that the target is ready at replicas.
func expectHandedOver(t *testing.T, ns string, labels map[string]string, replicas int32) {
	t.Helper()
	testenv.Eventually(t, 3*time.Minute, func() error {
		for _, o := range []client.Object{
			&istionetv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "reviews"}},
			&istionetv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: render.PrimaryName("reviews")}},
			&istionetv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: render.CanaryName("reviews")}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: render.PrimaryName("reviews")}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: render.CanaryName("reviews")}},
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: render.PrimaryName("reviews")}},
		} {
			if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: o.GetName()}, o); !apierrors.IsNotFound(err) {
				return fmt.Errorf("%T %s is still there (%v)", o, o.GetName(), err)
			}
		}
		pods := &corev1.PodList{}
		if err := env.Client.List(t.Context(), pods, client.InNamespace(ns), client.MatchingLabels{"app": render.PrimaryName("reviews")}); err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d pods of the primary left", len(pods.Items))
		}
		return nil
	})
	time.Sleep(2 * time.Second) // the endpoints controller's last word on the primary's pods

	svc := &corev1.Service{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews"}, svc); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(svc.Spec.Selector, labels) || len(svc.OwnerReferences) != 0 {
		t.Errorf("Service reviews selects %v with owners %v; want the target's pods %v, no owner", svc.Spec.Selector, svc.OwnerReferences, labels)
	}
	target := &appsv1.Deployment{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews"}, target); err != nil {
		t.Fatal(err)
	}
	if ready, why := workload.Ready(target); !ready || workload.Replicas(target) != replicas {
		t.Errorf("target runs %d replicas, ready %v (%s); want the primary's %d, ready", workload.Replicas(target), ready, why, replicas)
	}
	// The Service kept its endpoints after the Canary went: the target's ready pods.
	if n, desc := readyEndpoints(t.Context(), ns, "reviews"); n == 0 {
		t.Errorf("Service reviews has no ready endpoint after the deletion: %s", desc)
	}
}

// endpointWatch polls a Service's EndpointSlices and remembers the first moment it had no
// ready endpoint.
type endpointWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	outage string
	polls  int
}

func watchEndpoints(t *testing.T, ns, service string) *endpointWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &endpointWatch{cancel: cancel, done: make(chan struct{})}
	t.Cleanup(func() { w.stop() })
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			n, desc := readyEndpoints(ctx, ns, service)
			w.mu.Lock()
			w.polls++
			if n == 0 && w.outage == "" && ctx.Err() == nil {
				w.outage = fmt.Sprintf("at %s: %s", time.Now().Format(time.RFC3339Nano), desc)
			}
			w.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return w
}

// stop ends the polling and returns the first outage seen ("" for none).
func (w *endpointWatch) stop() string {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.polls == 0 {
		return "never polled"
	}
	return w.outage
}

// readyEndpoints counts the ready endpoints of a Service's EndpointSlices, and describes
// them (or the error reading them).
func readyEndpoints(ctx context.Context, ns, service string) (int, string) {
	slices := &discoveryv1.EndpointSliceList{}
	if err := env.Client.List(ctx, slices, client.InNamespace(ns), client.MatchingLabels{discoveryv1.LabelServiceName: service}); err != nil {
		return -1, err.Error() // not an outage: the read failed
	}
	n, desc := 0, ""
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			ready := ptr.Deref(e.Conditions.Ready, false)
			pod := ""
			if e.TargetRef != nil {
				pod = e.TargetRef.Name
			}
			desc += fmt.Sprintf("%s ready=%v; ", pod, ready)
			if ready {
				n++
			}
		}
	}
	if desc == "" {
		desc = fmt.Sprintf("%d EndpointSlices, no endpoint", len(slices.Items))
	}
	return n, desc
}
