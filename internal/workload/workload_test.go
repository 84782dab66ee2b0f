package workload

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"
)

func TestReadyAt(t *testing.T) {
	d := func(want, updated, available int32) *appsv1.Deployment {
		return &appsv1.Deployment{
			Spec:   appsv1.DeploymentSpec{Replicas: ptr.To(want)},
			Status: appsv1.DeploymentStatus{Replicas: updated, UpdatedReplicas: updated, AvailableReplicas: available},
		}
	}
	for _, c := range []struct {
		d       *appsv1.Deployment
		percent int32
		want    bool
	}{
		{d(100, 100, 100), 100, true},
		{d(100, 100, 99), 100, false},
		{d(100, 100, 90), 90, true},
		{d(100, 100, 89), 90, false},
		{d(3, 3, 2), 50, true},   // 1.5 rounds up to 2
		{d(3, 3, 1), 50, false},  //
		{d(1, 1, 0), 1, false},   // at least one
		{d(4, 3, 3), 50, false},  // every replica must run the current template first
		{d(4, 4, 4), 0, true},    // outside 1..100: 100
		{d(4, 4, 3), 101, false}, // outside 1..100: 100
	} {
		if got, msg := ReadyAt(c.d, c.percent); got != c.want {
			t.Errorf("ReadyAt(%d wanted, %d updated, %d available, %d%%) = %t (%s), want %t",
				*c.d.Spec.Replicas, c.d.Status.UpdatedReplicas, c.d.Status.AvailableReplicas, c.percent, got, msg, c.want)
		}
	}
}
