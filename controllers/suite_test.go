package controllers

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/apply"
	"canopy.dev/canopy/internal/hooks"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/testenv"
)

// env is one envtest apiserver (with Istio's and cert-manager's CRDs) for the package. No
// controller-manager runs there: the tests mark Deployments ready themselves, and call
// Reconcile directly with a fake clock, so a whole rollout takes no wall time.
var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, testenv.Options{}, &env) }

// fakeAnalyzer stands in for Prometheus in these tests: every check gets the outcome set.
type fakeAnalyzer struct {
	mu      sync.Mutex
	outcome meshv1.CheckOutcome
	value   string
	runs    int
	// during runs inside each Run, as a slow Prometheus would take time.
	during func()
}

func (f *fakeAnalyzer) set(o meshv1.CheckOutcome, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.outcome, f.value = o, value
}

func (f *fakeAnalyzer) Run(_ context.Context, c *meshv1.Canary) []meshv1.CheckStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs++
	if f.during != nil {
		f.during()
	}
	out := make([]meshv1.CheckStatus, 0, len(c.Spec.Analysis.Metrics))
	for _, m := range c.Spec.Analysis.Metrics {
		out = append(out, meshv1.CheckStatus{Name: m.Name, Outcome: f.outcome, Value: f.value, Threshold: ">= 99"})
	}
	return out
}

// fakeHooks answers every webhook from a table of open names.
type fakeHooks struct {
	mu    sync.Mutex
	open  map[string]bool
	calls map[meshv1.WebhookType]int
	// during runs inside each call, as a slow webhook would take time.
	during func(meshv1.CanaryWebhook)
}

func (f *fakeHooks) Call(_ context.Context, h meshv1.CanaryWebhook, _ hooks.Payload) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[meshv1.WebhookType]int{}
	}
	f.calls[h.Type]++
	if f.during != nil {
		f.during(h)
	}
	if f.open[h.Name] {
		return nil
	}
	return errClosed
}

var errClosed = &hookError{"gate closed"}

type hookError struct{ s string }

func (e *hookError) Error() string { return e.s }

// harness drives one Canary's reconciles by hand.
type harness struct {
	t        *testing.T
	ns       string
	r        *CanaryReconciler
	clock    *clocktesting.FakeClock
	analyzer *fakeAnalyzer
	hooks    *fakeHooks
	c        client.Client
	// writes counts the requests the reconciler sent that change something (or could).
	writes atomic.Int32
}

// countingClient is the apiserver's client, counting the reconciler's write requests, so
// that a test can say a reconcile with nothing to do sent none.
func (h *harness) countingClient() client.Client {
	h.t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		h.t.Fatal(err)
	}
	count := func() { h.writes.Add(1) }
	return interceptor.NewClient(wc, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			count()
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			count()
			return c.Update(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
			count()
			return c.Patch(ctx, obj, p, opts...)
		},
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			count()
			return c.Apply(ctx, obj, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			count()
			return c.Delete(ctx, obj, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			count()
			return c.SubResource(sub).Update(ctx, obj, opts...)
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			count()
			return c.SubResource(sub).Patch(ctx, obj, p, opts...)
		},
		List: listByTargetIndex,
	})
}

// listByTargetIndex answers a list of Canaries by the target index as the manager's cache
// does: the apiserver supports no field selector on a custom resource's spec, so the list is
// filtered here.
func listByTargetIndex(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
	lo := (&client.ListOptions{}).ApplyOptions(opts)
	canaries, ok := list.(*meshv1.CanaryList)
	if !ok || lo.FieldSelector == nil {
		return c.List(ctx, list, opts...)
	}
	target, found := lo.FieldSelector.RequiresExactMatch(indexTarget)
	if !found {
		return c.List(ctx, list, opts...)
	}
	lo.FieldSelector = nil
	if err := c.List(ctx, canaries, lo); err != nil {
		return err
	}
	canaries.Items = slices.DeleteFunc(canaries.Items, func(o meshv1.Canary) bool { return o.Spec.TargetRef.Name != target })
	return nil
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	testenv.SkipIfShort(t)
	cs := kubernetes.NewForConfigOrDie(env.Config)
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	stop := make(chan struct{})
	b.StartRecordingToSink(stop)
	t.Cleanup(func() { close(stop); b.Shutdown() })
	h := &harness{
		t: t, ns: env.CreateNamespace(t), c: env.Client,
		clock:    clocktesting.NewFakeClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)),
		analyzer: &fakeAnalyzer{outcome: meshv1.OutcomePass, value: "100"},
		hooks:    &fakeHooks{open: map[string]bool{}},
	}
	counted := h.countingClient()
	h.r = &CanaryReconciler{
		Client:   counted,
		Applier:  &apply.Applier{Client: counted, Reader: counted},
		Recorder: b.NewRecorder(env.Scheme, "canopy"),
		Analyzer: h.analyzer,
		Hooks:    h.hooks,
		Clock:    h.clock,
		Tenancy:  openTenancy,
	}
	return h
}

// openTenancy allows every claim beyond a namespace: the reconcile tests are about
// rendering and applying; the tenancy tests set their own.
var openTenancy = &render.Tenancy{
	GatewayNamespaces: []string{"*"}, ClusterIssuers: []string{"*"},
	Hosts: []render.HostRule{{Namespace: "*", Host: "*"}}, ExternalHosts: []render.HostRule{{Namespace: "*", Host: "*"}},
}

// reconcile runs one reconcile of the Canary and returns it as it is afterwards.
func (h *harness) reconcile(name string) (*meshv1.Canary, ctrl.Result) {
	h.t.Helper()
	res, err := h.r.Reconcile(h.t.Context(), ctrl.Request{NamespacedName: client.ObjectKey{Namespace: h.ns, Name: name}})
	if err != nil {
		h.t.Fatalf("reconcile: %v", err)
	}
	c := &meshv1.Canary{}
	if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: name}, c); err != nil {
		h.t.Fatalf("reading the canary: %v", err)
	}
	return c, res
}

// settle reconciles until nothing changes any more (at most a few times), as the watches of
// a running manager would.
func (h *harness) settle(name string) *meshv1.Canary {
	h.t.Helper()
	var last *meshv1.Canary
	for range 6 {
		c, _ := h.reconcile(name)
		if last != nil && c.ResourceVersion == last.ResourceVersion {
			return c
		}
		last = c
	}
	return last
}

// markReady makes a Deployment's status say it rolled out, as kube-controller-manager would.
func (h *harness) markReady(name string) {
	h.t.Helper()
	h.markAvailable(name, ptr.Deref(h.deployment(name).Spec.Replicas, 1))
}

// markAvailable makes a Deployment's status say every replica runs the current template
// and available of them are available.
func (h *harness) markAvailable(name string, available int32) {
	h.t.Helper()
	d := h.deployment(name)
	n := ptr.Deref(d.Spec.Replicas, 1)
	d.Status = appsv1.DeploymentStatus{
		ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: available, AvailableReplicas: available,
	}
	if err := h.c.Status().Update(h.t.Context(), d); err != nil {
		h.t.Fatalf("marking %s ready: %v", name, err)
	}
}

func (h *harness) deployment(name string) *appsv1.Deployment {
	h.t.Helper()
	d := &appsv1.Deployment{}
	if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: name}, d); err != nil {
		h.t.Fatalf("reading Deployment %s: %v", name, err)
	}
	return d
}

func (h *harness) create(objs ...client.Object) {
	h.t.Helper()
	for _, o := range objs {
		o.SetNamespace(h.ns)
		if err := h.c.Create(h.t.Context(), o); err != nil {
			h.t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

// setImage changes the target's image: a new revision.
func (h *harness) setImage(name, image string) {
	h.t.Helper()
	d := h.deployment(name)
	d.Spec.Template.Spec.Containers[0].Image = image
	if err := h.c.Update(h.t.Context(), d); err != nil {
		h.t.Fatalf("updating the image: %v", err)
	}
}

// annotate sets an annotation on the Canary, e.g. a manual request.
func (h *harness) annotate(name, key, value string) {
	h.t.Helper()
	c := &meshv1.Canary{}
	if err := h.c.Get(h.t.Context(), client.ObjectKey{Namespace: h.ns, Name: name}, c); err != nil {
		h.t.Fatal(err)
	}
	patch := client.MergeFrom(c.DeepCopy())
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	c.Annotations[key] = value
	if err := h.c.Patch(h.t.Context(), c, patch); err != nil {
		h.t.Fatal(err)
	}
}

func deployment(name, image string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: name, Image: image, Ports: []corev1.ContainerPort{{ContainerPort: 9080}},
				}}},
			},
		},
	}
}

func reconcileRequest(ns, name string) ctrl.Request {
	return ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: name}}
}
