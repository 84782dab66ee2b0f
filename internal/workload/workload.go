// Package workload observes and scales the Deployments of a rollout: the user's target
// (which runs the canary during analysis) and the generated primary.
package workload

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Ready reports whether a Deployment has rolled out its current template and all its desired
// replicas are available, and if not, why, in words for a status message.
func Ready(d *appsv1.Deployment) (bool, string) { return ReadyAt(d, 100) }

// ReadyAt is Ready with a readiness threshold: the Deployment counts as ready once every
// replica runs its current template and percent of them (rounded up, at least one) are
// available, as Flagger's primaryReadyThreshold and canaryReadyThreshold mean it. A
// percent outside 1..100 is read as 100.
func ReadyAt(d *appsv1.Deployment, percent int32) (bool, string) {
	if d == nil {
		return false, "Deployment does not exist yet"
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	switch {
	case st.ObservedGeneration < d.Generation:
		return false, fmt.Sprintf("Deployment %s: waiting for the rollout to be observed", d.Name)
	case st.UpdatedReplicas < want:
		return false, fmt.Sprintf("Deployment %s: %d of %d replicas updated", d.Name, st.UpdatedReplicas, want)
	case st.Replicas > st.UpdatedReplicas:
		return false, fmt.Sprintf("Deployment %s: %d old replicas pending termination", d.Name, st.Replicas-st.UpdatedReplicas)
	case st.AvailableReplicas < available(want, percent):
		return false, fmt.Sprintf("Deployment %s: %d of %d updated replicas available (%d needed)", d.Name, st.AvailableReplicas, want, available(want, percent))
	}
	return true, ""
}

// available is how many of want replicas percent asks for: rounded up, at least one when
// any is wanted.
func available(want, percent int32) int32 {
	if percent < 1 || percent > 100 {
		percent = 100
	}
	n := (int64(want)*int64(percent) + 99) / 100
	return int32(n)
}

// Replicas returns a Deployment's desired replica count (1 when unset, as the API defaults).
func Replicas(d *appsv1.Deployment) int32 {
	if d == nil || d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

// Scale sets a Deployment's replica count through the scale subresource, so that canopy never
// writes any other field of a Deployment the user keeps in Git. It does nothing when the count
// is already right.
func Scale(ctx context.Context, c client.Client, d *appsv1.Deployment, replicas int32) error {
	if d.Spec.Replicas != nil && *d.Spec.Replicas == replicas {
		return nil
	}
	scale := &autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: replicas}}
	if err := c.SubResource("scale").Update(ctx, d, client.WithSubResourceBody(scale)); err != nil {
		return fmt.Errorf("scaling Deployment %s to %d: %w", d.Name, replicas, err)
	}
	// The answer is the Scale, whose version is the Deployment's after the write.
	d.Spec.Replicas, d.ResourceVersion = &replicas, scale.ResourceVersion
	return nil
}
