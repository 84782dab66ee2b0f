package v1alpha1

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
	Providers           providerValidator
	AllowCrossNamespace bool
	Tenancy             *render.Tenancy
}

// Validate refuses a Canary, naming every field at fault, and warns of what is legal but
// suspicious.
func (v *CanaryValidator) Validate(c *meshv1.Canary) (admission.Warnings, error) {
	warnings, err := render.ValidateCanary(c)
	errs := append(renderErrors(err), renderErrors(v.Tenancy.CheckCanary(c, nil))...)
	ws := append(flaggerWarnings(c), renderWarnings(warnings)...)

	a := &c.Spec.Analysis
	analysisPath := field.NewPath("spec", "analysis")
	if _, err := analysis.CheckInterval(c, &meshv1.CanaryMetric{}); err != nil {
		errs = append(errs, field.Invalid(analysisPath.Child("interval"), a.Interval, err.Error()))
	}
	errs = append(errs, v.Providers.validate(analysisPath.Child("provider"), a.Provider, &ws)...)
	errs = append(errs, validateSteps(analysisPath, c, &ws)...)
	errs = append(errs, promQLProvider(analysisPath.Child("provider"), a.Provider)...)
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
	for _, cond := range []struct{ name, expr string }{{"successCondition", m.SuccessCondition}, {"failureCondition", m.FailureCondition}} {
		if cond.expr == "" {
			continue
		}
		if _, err := analysis.CompileCondition(cond.expr, m.CompareWithPrimary); err != nil {
			errs = append(errs, field.Invalid(path.Child(cond.name), cond.expr, err.Error()))
		}
	}
	if m.InconclusiveLimit != nil && (m.SuccessCondition == "" || m.FailureCondition == "") {
		*ws = append(*ws, fmt.Sprintf("%s: only a check with both successCondition and failureCondition can be Inconclusive: the limit never applies", path.Child("inconclusiveLimit")))
	}
	if m.TemplateRef == nil && m.Name == analysis.CheckPodRestarts && m.MinRequests != nil {
		*ws = append(*ws, fmt.Sprintf("%s: pod-restarts counts the canary's pods since the rollout started, not requests: minRequests does not apply", path.Child("minRequests")))
	}
	if m.DryRun && (m.FailureLimit != nil || m.ConsecutiveErrorLimit != nil || m.InconclusiveLimit != nil) {
		*ws = append(*ws, fmt.Sprintf("%s: is true: the check never decides, and its limits do not apply", path.Child("dryRun")))
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
		errs = append(errs, refusedURL(path.Child("url"), err))
	}
	if hd := h.Header; hd != nil {
		if reservedHeaders[http.CanonicalHeaderKey(hd.Name)] {
			errs = append(errs, field.Forbidden(path.Child("header", "name"), fmt.Sprintf("%s is set by canopy or the HTTP client", hd.Name)))
		}
		if err := v.Providers.credentials.CheckHost(h.URL); err != nil {
			errs = append(errs, refusedURL(path.Child("header", "secretKeyRef"), err))
		}
	}
	if d, err := floorDuration(h.Timeout, minHookTimeout); err != nil {
		errs = append(errs, field.Invalid(path.Child("timeout"), h.Timeout, err.Error()))
	} else if d > maxHookTimeout {
		errs = append(errs, field.Invalid(path.Child("timeout"), h.Timeout, fmt.Sprintf("must be at most %s: a reconcile waits for the call", maxHookTimeout)))
	}
	return errs
}

// reservedHeaders are the headers a webhook's header may not set: the request's framing
// and what canopy sets itself.
var reservedHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Content-Type": true, "Transfer-Encoding": true,
	"Connection": true, "Upgrade": true, "Te": true, "Trailer": true, "User-Agent": true,
}

// providerValidator refuses what the analysis would refuse of a provider: an address the
// URL policy refuses, credentials for a host they may not go to.
type providerValidator struct {
	policy      *hooks.Policy
	credentials *hooks.CredentialPolicy
}

// validate checks a provider's timeout, address and secretRef, and warns of skipped TLS
// verification.
func (v providerValidator) validate(path *field.Path, p *meshv1.MetricProvider, ws *admission.Warnings) field.ErrorList {
	if p == nil {
		return nil
	}
	var errs field.ErrorList
	if _, err := floorDuration(p.Timeout, minQueryTimeout); err != nil {
		errs = append(errs, field.Invalid(path.Child("timeout"), p.Timeout, err.Error()))
	}
	if p.Address != "" {
		if err := v.policy.CheckStatic(p.Address); err != nil {
			errs = append(errs, refusedURL(path.Child("address"), err))
		}
		// The operator's own Prometheus (no address) may have a tenant's credentials.
		if p.SecretRef != nil {
			if err := v.credentials.CheckHost(p.Address); err != nil {
				errs = append(errs, refusedURL(path.Child("secretRef"), err))
			}
		}
	}
	if p.InsecureSkipVerify {
		*ws = append(*ws, path.Child("insecureSkipVerify").String()+": is true: the provider's certificate is not verified, so anyone on the path can answer the checks")
	}
	return errs
}

// refusedURL is a URL policy's refusal as a field error, showing only the URL's origin.
func refusedURL(path *field.Path, err error) *field.Error {
	var na *hooks.NotAllowedError
	if errors.As(err, &na) {
		return field.Invalid(path, na.URL, na.Reason)
	}
	return field.Invalid(path, field.OmitValueType{}, err.Error())
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
