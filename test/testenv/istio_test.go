package testenv_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"canopy.dev/canopy/test/testenv"
)

// TestIstiodInTheLocalCluster starts a local cluster with istiod and checks what the test
// bed promises of it: its webhook refuses what Istio's validation refuses (and the CRD
// schema does not), its injector puts istio-proxy into the pods of a labeled namespace, the
// ingress gateway runs with Istio's gateway template, and istioctl analyze answers.
func TestIstiodInTheLocalCluster(t *testing.T) {
	testenv.SkipIfShort(t)
	e, err := testenv.Start(testenv.Options{LocalCluster: true, Istio: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			var logs strings.Builder
			e.DumpLogs(&logs)
			t.Log(logs.String())
		}
		if err := e.Stop(); err != nil {
			t.Error(err)
		}
	})
	ctx := t.Context()
	ns := e.CreateNamespace(t)

	// A route whose weights do not add up to 100: the CRD's schema takes it, Istio does not.
	vs := &istionetv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"}}
	vs.Spec.Hosts = []string{"reviews"}
	vs.Spec.Http = []*networkingv1alpha3.HTTPRoute{{Route: []*networkingv1alpha3.HTTPRouteDestination{
		{Destination: &networkingv1alpha3.Destination{Host: "reviews-primary"}, Weight: 90},
		{Destination: &networkingv1alpha3.Destination{Host: "reviews-canary"}, Weight: -5},
	}}}
	err = e.Client.Create(ctx, vs)
	if err == nil || !strings.Contains(err.Error(), "validation.istio.io") {
		t.Errorf("a VirtualService with a negative weight: got %v, want istiod's webhook to refuse it", err)
	}

	labels := map[string]string{"app": "reviews", "version": "v1"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "reviews", Image: "reviews:v1"}}},
			},
		},
	}
	if err := e.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct{ ns, app string }{{ns, "reviews"}, {testenv.IstioNamespace, "istio-ingressgateway"}} {
		pod := waitForPod(t, e, w.ns, w.app)
		if !slices.ContainsFunc(append(pod.Spec.InitContainers, pod.Spec.Containers...), func(c corev1.Container) bool { return c.Name == "istio-proxy" }) {
			t.Errorf("pod %s/%s has no istio-proxy container: %v", pod.Namespace, pod.Name, pod.Spec.Containers)
		}
		if pod.Annotations["sidecar.istio.io/status"] == "" {
			t.Errorf("pod %s/%s was not injected (no sidecar.istio.io/status annotation)", pod.Namespace, pod.Name)
		}
	}

	msgs, err := e.AnalyzeIstio(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		t.Errorf("istioctl analyze -n %s: %s", ns, m)
	}
}

// waitForPod waits for a Running pod with label app in namespace ns.
func waitForPod(t *testing.T, e *testenv.Env, ns, app string) *corev1.Pod {
	t.Helper()
	var found *corev1.Pod
	testenv.Eventually(t, time.Minute, func() error {
		pods := &corev1.PodList{}
		if err := e.Client.List(t.Context(), pods, client.InNamespace(ns), client.MatchingLabels{"app": app}); err != nil {
			return err
		}
		for i := range pods.Items {
			if pods.Items[i].Status.Phase == corev1.PodRunning {
				found = &pods.Items[i]
				return nil
			}
		}
		return fmt.Errorf("no Running pod of %s/%s among %d", ns, app, len(pods.Items))
	})
	return found
}
