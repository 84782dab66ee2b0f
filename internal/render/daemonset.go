package render

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// A DaemonSet target is delivered blue/green, as Flagger does: the canary DaemonSet runs a
// pod on every node its template selects or none at all, so no share of the canary's pods
// can follow a share of the traffic. The settings that ask for one are refused.

// checkDaemonSet refuses, for a DaemonSet target, the settings of a weighted rollout (and
// an autoscaler, which a DaemonSet does not have).
func (r *canaryRenderer) checkDaemonSet() {
	c := r.c
	if !c.Spec.TargetRef.IsDaemonSet() {
		return
	}
	why := "a DaemonSet target is delivered blue/green (analysis.iterations, with match for A/B or mirror): it runs a pod on every node or none, never a share of them"
	a := &c.Spec.Analysis
	if a.StepWeight != nil {
		r.e.invalid("spec.analysis.stepWeight", "is not supported: %s", why)
	}
	if len(a.StepWeights) > 0 {
		r.e.invalid("spec.analysis.stepWeights", "is not supported: %s", why)
	}
	if a.StepWeightPromotion != nil {
		r.e.invalid("spec.analysis.stepWeightPromotion", "is not supported: %s; the primary DaemonSet takes all traffic once it runs the promoted revision", why)
	}
	for i, s := range a.Steps {
		switch {
		case s.SetWeight != nil:
			r.e.invalid(fmt.Sprintf("spec.analysis.steps[%d].setWeight", i), "is not supported: %s", why)
		case s.SetCanaryScale != nil:
			r.e.invalid(fmt.Sprintf("spec.analysis.steps[%d].setCanaryScale", i), "is not supported: %s", why)
		}
	}
	if c.Spec.AutoscalerRef != nil {
		r.e.invalid("spec.autoscalerRef", "is not supported: a DaemonSet runs a pod per node and has no autoscaler")
	}
}

// AsDaemonSet is the primary of a DaemonSet target: the primary Deployment Primary renders
// (its metadata, selector and pod template, with canopy's revision), as a DaemonSet. It
// rolls its pods as the target does when target (the DaemonSet as stored; nil: unknown) has
// a rolling update strategy; otherwise (OnDelete, which would never roll a promotion out,
// or unknown) by the API's default, a rolling update one node at a time.
func AsDaemonSet(d *appsv1.Deployment, target Object) *appsv1.DaemonSet {
	var strategy appsv1.DaemonSetUpdateStrategy
	if ds, ok := target.(*appsv1.DaemonSet); ok && ds.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType {
		strategy = *ds.Spec.UpdateStrategy.DeepCopy()
	}
	return &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: meshv1.KindDaemonSet},
		ObjectMeta: *d.ObjectMeta.DeepCopy(),
		Spec: appsv1.DaemonSetSpec{
			Selector:             d.Spec.Selector.DeepCopy(),
			Template:             *d.Spec.Template.DeepCopy(),
			UpdateStrategy:       strategy,
			MinReadySeconds:      d.Spec.MinReadySeconds,
			RevisionHistoryLimit: d.Spec.RevisionHistoryLimit,
		},
	}
}
