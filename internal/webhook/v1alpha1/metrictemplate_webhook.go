package v1alpha1

import (
	"errors"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/analysis"
	"canopy.dev/canopy/internal/hooks"
)

// +kubebuilder:webhook:path=/validate-mesh-canopy-dev-v1alpha1-metrictemplate,mutating=false,failurePolicy=fail,sideEffects=None,groups=mesh.canopy.dev,resources=metrictemplates,verbs=create;update,versions=v1alpha1,name=vmetrictemplate-v1alpha1.mesh.canopy.dev,admissionReviewVersions=v1

// MetricTemplateValidator refuses a template whose query does not render or is not
// in its provider's language (analysis.ValidateFor), a provider timeout that does not parse, a provider
// address the URL policy refuses and credentials for a host they may not go to.
type MetricTemplateValidator struct {
	Providers providerValidator
}

// NewMetricTemplateValidator is the validator the admission webhook runs, for the
// MetricTemplate controller to judge stored templates by the same rules (a template stored
// before a rule existed, or under other operator flags). Nil policies: the defaults.
func NewMetricTemplateValidator(policy *hooks.Policy, credentials *hooks.CredentialPolicy) *MetricTemplateValidator {
	if policy == nil {
		policy = &hooks.Policy{}
	}
	return &MetricTemplateValidator{Providers: providerValidator{policy: policy, credentials: credentials}}
}

// Validate refuses a MetricTemplate, naming every field at fault.
func (v *MetricTemplateValidator) Validate(t *meshv1.MetricTemplate) (admission.Warnings, error) {
	var ws admission.Warnings
	var errs field.ErrorList
	query := field.NewPath("spec", "query")
	if err := analysis.ValidateFor(t.Spec.Provider.Type, t.Spec.Query); err != nil {
		detail := err.Error()
		var te *analysis.TemplateError
		if errors.As(err, &te) {
			detail = "the template does not render: " + te.Msg
		}
		errs = append(errs, &field.Error{Type: field.ErrorTypeInvalid, Field: query.String(), BadValue: field.OmitValueType{}, Detail: detail})
	}
	errs = append(errs, v.Providers.validate(field.NewPath("spec", "provider"), &t.Spec.Provider, &ws)...)
	if p := &t.Spec.Provider; p.Address == "" && !analysis.IsPromQL(p.Type) {
		errs = append(errs, field.Required(field.NewPath("spec", "provider", "address"),
			"provider type "+p.Type+" needs an address: the operator's default address is Prometheus'"))
	}
	if p := &t.Spec.Provider; p.SecretRef == nil && (p.Type == "datadog" || p.Type == "newrelic" || p.Type == "dynatrace" || p.Type == "cloudwatch") {
		errs = append(errs, field.Required(field.NewPath("spec", "provider", "secretRef"),
			"provider type "+p.Type+" needs a Secret with its API key(s)"))
	}
	return ws, invalid("MetricTemplate", t.Name, errs)
}

// promQLProvider refuses a Canary's spec.analysis.provider of a type that does not run
// PromQL: the built-in checks it serves are PromQL queries.
func promQLProvider(path *field.Path, p *meshv1.MetricProvider) field.ErrorList {
	if p == nil || analysis.IsPromQL(p.Type) {
		return nil
	}
	return field.ErrorList{field.NotSupported(path.Child("type"), p.Type, []string{"prometheus", "victoriametrics"})}
}
