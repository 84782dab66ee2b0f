package workload

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

func agent(st appsv1.DaemonSetStatus, nodeSelector map[string]string) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "apps", Generation: 2},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec:       corev1.PodSpec{NodeSelector: nodeSelector, Containers: []corev1.Container{{Name: "agent", Image: "agent:v1"}}},
			},
		},
		Status: st,
	}
}

// A DaemonSet is ready when its spec is observed and every node it is scheduled to runs an
// updated, ready pod; canopy's stop selector is no part of its template as canopy reads it.
func TestDaemonSetView(t *testing.T) {
	all := appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, UpdatedNumberScheduled: 3, NumberReady: 3, NumberAvailable: 3}
	for _, c := range []struct {
		name     string
		st       func(*appsv1.DaemonSetStatus)
		ready    bool
		replicas int32
	}{
		{"every node updated and ready", func(*appsv1.DaemonSetStatus) {}, true, 3},
		{"the spec not observed yet", func(s *appsv1.DaemonSetStatus) { s.ObservedGeneration = 1 }, false, 3},
		{"a node not updated", func(s *appsv1.DaemonSetStatus) { s.UpdatedNumberScheduled = 2 }, false, 3},
		{"a pod not ready", func(s *appsv1.DaemonSetStatus) { s.NumberReady, s.NumberAvailable = 2, 2 }, false, 3},
		{"scheduled to no node", func(s *appsv1.DaemonSetStatus) { *s = appsv1.DaemonSetStatus{ObservedGeneration: 2} }, false, 1},
	} {
		st := all
		c.st(&st)
		v := View(agent(st, nil))
		if ready, why := Ready(v); ready != c.ready || Replicas(v) != c.replicas {
			t.Errorf("%s: ready %t (%s) at %d replicas, want %t at %d", c.name, ready, why, Replicas(v), c.ready, c.replicas)
		}
	}

	running := agent(all, map[string]string{"disk": "ssd"})
	stopped := agent(all, map[string]string{"disk": "ssd", meshv1.LabelScaleToZero: "true"})
	if Stopped(running) || !Stopped(stopped) {
		t.Fatalf("Stopped: running %t, stopped %t", Stopped(running), Stopped(stopped))
	}
	if n := Replicas(View(stopped)); n != 0 {
		t.Errorf("a stopped DaemonSet runs %d replicas, want 0", n)
	}
	if a, b := View(running).Spec.Template, View(stopped).Spec.Template; !equality.Semantic.DeepEqual(a, b) {
		t.Errorf("stopping changes the template canopy reads (and so its revision):\n%v\n%v", a, b)
	}
	if got := View(stopped).Spec.Template.Spec.NodeSelector; len(got) != 1 || got["disk"] != "ssd" {
		t.Errorf("the user's node selector as read: %v, want disk=ssd", got)
	}
	if stopped.Spec.Template.Spec.NodeSelector[meshv1.LabelScaleToZero] != "true" {
		t.Error("View changed the DaemonSet it reads")
	}
}
