package controllers

import (
	"context"
	"fmt"
	"time"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/internal/workload"
)

// finalize runs when a Canary is deleted. Without revertOnDeletion the generated objects are
// left to the garbage collector (they carry owner references). With it, the target
// Deployment is scaled back up, the apex Service selects its pods again, and every generated
// object is removed; only then does the Canary go.
func (r *CanaryReconciler) finalize(ctx context.Context, c *meshv1.Canary) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(c, CanaryFinalizer) {
		return ctrl.Result{}, nil
	}
	// A Canary refused for a Conflict wrote nothing: the target and what the owner generated
	// are the owner's, and stay as they are.
	owner, err := r.targetOwner(ctx, c)
	if err != nil {
		return ctrl.Result{}, err
	}
	if owner == nil && c.Spec.RevertOnDeletion {
		if wait, err := r.revert(ctx, c); err != nil || wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, err
		}
	}
	patch := client.MergeFrom(c.DeepCopy())
	controllerutil.RemoveFinalizer(c, CanaryFinalizer)
	if err := r.Patch(ctx, c, patch); err != nil {
		return ctrl.Result{}, fmt.Errorf("removing the finalizer: %w", err)
	}
	r.forget(c)
	return ctrl.Result{}, nil
}

// revert routes traffic back to the target. It returns a wait while the target scales up.
func (r *CanaryReconciler) revert(ctx context.Context, c *meshv1.Canary) (time.Duration, error) {
	ns, name := c.Namespace, c.Spec.TargetRef.Name
	target := &appsv1.Deployment{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, target); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, r.deleteGenerated(ctx, c) // nothing to route back to
		}
		return 0, err
	}
	primary := &appsv1.Deployment{}
	replicas := int32(1)
	if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: render.PrimaryName(name)}, primary); err == nil {
		replicas = max(workload.Replicas(primary), 1)
	}
	if workload.Replicas(target) == 0 {
		if err := r.scale(ctx, target, replicas); err != nil {
			return 0, err
		}
	}
	if ready, _ := workload.Ready(target); !ready {
		return 2 * time.Second, nil
	}
	// The apex Service selects the target's pods again and stops being ours.
	apex := &corev1.Service{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, apex); err == nil {
		patch := client.MergeFrom(apex.DeepCopy())
		apex.Spec.Selector = target.Spec.Selector.MatchLabels
		apex.OwnerReferences = withoutOwner(apex.OwnerReferences, c)
		if err := r.Patch(ctx, apex, patch); err != nil {
			return 0, fmt.Errorf("pointing Service %s back at the target: %w", name, err)
		}
	}
	return 0, r.deleteGenerated(ctx, c)
}

// deleteGenerated removes what canopy generated for the Canary, except the apex Service.
func (r *CanaryReconciler) deleteGenerated(ctx context.Context, c *meshv1.Canary) error {
	ns, name := c.Namespace, c.Spec.TargetRef.Name
	objs := []client.Object{
		&istionetv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		&istionetv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: render.PrimaryName(name)}},
		&istionetv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: render.CanaryName(name)}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: render.PrimaryName(name)}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: render.CanaryName(name)}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: render.PrimaryName(name)}},
	}
	for _, o := range objs {
		if err := r.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return err
		}
		if !metav1.IsControlledBy(o, c) {
			continue // never delete what is not ours
		}
		if err := r.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

func withoutOwner(refs []metav1.OwnerReference, owner client.Object) []metav1.OwnerReference {
	out := refs[:0:0]
	for _, ref := range refs {
		if ref.UID != owner.GetUID() {
			out = append(out, ref)
		}
	}
	return out
}
