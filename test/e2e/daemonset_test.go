package e2e

import (
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/testenv"
)

// gitOpsManager stands for Argo CD or Flux: it server-side applies the user's DaemonSet as
// it is in Git.
const gitOpsManager = "gitops-sync"

// A DaemonSet Canary, delivered blue/green on the local cluster (the daemonset controller of
// kube-controller-manager runs a pod on the kwok node): the primary DaemonSet runs v1, the
// user's DaemonSet is stopped by canopy's node selector, which a GitOps sync of the user's
// DaemonSet leaves alone; v2 is promoted (the primary's pod runs it, the canary is stopped
// again); v3, whose rollout webhook fails, is rolled back with the primary untouched.
func TestDaemonSetCanary(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	var failing atomic.Bool
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if failing.Load() {
			http.Error(w, "failing by the test", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(hook.Close)
	startOperator(t, manager.Options{WebhookAllowedCIDRs: "127.0.0.0/8"}) // the hook is on loopback

	gitOpsApply(t, newDaemonSet(ns, "agent", "example/agent:v1"))
	c := &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agent"},
		Spec: meshv1.CanarySpec{
			TargetRef: meshv1.TargetRef{APIVersion: "apps/v1", Kind: meshv1.KindDaemonSet, Name: "agent"},
			Service:   meshv1.CanaryService{Port: 9080},
			Analysis: meshv1.CanaryAnalysis{
				Interval: "1s", Threshold: 2, Iterations: ptr.To[int32](3),
				Webhooks: []meshv1.CanaryWebhook{{Name: "acceptance", Type: meshv1.WebhookRollout, URL: hook.URL}},
			},
		},
	}
	if err := env.Client.Create(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, ns, "agent", meshv1.PhaseInitialized)
	primaryPods, canaryPods := map[string]string{render.SelectorLabel: "agent-primary"}, map[string]string{"app": "agent"}
	waitDaemonSetPods(t, ns, primaryPods, "example/agent:v1", 1)
	primary := &appsv1.DaemonSet{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "agent-primary"}, primary); err != nil {
		t.Fatal(err)
	}
	if !metav1.IsControlledBy(primary, getCanary(t, ns, "agent")) {
		t.Errorf("the primary DaemonSet is not controlled by the Canary: %v", primary.OwnerReferences)
	}
	if ru := primary.Spec.UpdateStrategy.RollingUpdate; ru == nil || ru.MaxUnavailable.String() != "50%" {
		t.Errorf("the primary DaemonSet's update strategy %+v, want the target's maxUnavailable 50%%", primary.Spec.UpdateStrategy)
	}
	waitStopped(t, ns, "agent", canaryPods)

	// The user's DaemonSet as in Git again (a sync): canopy's stop stays, nothing conflicts.
	gitOpsApply(t, newDaemonSet(ns, "agent", "example/agent:v1"))
	waitStopped(t, ns, "agent", canaryPods)

	// A healthy revision, synced from Git, is promoted, having run as the canary.
	ran := watchReadyImages(t, ns, canaryPods)
	gitOpsApply(t, newDaemonSet(ns, "agent", "example/agent:v2"))
	c = waitPhase(t, ns, "agent", meshv1.PhaseSucceeded)
	if c.Status.LastPromotedRevision != c.Status.CurrentRevision {
		t.Fatalf("last promoted %q, current %q", c.Status.LastPromotedRevision, c.Status.CurrentRevision)
	}
	waitDaemonSetPods(t, ns, primaryPods, "example/agent:v2", 1)
	waitStopped(t, ns, "agent", canaryPods)
	if !ran.has("example/agent:v2") {
		t.Errorf("the canary DaemonSet never ran v2 Ready during the analysis (ran %v)", ran.list())
	}

	// A revision whose acceptance webhook fails is rolled back.
	failing.Store(true)
	gitOpsApply(t, newDaemonSet(ns, "agent", "example/agent:bad-v3"))
	c = waitPhase(t, ns, "agent", meshv1.PhaseFailed)
	if c.Status.FailedChecks < 2 {
		t.Fatalf("rolled back after %d failed checks, want the threshold 2", c.Status.FailedChecks)
	}
	waitStopped(t, ns, "agent", canaryPods)
	if n := readyPods(t, ns, primaryPods, "example/agent:v2"); n != 1 {
		t.Fatalf("%d primary pods Ready on v2 after the rollback, want 1 (primary untouched)", n)
	}
	if !ran.has("example/agent:bad-v3") {
		t.Errorf("the canary DaemonSet never ran bad-v3 during the analysis (ran %v)", ran.list())
	}

	// Git goes back to the promoted revision, and the Canary is deleted: the service is
	// handed back to the user's DaemonSet, started again, and the primary goes.
	// (A deletion seen before the sync waits for it: the target's revision is not promoted.)
	gitOpsApply(t, newDaemonSet(ns, "agent", "example/agent:v2"))
	if err := env.Client.Delete(t.Context(), getCanary(t, ns, "agent")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, func() error {
		for _, o := range []client.Object{&meshv1.Canary{}, &appsv1.DaemonSet{}} {
			name := "agent"
			if _, ok := o.(*appsv1.DaemonSet); ok {
				name = "agent-primary"
			}
			if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, o); !apierrors.IsNotFound(err) {
				return fmt.Errorf("%T %s still there (%v)", o, name, err)
			}
		}
		return nil
	})
	ds := &appsv1.DaemonSet{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "agent"}, ds); err != nil {
		t.Fatal(err)
	}
	if workloadStopped := ds.Spec.Template.Spec.NodeSelector[meshv1.LabelScaleToZero]; workloadStopped != "" {
		t.Errorf("the user's DaemonSet is still stopped after the hand-over: %v", ds.Spec.Template.Spec.NodeSelector)
	}
	waitDaemonSetPods(t, ns, canaryPods, "example/agent:v2", 1)
	svc := &corev1.Service{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "agent"}, svc); err != nil {
		t.Fatal(err)
	}
	if got := svc.Spec.Selector; len(got) != 1 || got["app"] != "agent" {
		t.Errorf("Service agent selects %v after the hand-over, want the user's pods (app=agent)", got)
	}
}

// imageLog records the images of the Ready pods a watch saw.
type imageLog struct {
	mu     sync.Mutex
	images map[string]bool
}

func (l *imageLog) has(image string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.images[image]
}

func (l *imageLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Sorted(maps.Keys(l.images))
}

// watchReadyImages records the image of every pod matching selector in ns that was Running
// and Ready, for as long as the test lasts.
func watchReadyImages(t *testing.T, ns string, selector map[string]string) *imageLog {
	t.Helper()
	l := &imageLog{images: map[string]bool{}}
	watchEach(t, ns, &corev1.PodList{}, func(o client.Object) {
		p, ok := o.(*corev1.Pod)
		if !ok || !labels.SelectorFromSet(selector).Matches(labels.Set(p.Labels)) || p.Status.Phase != corev1.PodRunning {
			return
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				l.mu.Lock()
				l.images[p.Spec.Containers[0].Image] = true
				l.mu.Unlock()
			}
		}
	})
	return l
}

// newDaemonSet is a DaemonSet labelled app=name serving on port 9080, as kept in Git.
func newDaemonSet(ns, name, image string) *appsv1.DaemonSet {
	podLabels := map[string]string{"app": name}
	return &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: podLabels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: podLabels},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromString("50%"))},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: name, Image: image, Ports: []corev1.ContainerPort{{ContainerPort: 9080}},
				}}},
			},
		},
	}
}

// gitOpsApply server-side applies ds as a GitOps tool does, without forcing: a conflict
// with canopy's fields would fail it.
func gitOpsApply(t *testing.T, ds *appsv1.DaemonSet) {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ds)
	if err != nil {
		t.Fatal(err)
	}
	delete(m, "status")
	unstructured.RemoveNestedField(m, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(m, "spec", "template", "metadata", "creationTimestamp")
	u := &unstructured.Unstructured{Object: m}
	if err := env.Client.Apply(t.Context(), client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(gitOpsManager)); err != nil {
		t.Fatalf("applying DaemonSet %s as %s: %v", ds.Name, gitOpsManager, err)
	}
}

// waitDaemonSetPods waits until n pods of selector run image and are Ready.
func waitDaemonSetPods(t *testing.T, ns string, selector map[string]string, image string, n int) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() error {
		if got := readyPods(t, ns, selector, image); got != n {
			return fmt.Errorf("%d pods of %v Ready on %s, want %d", got, selector, image, n)
		}
		return nil
	})
}

// waitStopped waits until the user's DaemonSet is stopped by canopy's node selector, owned
// by canopy's own field manager, and none of its pods remain.
func waitStopped(t *testing.T, ns, name string, selector map[string]string) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() error {
		ds := &appsv1.DaemonSet{}
		if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, ds); err != nil {
			return err
		}
		if v := ds.Spec.Template.Spec.NodeSelector[meshv1.LabelScaleToZero]; v != "true" {
			return fmt.Errorf("DaemonSet %s has node selector %v, want %s=true", name, ds.Spec.Template.Spec.NodeSelector, meshv1.LabelScaleToZero)
		}
		if m := selectorManager(ds); m != meshv1.FieldManagerScaleToZero {
			var fields []string
			for _, mf := range ds.ManagedFields {
				if mf.FieldsV1 != nil {
					fields = append(fields, mf.Manager+" "+string(mf.Operation)+": "+mf.FieldsV1.GetRawString())
				}
			}
			return fmt.Errorf("the stop selector is managed by %q, want %q; managed fields:\n%s", m, meshv1.FieldManagerScaleToZero, strings.Join(fields, "\n"))
		}
		pods := &corev1.PodList{}
		if err := env.Client.List(t.Context(), pods, client.InNamespace(ns), client.MatchingLabels(selector)); err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d pods of the stopped DaemonSet %s remain", len(pods.Items), name)
		}
		return nil
	})
}

// selectorManager names the field manager that owns the pod template's node selector (an
// atomic map: one manager owns all its keys).
func selectorManager(ds *appsv1.DaemonSet) string {
	const key = `"f:nodeSelector"`
	for _, mf := range ds.ManagedFields {
		if mf.FieldsV1 != nil && strings.Contains(mf.FieldsV1.GetRawString(), key) {
			return mf.Manager
		}
	}
	return ""
}
