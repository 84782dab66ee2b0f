package render

import (
	"fmt"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// PrimaryAutoscaler renders the primary's HorizontalPodAutoscaler "<name>-primary" from the
// user's autoscaler of the target (spec.autoscalerRef): the same bounds, metrics and
// behaviour, scaling the primary Deployment instead. The user's own autoscaler keeps
// scaling the target, which runs the canary during analysis; while the target is scaled to
// zero the HorizontalPodAutoscaler controller leaves it alone.
func PrimaryAutoscaler(c *meshv1.Canary, hpa *autoscalingv2.HorizontalPodAutoscaler) (*autoscalingv2.HorizontalPodAutoscaler, error) {
	if c == nil || hpa == nil {
		return nil, fmt.Errorf("render autoscaler: canary and autoscaler are required")
	}
	name := c.Spec.TargetRef.Name
	if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != name {
		return nil, &FieldError{
			Object: "HorizontalPodAutoscaler/" + hpa.Name, Field: "spec.scaleTargetRef", Reason: meshv1.ReasonInconsistent,
			Message: fmt.Sprintf("scales %s %s, not the Canary's target Deployment %s", ref.Kind, ref.Name, name),
		}
	}
	spec := *hpa.Spec.DeepCopy()
	spec.ScaleTargetRef = autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: PrimaryName(name)}
	return &autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta: metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: metav1.ObjectMeta{
			Name: PrimaryName(name), Namespace: c.Namespace,
			Labels: OwnerLabels(KindCanary, c.Namespace, c.Name),
		},
		Spec: spec,
	}, nil
}
