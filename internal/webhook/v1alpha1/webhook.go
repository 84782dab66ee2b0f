// Package v1alpha1 holds the admission webhooks of canopy's v1alpha1 kinds: they refuse
// what the CRDs' schema and CEL rules cannot check (durations that overflow, regular
// expressions, PromQL, webhook URLs against the operator's policy, references the
// operator's flags forbid, settings that contradict each other) when an object is written,
// rather than when it is reconciled. Every check is the one the controllers run, called
// from the package that owns it, so admission and reconciliation never disagree.
package v1alpha1

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/hooks"
	"canopy.dev/canopy/internal/render"
)

// Options are what the webhooks take from the operator's flags.
type Options struct {
	// URLPolicy decides which rollout webhook URLs a Canary may name; the operator's hooks
	// caller uses the same one. Nil allows any URL the default policy allows.
	URLPolicy *hooks.Policy
	// ProviderPolicy decides which provider addresses a Canary or MetricTemplate may name;
	// Credentials where credentials from their Secrets may go. The analysis uses the same.
	ProviderPolicy *hooks.Policy
	Credentials    *hooks.CredentialPolicy
	// AllowCrossNamespace lets a Canary reference a MetricTemplate in another namespace.
	AllowCrossNamespace bool
	// Tenancy is what a namespace's Canaries and MeshPolicies may claim beyond it; the
	// controllers check with the same one. Nil allows nothing beyond the namespace.
	Tenancy *render.Tenancy
}

// Setup registers the validating and defaulting webhooks with the manager's webhook server.
func Setup(mgr ctrl.Manager, o Options) error {
	if o.URLPolicy == nil {
		o.URLPolicy = &hooks.Policy{}
	}
	if o.ProviderPolicy == nil {
		o.ProviderPolicy = &hooks.Policy{}
	}
	providers := providerValidator{policy: o.ProviderPolicy, credentials: o.Credentials}
	canaries := &CanaryValidator{URLPolicy: o.URLPolicy, Providers: providers, AllowCrossNamespace: o.AllowCrossNamespace, Tenancy: o.Tenancy}
	if err := ctrl.NewWebhookManagedBy(mgr, &meshv1.Canary{}).
		WithValidator(specValidator[*meshv1.Canary]{canaries.Validate, func(c *meshv1.Canary) any { return c.Spec }}).
		Complete(); err != nil {
		return fmt.Errorf("setting up the Canary webhooks: %w", err)
	}
	defaulter := admission.WithDefaulter(mgr.GetScheme(), admission.Defaulter[*meshv1.Canary](&CanaryDefaulter{}))
	defaulter.Handler = lenientDecode[meshv1.Canary]{defaulter.Handler}
	mgr.GetWebhookServer().Register(canaryMutatePath, defaulter)
	if err := ctrl.NewWebhookManagedBy(mgr, &meshv1.MeshPolicy{}).
		WithValidator(specValidator[*meshv1.MeshPolicy]{(&MeshPolicyValidator{Tenancy: o.Tenancy, Providers: providers}).Validate, func(p *meshv1.MeshPolicy) any { return p.Spec }}).
		Complete(); err != nil {
		return fmt.Errorf("setting up the MeshPolicy webhook: %w", err)
	}
	if err := ctrl.NewWebhookManagedBy(mgr, &meshv1.MetricTemplate{}).
		WithValidator(specValidator[*meshv1.MetricTemplate]{(&MetricTemplateValidator{Providers: providers}).Validate, func(t *meshv1.MetricTemplate) any { return t.Spec }}).
		Complete(); err != nil {
		return fmt.Errorf("setting up the MetricTemplate webhook: %w", err)
	}
	return nil
}

// specValidator validates an object when it is created and when its spec changes. An
// update that leaves the spec alone (finalizers, labels, annotations such as
// mesh.canopy.dev/request), or of an object being deleted, is let through: an object
// stored before a check existed must still be deletable, and the controller must always
// be able to remove its finalizer. Deletions are never refused.
type specValidator[T client.Object] struct {
	validate func(T) (admission.Warnings, error)
	spec     func(T) any
}

func (v specValidator[T]) ValidateCreate(_ context.Context, obj T) (admission.Warnings, error) {
	return v.validate(obj)
}

func (v specValidator[T]) ValidateUpdate(_ context.Context, old, obj T) (admission.Warnings, error) {
	if obj.GetDeletionTimestamp() != nil || equality.Semantic.DeepEqual(v.spec(old), v.spec(obj)) {
		return nil, nil
	}
	return v.validate(obj)
}

func (v specValidator[T]) ValidateDelete(context.Context, T) (admission.Warnings, error) {
	return nil, nil
}

// canaryMutatePath is the path of the Canary's defaulting webhook, as in its marker.
const canaryMutatePath = "/mutate-mesh-canopy-dev-v1alpha1-canary"

// lenientDecode lets through, unchanged, an object that does not decode into its Go type
// (a string where the schema says integer). Mutating webhooks run before the apiserver's
// schema validation, which then refuses the object naming the field and the type it
// expects: a message more useful than the JSON decoder's.
type lenientDecode[T any] struct{ next admission.Handler }

func (h lenientDecode[T]) Handle(ctx context.Context, req admission.Request) admission.Response {
	if len(req.Object.Raw) > 0 {
		var obj T
		if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
			return admission.Allowed("not defaulted: the object does not decode (" + err.Error() + "); the schema validation says why")
		}
	}
	return h.next.Handle(ctx, req)
}

// invalid is the apiserver's 422 for a kind's object, listing every field error.
func invalid(kind, name string, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(schema.GroupKind{Group: meshv1.GroupVersion.Group, Kind: kind}, name, errs)
}

// renderErrors turns the renderer's field errors into the apiserver's: each names its
// field and says why. An error that is not a field error is a bug in the renderer's
// caller; it is reported on the spec rather than dropped.
func renderErrors(err error) field.ErrorList {
	if err == nil {
		return nil
	}
	var out field.ErrorList
	for _, e := range flatten(err) {
		var fe *render.FieldError
		if errors.As(e, &fe) {
			typ := field.ErrorTypeInvalid
			if fe.Reason == meshv1.ReasonNotAllowed {
				typ = field.ErrorTypeForbidden
			}
			f := fe.Field
			if fe.Object != "" {
				f = fe.Object + " " + f
			}
			out = append(out, &field.Error{Type: typ, Field: f, BadValue: field.OmitValueType{}, Detail: fe.Message})
			continue
		}
		out = append(out, field.InternalError(field.NewPath("spec"), e))
	}
	return out
}

// flatten undoes errors.Join.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := j.Unwrap()
		out := make([]error, 0, len(errs))
		for _, e := range errs {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// renderWarnings are the renderer's warnings as admission warnings, without repeats.
func renderWarnings(ws []render.Warning) admission.Warnings {
	var out admission.Warnings
	for _, w := range ws {
		if s := w.String(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
