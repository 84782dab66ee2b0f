package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	webhookv1 "canopy.dev/canopy/internal/webhook/v1alpha1"
)

// MetricTemplateReconciler reports in a MetricTemplate's Ready condition whether its query
// and provider pass the checks the admission webhook makes: a template stored before a check
// existed, while the webhook was not serving, or under other operator flags (the provider URL
// policy, where credentials may go) says so before a Canary's check fails on it. It never
// calls the provider: whether Prometheus answers is the checks' business, at analysis time.
type MetricTemplateReconciler struct {
	client.Client
	Validator *webhookv1.MetricTemplateValidator
}

// +kubebuilder:rbac:groups=mesh.canopy.dev,resources=metrictemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups=mesh.canopy.dev,resources=metrictemplates/status,verbs=get;update;patch

// Reconcile validates one MetricTemplate and writes its status when the verdict changed.
func (r *MetricTemplateReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	t := &meshv1.MetricTemplate{}
	if err := r.Get(ctx, req.NamespacedName, t); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := t.DeepCopy()
	ready := metav1.Condition{Type: meshv1.ConditionReady, Status: metav1.ConditionTrue, Reason: meshv1.ReasonValid,
		Message: "The query renders and parses, and the provider passes the operator's policy", ObservedGeneration: t.Generation}
	warnings, err := r.Validator.Validate(t)
	if err != nil {
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, meshv1.ReasonInvalidSpec, fieldErrors(err)
	}
	if len(warnings) > 0 {
		ready.Message += "; warnings: " + strings.Join(warnings, "; ")
	}
	stalled := metav1.Condition{Type: meshv1.ConditionStalled, Status: metav1.ConditionFalse, Reason: ready.Reason, ObservedGeneration: t.Generation}
	if err != nil {
		stalled.Status, stalled.Message = metav1.ConditionTrue, ready.Message
	}
	meta.SetStatusCondition(&t.Status.Conditions, ready)
	meta.SetStatusCondition(&t.Status.Conditions, stalled)
	t.Status.ObservedGeneration = t.Generation
	if equality.Semantic.DeepEqual(t.Status, before.Status) {
		return ctrl.Result{}, nil
	}
	// The optimistic lock refuses to write over a status this reconcile did not read.
	patch := client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})
	if err := r.Status().Patch(ctx, t, patch); err != nil {
		return ctrl.Result{}, fmt.Errorf("writing the status: %w", err)
	}
	return ctrl.Result{}, nil
}

// fieldErrors says what is wrong field by field ("spec.query: ..."), without the apiserver's
// "MetricTemplate ... is invalid" preamble that the condition does not need.
func fieldErrors(err error) string {
	var se *apierrors.StatusError
	if !errors.As(err, &se) || se.ErrStatus.Details == nil || len(se.ErrStatus.Details.Causes) == 0 {
		return err.Error()
	}
	msgs := make([]string, 0, len(se.ErrStatus.Details.Causes))
	for _, c := range se.ErrStatus.Details.Causes {
		msgs = append(msgs, c.Field+": "+c.Message)
	}
	return strings.Join(msgs, "; ")
}

// SetupWithManager registers the controller: a template is judged when its spec changes (and
// once for each at start, which covers a change of the operator's flags).
func (r *MetricTemplateReconciler) SetupWithManager(mgr ctrl.Manager, maxConcurrent int) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&meshv1.MetricTemplate{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: maxConcurrent}).
		Named("metrictemplate").
		Complete(r)
}
