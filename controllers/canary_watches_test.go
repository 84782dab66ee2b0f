package controllers

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// A Deployment's update wakes its Canary only when it changes what the Canary decides on.
func TestDeploymentUpdatesThatWakeACanary(t *testing.T) {
	rolling := func() *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "reviews", Generation: 2, Annotations: map[string]string{"mesh.canopy.dev/revision": "a"}},
			Spec:       appsv1.DeploymentSpec{Replicas: ptr.To[int32](2)},
			Status:     appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 3, UpdatedReplicas: 1, AvailableReplicas: 2},
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*appsv1.Deployment)
		wakes  bool
	}{
		{"a replica count of the rollout", func(d *appsv1.Deployment) { d.Status.UpdatedReplicas = 2 }, false},
		// It may cross a readiness threshold below 100% (analysis.*ReadyThreshold).
		{"more replicas available, not all", func(d *appsv1.Deployment) { d.Status.AvailableReplicas = 1 }, true},
		{"a condition", func(d *appsv1.Deployment) {
			d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Reason: "ReplicaSetUpdated"}}
		}, false},
		{"ready", func(d *appsv1.Deployment) { d.Status.Replicas, d.Status.UpdatedReplicas = 2, 2 }, true},
		{"a new spec", func(d *appsv1.Deployment) { d.Generation = 3 }, true},
		{"an annotation", func(d *appsv1.Deployment) { d.Annotations["mesh.canopy.dev/revision"] = "b" }, true},
		{"a label", func(d *appsv1.Deployment) { d.Labels = map[string]string{"team": "books"} }, true},
		{"deleted", func(d *appsv1.Deployment) { now := metav1.Now(); d.DeletionTimestamp = &now }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := rolling()
			tc.change(cur)
			if got := deploymentChanged.Update(event.UpdateEvent{ObjectOld: rolling(), ObjectNew: cur}); got != tc.wakes {
				t.Fatalf("wakes the Canary: %v, want %v", got, tc.wakes)
			}
		})
	}
}
