package analysis

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/budget"
)

// The pod-restarts check lists pods, uncached: list is all it needs.
// +kubebuilder:rbac:groups="",resources=pods,verbs=list

// CheckPodRestarts is the built-in check that needs no metrics system: the canary's pods'
// container restarts, OOM kills and readiness flaps since the rollout started, read from
// the apiserver. Its value is their sum; its default range is {max: 0}.
const CheckPodRestarts = "pod-restarts"

// maxPodsListed bounds one List of the canary's pods: a canary of more pods than this is
// judged on the first ones, and the message says so.
const maxPodsListed = 500

// oomKilled is the reason the kubelet gives a container the OOM killer ended.
const oomKilled = "OOMKilled"

// podCount is what pod-restarts found.
type podCount struct {
	pods, restarts, oomKills, flaps int
	// oomRestarts are the restarts whose last termination was an OOM kill (in restarts).
	oomRestarts int
	truncated   bool
}

func (c podCount) total() int { return c.restarts + c.oomKills + c.flaps }

func (c podCount) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d container restarts (%d after an OOM kill), %d OOM-killed containers not restarted, %d readiness flaps in %d pods",
		c.restarts, c.oomRestarts, c.oomKills, c.flaps, c.pods)
	if c.truncated {
		fmt.Fprintf(&b, " (only the first %d pods read)", maxPodsListed)
	}
	return b.String()
}

// podRestarts measures the pod-restarts check. The pods are the target Deployment's, found
// by its selector (the primary's pods never match it: the renderer relabels them). They are
// listed with Options.PodReader, an uncached reader: one List by label selector per check
// run, instead of a cache of every Pod in the cluster (see docs/concepts.md).
func (r *Runner) podRestarts(ctx context.Context, canary *meshv1.Canary) (float64, string, *checkFailure) {
	var target appsv1.Deployment
	key := types.NamespacedName{Namespace: canary.Namespace, Name: canary.Spec.TargetRef.Name}
	if err := r.reader.Get(ctx, key, &target); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, "", failf(meshv1.OutcomeNoData, "target Deployment %s not found", key)
		}
		return 0, "", failf(meshv1.OutcomeError, "reading the target Deployment %s: %s", key, err)
	}
	if target.Spec.Selector == nil {
		return 0, "", failf(meshv1.OutcomeError, "target Deployment %s has no selector", key)
	}
	sel, err := metav1.LabelSelectorAsSelector(target.Spec.Selector)
	if err != nil || sel.Empty() {
		return 0, "", failf(meshv1.OutcomeError, "target Deployment %s: selector selects no pods of its own: %v", key, err)
	}

	b := budget.FromContext(ctx)
	g, err := b.Grant(budget.Query, defaultQueryTimeout)
	if err != nil {
		return 0, "", failf(meshv1.OutcomeTimeout, "%s", err)
	}
	lctx, cancel := context.WithTimeout(ctx, g.Timeout)
	defer cancel()
	var pods corev1.PodList
	if err := r.opts.PodReader.List(lctx, &pods, client.InNamespace(canary.Namespace),
		client.MatchingLabelsSelector{Selector: sel}, client.Limit(maxPodsListed)); err != nil {
		if lctx.Err() != nil {
			return 0, "", failf(meshv1.OutcomeTimeout, "listing the canary's pods: %s", err)
		}
		return 0, "", failf(meshv1.OutcomeUnreachable, "listing the canary's pods: %s", err)
	}
	var since time.Time
	if canary.Status.RolloutStarted != nil {
		since = canary.Status.RolloutStarted.Time
	}
	c := countPods(pods.Items, since)
	c.truncated = pods.Continue != ""
	if c.pods == 0 {
		return 0, "", failf(meshv1.OutcomeNoData, "no pods match the selector of the target Deployment %s", key)
	}
	return float64(c.total()), c.String(), nil
}

// countPods counts, in pods, what happened since since (the rollout's start; zero: ever).
//
// A container's restartCount counts from its pod's creation: a pod created since the
// rollout started counts all of them; an older pod counts at most one, when its last
// termination ended since then, since the status says no more. A container terminated by
// the OOM killer and not yet restarted counts once more. A readiness flap is a pod that is
// not Ready now, turned so after one of its containers had started running, and since
// the rollout started: a flap that recovered between two checks is not seen, unless it
// restarted a container.
func countPods(pods []corev1.Pod, since time.Time) podCount {
	var c podCount
	after := func(t metav1.Time) bool { return !t.IsZero() && !t.Time.Before(since) }
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		c.pods++
		young := after(p.CreationTimestamp)
		var started time.Time
		for _, cs := range slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses) {
			last := cs.LastTerminationState.Terminated
			switch {
			case young:
				c.restarts += int(cs.RestartCount)
			case cs.RestartCount > 0 && last != nil && after(last.FinishedAt):
				c.restarts++
			}
			if cs.RestartCount > 0 && last != nil && last.Reason == oomKilled && after(last.FinishedAt) {
				c.oomRestarts++
			}
			if t := cs.State.Terminated; t != nil && t.Reason == oomKilled && after(t.FinishedAt) {
				c.oomKills++
			}
			if r := cs.State.Running; r != nil && (started.IsZero() || r.StartedAt.Time.Before(started)) {
				started = r.StartedAt.Time
			}
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionFalse && !started.IsZero() &&
				cond.LastTransitionTime.Time.After(started) && after(cond.LastTransitionTime) {
				c.flaps++
			}
		}
	}
	return c
}
