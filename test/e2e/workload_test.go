package e2e

import (
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"canopy.dev/canopy/test/testenv"
)

// TestDeploymentBecomesReady proves the local cluster runs workloads: the
// controller-manager creates a ReplicaSet and Pods, the scheduler binds them to kwok's
// Node, kwok reports them Running and Ready, and the Service gets an EndpointSlice
// listing the three Pods as ready.
func TestDeploymentBecomesReady(t *testing.T) {
	testenv.SkipIfShort(t)
	ctx := t.Context()
	ns := env.CreateNamespace(t)
	labels := map[string]string{"app": "podinfo"}

	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "podinfo",
					Image: "ghcr.io/stefanprodan/podinfo:6.9.0", // never pulled: kwok runs nothing
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 9898}},
				}}},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 9898, TargetPort: intstr.FromString("http")}},
		},
	}
	start := time.Now()
	for _, obj := range []client.Object{svc, deploy} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatalf("creating %T: %v", obj, err)
		}
	}

	testenv.Eventually(t, 2*time.Minute, func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(deploy), deploy); err != nil {
			return err
		}
		if s := deploy.Status; s.ObservedGeneration != deploy.Generation || s.ReadyReplicas != 3 || s.UpdatedReplicas != 3 {
			return fmt.Errorf("deployment status: %+v", s)
		}
		return nil
	})
	t.Logf("3 replicas ready %s after creation", time.Since(start).Round(time.Millisecond))

	var pods corev1.PodList
	if err := env.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
		t.Fatal(err)
	}
	for _, pod := range pods.Items {
		if pod.Spec.NodeName != env.NodeName || pod.Status.Phase != corev1.PodRunning || !podReady(&pod) {
			t.Errorf("pod %s: node %q, phase %s, ready %v", pod.Name, pod.Spec.NodeName, pod.Status.Phase, podReady(&pod))
		}
	}

	testenv.Eventually(t, 2*time.Minute, func() error {
		var slices discoveryv1.EndpointSliceList
		err := env.Client.List(ctx, &slices, client.InNamespace(ns),
			client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name})
		if err != nil {
			return err
		}
		ready := 0
		for _, s := range slices.Items {
			for _, ep := range s.Endpoints {
				if ptr.Deref(ep.Conditions.Ready, false) && len(ep.Addresses) > 0 {
					ready++
				}
			}
		}
		if ready != 3 {
			return fmt.Errorf("%d EndpointSlices with %d ready endpoints, want 3", len(slices.Items), ready)
		}
		return nil
	})
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
