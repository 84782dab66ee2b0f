package v1alpha1

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/analysis"
	"canopy.dev/canopy/internal/hooks"
	"canopy.dev/canopy/internal/render"
)

// Floors of durations: below them a rollout would poll, time out or give up faster than
// anything it waits for can answer. The CRDs' CEL rules hold the same bounds; the webhook
// checks them again, parsing as the controller does, for objects of an older CRD.
const (
	minHoldTimeout  = time.Second
	minHookTimeout  = 100 * time.Millisecond
	maxHookTimeout  = 10 * time.Minute
	minQueryTimeout = 100 * time.Millisecond
)

// +kubebuilder:webhook:path=/mutate-mesh-canopy-dev-v1alpha1-canary,mutating=true,failurePolicy=fail,sideEffects=None,groups=mesh.canopy.dev,resources=canaries,verbs=create;update,versions=v1alpha1,name=mcanary-v1alpha1.mesh.canopy.dev,admissionReviewVersions=v1

// CanaryDefaulter fills the defaults the schema cannot: those that depend on the object's
// own namespace.
type CanaryDefaulter struct{}

// Default sets templateRef.namespace to the Canary's namespace (the API's documented
// default), so that what a check reads is visible in the stored object. Defaults derived
// from other fields (targetPort from port, a metric's interval from the analysis') are not
// stored: they would stop following the field they derive from when it changes.
func (d *CanaryDefaulter) Default(_ context.Context, c *meshv1.Canary) error {
	if c.Namespace == "" {
		return nil // a create without a namespace fails in the apiserver, not here
	}
	for i := range c.Spec.Analysis.Metrics {
		if ref := c.Spec.Analysis.Metrics[i].TemplateRef; ref != nil && ref.Namespace == "" {
			ref.Namespace = c.Namespace
		}
	}
	return nil
}

// +kubebuilder:webhook:path=/validate-mesh-canopy-dev-v1alpha1-canary,mutating=false,failurePolicy=fail,sideEffects=None,groups=mesh.canopy.dev,resources=canaries,verbs=create;update,versions=v1alpha1,name=vcanary-v1alpha1.mesh.canopy.dev,admissionReviewVersions=v1

// CanaryValidator refuses Canaries the controller would refuse: durations that do not
// parse or are below their floor, routing the renderer refuses, rollout webhook URLs the
// URL policy refuses, MetricTemplates in other namespaces unless the operator allows them,
// and hosts and gateways beyond the Canary's namespace that the operator's Tenancy does not
// allow.
type CanaryValidator struct {
	URLPolicy           *hooks.Policy
	AllowCrossNamespace bool
	Tenancy             *render.Tenancy
}

// Validate refuses a Canary, naming every field at fault, and warns of what is legal but
// suspicious.
func (v *CanaryValidator) Validate(c *meshv1.Canary) (admission.Warnings, error) {
	warnings, err := render.ValidateCanary(c)
	errs := append(renderErrors(err), renderErrors(v.Tenancy.CheckCanary(c, nil))...)
	ws := renderWarnings(warnings)

	a := &c.Spec.Analysis
	analysisPath := field.NewPath("spec", "analysis")
	if _, err := analysis.CheckInterval(c, &meshv1.CanaryMetric{}); err != nil {
		errs = append(errs, field.Invalid(analysisPath.Child("interval"), a.Interval, err.Error()))
	}
	errs = append(errs, validateProvider(analysisPath.Child("provider"), a.Provider, &ws)...)
	for i := range a.Metrics {
		errs = append(errs, v.validateMetric(c, analysisPath.Child("metrics").Index(i), &a.Metrics[i], &ws)...)
	}
	for i := range a.Webhooks {
		errs = append(errs, v.validateHook(analysisPath.Child("webhooks").Index(i), &a.Webhooks[i])...)
	}
	if c.Spec.SkipAnalysis && (len(a.Metrics) > 0 || len(a.Webhooks) > 0) {
		ws = append(ws, "spec.skipAnalysis: is true: the checks and webhooks in spec.analysis are not run and new revisions are promoted at once")
	}
	return ws, invalid("Canary", c.Name, errs)
}

func (v *CanaryValidator) validateMetric(c *meshv1.Canary, path *field.Path, m *meshv1.CanaryMetric, ws *admission.Warnings) field.ErrorList {
	var errs field.ErrorList
	if m.Interval != "" {
		if _, err := analysis.CheckInterval(c, m); err != nil {
			errs = append(errs, field.Invalid(path.Child("interval"), m.Interval, err.Error()))
		}
	}
	if hold, err := floorDuration(m.HoldTimeout, minHoldTimeout); err != nil {
		errs = append(errs, field.Invalid(path.Child("holdTimeout"), m.HoldTimeout, err.Error()))
	} else if iv, ierr := analysis.CheckInterval(c, m); ierr == nil && hold > 0 && hold < iv && m.OnError != meshv1.OnErrorFail {
		*ws = append(*ws, fmt.Sprintf("%s: %s is shorter than the check's interval %s: a check that cannot be measured fails at its next run", path.Child("holdTimeout"), m.HoldTimeout, iv))
	}
	if ref := m.TemplateRef; ref != nil && ref.Namespace != "" && ref.Namespace != c.Namespace && !v.AllowCrossNamespace {
		errs = append(errs, field.Forbidden(path.Child("templateRef", "namespace"),
			fmt.Sprintf("MetricTemplate %s/%s is in another namespace than the Canary; the operator allows that only with --allow-cross-namespace-refs", ref.Namespace, ref.Name)))
	}
	return errs
}

func (v *CanaryValidator) validateHook(path *field.Path, h *meshv1.CanaryWebhook) field.ErrorList {
	var errs field.ErrorList
	if err := v.URLPolicy.CheckStatic(h.URL); err != nil {
		var na *hooks.NotAllowedError
		detail := err.Error()
		if errors.As(err, &na) {
			detail = na.Reason
		}
		errs = append(errs, field.Invalid(path.Child("url"), redactedURL(h.URL, err), detail))
	}
	if d, err := floorDuration(h.Timeout, minHookTimeout); err != nil {
		errs = append(errs, field.Invalid(path.Child("timeout"), h.Timeout, err.Error()))
	} else if d > maxHookTimeout {
		errs = append(errs, field.Invalid(path.Child("timeout"), h.Timeout, fmt.Sprintf("must be at most %s: a reconcile waits for the call", maxHookTimeout)))
	}
	return errs
}

// validateProvider checks a provider's timeout and warns of skipped TLS verification.
func validateProvider(path *field.Path, p *meshv1.MetricProvider, ws *admission.Warnings) field.ErrorList {
	if p == nil {
		return nil
	}
	var errs field.ErrorList
	if _, err := floorDuration(p.Timeout, minQueryTimeout); err != nil {
		errs = append(errs, field.Invalid(path.Child("timeout"), p.Timeout, err.Error()))
	}
	if p.Address != "" {
		// Not refused: a provider inside the cluster may well sit on a private address. But
		// the operator queries it with its own network identity, so a metadata or loopback
		// address is worth a word.
		if err := (&hooks.Policy{}).CheckStatic(p.Address); err != nil {
			var na *hooks.NotAllowedError
			if errors.As(err, &na) {
				*ws = append(*ws, fmt.Sprintf("%s: %s: the operator would query it from its own pod", path.Child("address"), na.Reason))
			}
		}
	}
	if p.InsecureSkipVerify {
		*ws = append(*ws, path.Child("insecureSkipVerify").String()+": is true: the provider's certificate is not verified, so anyone on the path can answer the checks")
	}
	return errs
}

// floorDuration parses d ("" is 0: the API's default applies) and refuses it below floor.
func floorDuration(d meshv1.Duration, floor time.Duration) (time.Duration, error) {
	if d == "" {
		return 0, nil
	}
	v, err := time.ParseDuration(string(d))
	if err != nil {
		return 0, fmt.Errorf("not a duration: %v", err)
	}
	if v < floor {
		return 0, fmt.Errorf("must be at least %s", floor)
	}
	return v, nil
}

// redactedURL is the URL as the policy shows it (without a password).
func redactedURL(raw string, err error) string {
	var na *hooks.NotAllowedError
	if errors.As(err, &na) {
		return na.URL
	}
	return raw
}
