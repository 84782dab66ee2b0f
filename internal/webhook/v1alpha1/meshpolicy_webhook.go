package v1alpha1

import (
	"context"

	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
)

// +kubebuilder:webhook:path=/validate-mesh-canopy-dev-v1alpha1-meshpolicy,mutating=false,failurePolicy=fail,sideEffects=None,groups=mesh.canopy.dev,resources=meshpolicies,verbs=create;update,versions=v1alpha1,name=vmeshpolicy-v1alpha1.mesh.canopy.dev,admissionReviewVersions=v1

// MeshPolicyValidator refuses MeshPolicies the renderer refuses without looking at the
// target Service: values wrong on their own (durations, regular expressions, header
// names, service accounts, paths, ports listed twice) and settings that contradict each
// other (defaultDeny with DENY, TLS origination without a TLS port, STATIC resolution,
// two routes of one name). The controller renders with the Service and also checks what
// depends on it, and on other objects (its ports, its selector, DestinationRules of other
// authors).
type MeshPolicyValidator struct{}

// ValidateCreate validates a new MeshPolicy.
func (v *MeshPolicyValidator) ValidateCreate(_ context.Context, p *meshv1.MeshPolicy) (admission.Warnings, error) {
	return v.validate(p)
}

// ValidateUpdate validates a changed spec; metadata changes and updates of a policy
// being deleted are let through (see CanaryValidator.ValidateUpdate).
func (v *MeshPolicyValidator) ValidateUpdate(_ context.Context, old, p *meshv1.MeshPolicy) (admission.Warnings, error) {
	if !p.DeletionTimestamp.IsZero() || equality.Semantic.DeepEqual(old.Spec, p.Spec) {
		return nil, nil
	}
	return v.validate(p)
}

// ValidateDelete lets every deletion through.
func (v *MeshPolicyValidator) ValidateDelete(context.Context, *meshv1.MeshPolicy) (admission.Warnings, error) {
	return nil, nil
}

func (v *MeshPolicyValidator) validate(p *meshv1.MeshPolicy) (admission.Warnings, error) {
	warnings, err := render.ValidateMeshPolicy(p)
	return renderWarnings(warnings), invalid("MeshPolicy", p.Name, renderErrors(err))
}
