package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

// A crash-looping canary is rolled back by the built-in pod-restarts check alone, with no
// Prometheus anywhere: the operator runs without --prometheus-address and the check reads
// the canary's pods from the apiserver. A healthy revision before it is promoted, the check
// passing at 0.
//
// kwok makes pods Running and Ready once (its pod-ready stage matches only Pending pods
// that are not Ready) and never touches their status again, so the test plays the kubelet
// of a crash loop by writing the restarts and an OOM kill into the canary pods' status.
func TestPodRestartsRollsBackACrashLoopingCanary(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	startOperator(t, manager.Options{}) // the real analysis, no Prometheus
	c := newCanary(ns, "reviews", 10, 50)
	c.Spec.Analysis.Interval = "3s"
	c.Spec.Analysis.Metrics = []meshv1.CanaryMetric{{Name: "pod-restarts"}}
	deployReviews(t, c)

	setImage(t, ns, "reviews", "bookinfo/reviews:v2")
	good := waitPhase(t, ns, "reviews", meshv1.PhaseSucceeded)
	if chk := findCheck(good, "pod-restarts"); chk == nil || chk.Outcome != meshv1.OutcomePass || chk.Value != "0" || chk.Threshold != "<= 0" {
		t.Fatalf("pod-restarts of a healthy canary: %+v", chk)
	}

	setImage(t, ns, "reviews", "bookinfo/reviews:bad-v3")
	untilRolledBack(t, ns, "bookinfo/reviews:bad-v3", -1, crashLoop)

	failed := waitPhase(t, ns, "reviews", meshv1.PhaseFailed)
	chk := findCheck(failed, "pod-restarts")
	if chk == nil || chk.Outcome != meshv1.OutcomeFail || chk.Value != "3" {
		t.Fatalf("pod-restarts of the crash-looping canary: %+v", chk)
	}
	if !strings.Contains(chk.Message, "3 container restarts (1 after an OOM kill)") {
		t.Errorf("the check's message %q does not say what it counted", chk.Message)
	}
	if failed.Status.LastFailedRevision != failed.Status.CurrentRevision {
		t.Fatalf("revision %s not marked failed: %+v", failed.Status.CurrentRevision, failed.Status)
	}
	promoted := condition(t, failed, meshv1.ConditionPromoted)
	if promoted.Reason != meshv1.ReasonCheckFailed || !strings.Contains(promoted.Message, "pod-restarts is 3") {
		t.Fatalf("Promoted condition %+v does not name the check", promoted)
	}
	if n := readyPods(t, ns, map[string]string{"app": "reviews-primary"}, "bookinfo/reviews:v2"); n != 1 {
		t.Fatalf("%d primary pods on v2 after the rollback, want 1", n)
	}
}

// A canary one of whose pods turns unready is rolled back by pod-restarts as soon as it
// fails once, with failureLimit 0, though the Canary's threshold is 5: the other pod keeps
// the canary available (canaryReadyThreshold 50), so the analysis goes on and sees the flap.
func TestPodRestartsSeesAReadinessFlap(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	startOperator(t, manager.Options{})
	c := newCanary(ns, "reviews", 10, 50)
	c.Spec.Analysis.Interval, c.Spec.Analysis.Threshold, c.Spec.Analysis.CanaryReadyThreshold = "3s", 5, 50
	c.Spec.Analysis.Metrics = []meshv1.CanaryMetric{{Name: "pod-restarts", FailureLimit: ptr.To[int32](0)}}
	if err := env.Client.Create(t.Context(), newDeployment(ns, "reviews", "bookinfo/reviews:v1", 2)); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logCanary(t, ns, "reviews")
		}
	})
	waitPhase(t, ns, "reviews", meshv1.PhaseInitialized)

	setImage(t, ns, "reviews", "bookinfo/reviews:flaky-v2")
	untilRolledBack(t, ns, "bookinfo/reviews:flaky-v2", 1, turnUnready)

	failed := waitPhase(t, ns, "reviews", meshv1.PhaseFailed)
	chk := findCheck(failed, "pod-restarts")
	if chk == nil || chk.Outcome != meshv1.OutcomeFail || chk.Value != "1" || chk.Failures != 1 ||
		!strings.Contains(chk.Message, "1 readiness flaps in 2 pods") {
		t.Fatalf("pod-restarts of the flapping canary: %+v", chk)
	}
	if failed.Status.FailedChecks != 1 {
		t.Fatalf("rolled back after %d failed checks, want 1 (failureLimit 0)", failed.Status.FailedChecks)
	}
	if promoted := condition(t, failed, meshv1.ConditionPromoted); !strings.Contains(promoted.Message, "failed 1 times, more than its failureLimit 0") {
		t.Fatalf("Promoted condition %+v does not name the limit", promoted)
	}
}

// untilRolledBack plays the kubelet for the canary's pods running image until the Canary
// rolls back: play is applied once to each such pod (to the first most of them; -1: to
// all) once it is Ready and its container has run for over a second, so that what play
// writes is later than the start, at the status' one-second precision.
func untilRolledBack(t *testing.T, ns, image string, most int, play func(*testing.T, *corev1.Pod) error) {
	t.Helper()
	played := map[string]bool{}
	testenv.Eventually(t, 2*time.Minute, func() error {
		if p := getCanary(t, ns, "reviews").Status.Phase; p == meshv1.PhaseFailed || p == meshv1.PhaseRollingBack {
			return nil
		}
		pods := &corev1.PodList{}
		if err := env.Client.List(t.Context(), pods, client.InNamespace(ns), client.MatchingLabels{"app": "reviews"}); err != nil {
			return err
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if played[p.Name] || (most >= 0 && len(played) >= most) || p.Spec.Containers[0].Image != image || !isReady(p) {
				continue
			}
			if run := p.Status.ContainerStatuses[0].State.Running; run == nil || time.Since(run.StartedAt.Time) < 2*time.Second {
				continue
			}
			if err := play(t, p); err != nil {
				return err
			}
			played[p.Name] = true
		}
		return fmt.Errorf("not rolled back yet (pods played: %d)", len(played))
	})
}

// turnUnready writes into a Running pod's status what the kubelet writes when its
// readiness probe fails: the container and the pod are no longer Ready. The pod stays
// Running, so kwok leaves it alone.
func turnUnready(t *testing.T, p *corev1.Pod) error {
	t.Helper()
	patch := client.MergeFrom(p.DeepCopy())
	now := metav1.Now()
	p.Status.ContainerStatuses[0].Ready = false
	for i := range p.Status.Conditions {
		if c := &p.Status.Conditions[i]; c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
			c.Status, c.LastTransitionTime, c.Reason = corev1.ConditionFalse, now, "ContainersNotReady"
		}
	}
	if err := env.Client.Status().Patch(t.Context(), p, patch); err != nil {
		return fmt.Errorf("turning pod %s unready: %w", p.Name, err)
	}
	return nil
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// crashLoop writes into a Running pod's status what the kubelet writes after its
// container restarted three times, the last after the OOM killer ended it. The pod stays
// Running and Ready, so kwok leaves it alone.
func crashLoop(t *testing.T, p *corev1.Pod) error {
	t.Helper()
	patch := client.MergeFrom(p.DeepCopy())
	now := metav1.Now()
	cs := &p.Status.ContainerStatuses[0]
	cs.RestartCount = 3
	cs.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: 137, Reason: "OOMKilled", StartedAt: now, FinishedAt: now,
	}}
	cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}
	if err := env.Client.Status().Patch(t.Context(), p, patch); err != nil {
		return fmt.Errorf("writing the crash loop into pod %s: %w", p.Name, err)
	}
	return nil
}
