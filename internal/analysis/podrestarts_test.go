package analysis

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

func at(d time.Duration) metav1.Time { return metav1.NewTime(testNow.Add(d)) }

// pod is a running pod of the canary created at created, its one container started at
// started with restarts restarts.
func pod(name string, created, started time.Duration, restarts int32) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, CreationTimestamp: at(created), Labels: map[string]string{"app": "reviews"}},
		Status: corev1.PodStatus{
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: at(started + time.Second)}},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "app", RestartCount: restarts, Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at(started)}},
			}},
		},
	}
}

func TestCountPods(t *testing.T) {
	since := testNow
	healthy := pod("healthy", time.Minute, time.Minute, 0)

	crashing := pod("crashing", time.Minute, 3*time.Minute, 3)
	crashing.Status.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", FinishedAt: at(3 * time.Minute)}

	oomRestarted := pod("oom-restarted", time.Minute, 3*time.Minute, 1)
	oomRestarted.Status.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 137, Reason: oomKilled, FinishedAt: at(3 * time.Minute)}

	oomDown := pod("oom-down", time.Minute, time.Minute, 0)
	oomDown.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: oomKilled, FinishedAt: at(2 * time.Minute)}}

	// Ready, then not: the Ready condition turned False after the container started.
	flapping := pod("flapping", time.Minute, time.Minute, 0)
	flapping.Status.Conditions[0] = corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: at(4 * time.Minute)}
	// Not ready yet: Ready has been False since before the container started.
	starting := pod("starting", time.Minute, 2*time.Minute, 0)
	starting.Status.Conditions[0] = corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: at(time.Minute)}

	// Created before the rollout with restarts from then: only a restart since counts, once.
	old := pod("old", -time.Hour, 2*time.Minute, 7)
	old.Status.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1, FinishedAt: at(2 * time.Minute)}
	oldQuiet := pod("old-quiet", -time.Hour, -time.Hour, 5)
	oldQuiet.Status.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1, FinishedAt: at(-30 * time.Minute)}

	deleting := pod("deleting", time.Minute, time.Minute, 9)
	deleting.DeletionTimestamp = ptr.To(at(5 * time.Minute))

	for _, tc := range []struct {
		name string
		pods []corev1.Pod
		want podCount
	}{
		{"healthy", []corev1.Pod{healthy}, podCount{pods: 1}},
		{"crash loop", []corev1.Pod{healthy, crashing}, podCount{pods: 2, restarts: 3}},
		{"OOM kill, restarted", []corev1.Pod{oomRestarted}, podCount{pods: 1, restarts: 1, oomRestarts: 1}},
		{"OOM kill, not restarted", []corev1.Pod{oomDown}, podCount{pods: 1, oomKills: 1}},
		{"readiness flap", []corev1.Pod{flapping, starting}, podCount{pods: 2, flaps: 1}},
		{"pods older than the rollout", []corev1.Pod{old, oldQuiet}, podCount{pods: 2, restarts: 1}},
		{"terminating pods", []corev1.Pod{deleting}, podCount{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := countPods(tc.pods, since); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPodRestartsCheck(t *testing.T) {
	target := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "reviews"},
		Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "reviews"}}},
	}
	crashing := pod("reviews-1", time.Minute, 3*time.Minute, 2)
	// The primary's pod restarts too, but is not the canary's.
	primary := pod("reviews-primary-1", time.Minute, 3*time.Minute, 4)
	primary.Labels = map[string]string{"app": "reviews-primary"}

	c := testCanary(meshv1.CanaryMetric{Name: CheckPodRestarts})
	c.Status.RolloutStarted = ptr.To(metav1.NewTime(testNow))

	r := newTestRunner(t, "", Options{}, target, &crashing, &primary)
	got := r.Run(context.Background(), c)[0]
	if got.Outcome != meshv1.OutcomeFail || got.Value != "2" || got.Threshold != "<= 0" {
		t.Fatalf("got %+v, want Fail at 2 against the default <= 0", got)
	}
	if !strings.Contains(got.Message, "2 container restarts") {
		t.Errorf("message %q does not say what was counted", got.Message)
	}

	// A range of its own tolerates two restarts.
	c.Spec.Analysis.Metrics[0].ThresholdRange = meshv1.ThresholdRange{Max: ptr.To(2.0)}
	if got := r.Run(context.Background(), c)[0]; got.Outcome != meshv1.OutcomePass {
		t.Errorf("got %+v, want Pass with max 2", got)
	}

	// No pod of the canary: nothing was measured.
	empty := newTestRunner(t, "", Options{}, target)
	if got := empty.Run(context.Background(), c)[0]; got.Outcome != meshv1.OutcomeNoData {
		t.Errorf("got %+v, want NoData without pods", got)
	}
}
