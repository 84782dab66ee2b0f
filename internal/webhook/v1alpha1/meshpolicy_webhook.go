package v1alpha1

import (
	"k8s.io/apimachinery/pkg/util/validation/field"
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
// It also refuses what the operator's Tenancy does not let the policy's namespace claim.
type MeshPolicyValidator struct {
	Tenancy *render.Tenancy
	// Providers checks spec.rollout.provider as a Canary's analysis.provider.
	Providers providerValidator
}

// Validate refuses a MeshPolicy, naming every field at fault, and passes on the
// renderer's warnings.
func (v *MeshPolicyValidator) Validate(p *meshv1.MeshPolicy) (admission.Warnings, error) {
	warnings, err := render.ValidateMeshPolicy(p)
	errs := append(renderErrors(err), renderErrors(v.Tenancy.CheckMeshPolicy(p))...)
	ws := renderWarnings(warnings)
	if ro := p.Spec.Rollout; ro != nil && v.Providers.policy != nil {
		errs = append(errs, v.Providers.validate(field.NewPath("spec", "rollout", "provider"), ro.Provider, &ws)...)
	}
	return ws, invalid("MeshPolicy", p.Name, errs)
}
