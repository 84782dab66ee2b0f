package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/internal/router"
	"canopy.dev/canopy/internal/workload"
)

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get

// handOverSettle is how long the generated objects stay once the apex Service selects the
// target's pods and the VirtualService is gone: the endpoints controller and istiod carry
// that change to the Service's endpoints and to the proxies while the primary's pods still
// serve.
const handOverSettle = 5 * time.Second

// handOverPoll is how often a hand-over looks again at a target that is not ready yet,
// besides the watch on it.
const handOverPoll = 5 * time.Second

// finalize runs when a Canary is deleted. By default (deletionPolicy HandOver) the service
// is handed back to the target Deployment before anything generated goes (see handOver);
// with Orphan the generated objects are left to the garbage collector (they carry owner
// references). Only then does the Canary go.
func (r *CanaryReconciler) finalize(ctx context.Context, c *meshv1.Canary) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(c, CanaryFinalizer) {
		return ctrl.Result{}, nil
	}
	leave, err := r.leavesAsIs(ctx, c)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !leave {
		s := &canaryScope{canary: c, before: c.DeepCopy(), now: r.Clock.Now()}
		step, err := r.handOver(ctx, s)
		if err != nil {
			s.fail(err)
		}
		if err != nil || !step.done {
			return r.handOverWaits(ctx, s, step, err)
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

// leavesAsIs says whether the finalizer goes without a hand-over: a Canary refused for a
// Conflict wrote nothing (the target and what the owner generated are the owner's); Orphan
// asks for it; and in a terminating namespace nothing is left to serve.
func (r *CanaryReconciler) leavesAsIs(ctx context.Context, c *meshv1.Canary) (bool, error) {
	owner, err := r.targetOwner(ctx, c)
	if err != nil || owner != nil {
		return owner != nil, err
	}
	if !c.Spec.HandsOverOnDeletion() {
		return true, nil
	}
	return r.namespaceTerminating(ctx, c.Namespace)
}

// namespaceTerminating reads the namespace uncached (a Canary's deletion is rare, and a
// cache of all namespaces would cost a cluster-wide watch). Without the right to read it
// (an operator installed with namespaced RBAC) the answer is no: a hand-over is the safe
// side, and the namespace controller deletes the target anyway, which ends the hand-over.
func (r *CanaryReconciler) namespaceTerminating(ctx context.Context, name string) (bool, error) {
	reader := r.APIReader
	if reader == nil {
		reader = r.Client
	}
	ns := &corev1.Namespace{}
	switch err := reader.Get(ctx, types.NamespacedName{Name: name}, ns); {
	case apierrors.IsNotFound(err):
		return true, nil
	case apierrors.IsForbidden(err):
		ctrl.LoggerFrom(ctx).V(1).Info("Cannot read the namespace: handing over as if it were not terminating", "error", err.Error())
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading namespace %s: %w", name, err)
	}
	return !ns.DeletionTimestamp.IsZero() || ns.Status.Phase == corev1.NamespaceTerminating, nil
}

// handOverStep is where a hand-over stands after one reconcile.
type handOverStep struct {
	done   bool
	wait   time.Duration
	events []progress.Event
}

// handOver hands the service back to the target Deployment, one stage per reconcile:
//
//  1. the target carries a revision that is safe to serve alone: the last promoted one (or
//     the one being promoted, which the primary already runs), or one a confirm-deletion
//     request accepted; otherwise the primary serves all traffic and the deletion waits
//     (blockDeletion);
//  2. the target runs at least the primary's replicas (an autoscaler's count included) and
//     is ready;
//  3. the apex Service selects the target's pods (and is no longer the Canary's) and the
//     VirtualService goes, so that the mesh routes the apex host by that Service;
//  4. after handOverSettle, the rest of what was generated is deleted.
//
// At no moment does the apex Service select pods that are not ready: it moves from the
// primary's pods to the target's only once those are ready, and the primary goes after.
func (r *CanaryReconciler) handOver(ctx context.Context, s *canaryScope) (handOverStep, error) {
	c := s.canary
	if _, err := r.loadWorkloads(ctx, s); err != nil {
		return handOverStep{}, err
	}
	if s.target == nil || !s.target.DeletionTimestamp.IsZero() {
		return handOverStep{done: true}, r.deleteGenerated(ctx, c) // nothing to route back to
	}
	st, kind := &c.Status, c.Spec.TargetRef.KindOrDefault()
	if st.Phase != meshv1.PhaseTerminating {
		st.Phase, st.LastTransitionTime = meshv1.PhaseTerminating, ptrTime(s.now)
	}
	tracked, err := workload.TrackedConfigs(ctx, r.Client, c.Namespace, &s.target.Spec.Template.Spec)
	if err != nil {
		return handOverStep{}, err
	}
	rev := render.Revision(&s.target.Spec.Template, tracked...)
	st.CurrentRevision = rev
	var step handOverStep
	if !handOverSafe(s, rev) {
		if !confirmDeletion(s, rev) {
			return r.blockDeletion(ctx, s, rev)
		}
		step.events = append(step.events, progress.Event{Type: progress.EventNormal, Reason: meshv1.ReasonDeletionConfirmed,
			Message: fmt.Sprintf("Request %q accepted revision %s: handing it over to %s %s", st.LastHandledRequest, rev, kind, s.target.Name)})
	}

	replicas := int32(1)
	if s.primary != nil {
		replicas = max(workload.Replicas(s.primary), 1)
	}
	if workload.Replicas(s.target) < replicas {
		// Never fewer than the target has: its own autoscaler may have scaled it up.
		if err := r.scale(ctx, s.targetObj, replicas); err != nil {
			return handOverStep{}, err
		}
	}
	if ready, why := workload.ReadyAt(s.target, c.Spec.Analysis.PrimaryReadyThreshold); !ready {
		step.wait = handOverPoll
		msg := fmt.Sprintf("Handing the service over to %s %s at revision %s: waiting for it to be ready at %d replicas (%s)",
			kind, s.target.Name, rev, workload.Replicas(s.target), why)
		step.announce(readyReason(&s.before.Status) != meshv1.ReasonHandingOver, msg)
		s.handingOver(msg)
		return step, nil
	}

	moved, err := r.routeToTarget(ctx, s)
	if err != nil {
		return handOverStep{}, err
	}
	// The generated objects go handOverSettle after the routes moved; a first look at a
	// Canary whose routes were already moved (by a reconcile whose status was lost) waits
	// as long again.
	wait := handOverSettle
	if moved {
		st.LastStepTime = ptrTime(s.now)
	} else if s.before.Status.Phase == meshv1.PhaseTerminating && st.LastStepTime != nil {
		wait = st.LastStepTime.Add(handOverSettle).Sub(s.now)
	}
	if wait > 0 {
		step.wait = wait
		msg := fmt.Sprintf("%s %s serves revision %s at %d replicas through Service %s; the generated objects go once the mesh has followed",
			kind, s.target.Name, rev, workload.Replicas(s.target), c.Spec.TargetRef.Name)
		step.announce(moved, msg)
		s.handingOver(msg)
		return step, nil
	}
	step.done = true
	return step, r.deleteGenerated(ctx, c)
}

// handOverSafe says whether the target's revision may serve alone: the last promoted one,
// the one the primary runs or rolls out (promoting), one confirmed, or any when the Canary
// never made a primary (the target was never scaled down).
func handOverSafe(s *canaryScope, rev string) bool {
	st := &s.canary.Status
	return s.primary == nil || rev == st.LastPromotedRevision || rev == st.DeletionConfirmedRevision ||
		rev == s.primary.Annotations[render.AnnotationRevision]
}

// confirmDeletion accepts the target's revision when a new confirm-deletion (or promote)
// request came while the deletion waits, and records it so that it holds while the
// target carries that revision.
func confirmDeletion(s *canaryScope, rev string) bool {
	st := &s.canary.Status
	req := s.canary.Annotations[meshv1.AnnotationRequest]
	action, _, _ := strings.Cut(req, ":")
	if req == "" || req == st.LastHandledRequest || (action != progress.ActionConfirmDeletion && action != progress.ActionPromote) {
		return false
	}
	st.LastHandledRequest, st.DeletionConfirmedRevision = req, rev
	return true
}

// blockDeletion keeps the primary serving all traffic while the target carries a revision
// that was not promoted: handing it over would send every request to a revision that never
// passed its analysis. Watches on the target and on the Canary's annotations bring the
// Canary back when that changes.
func (r *CanaryReconciler) blockDeletion(ctx context.Context, s *canaryScope, rev string) (handOverStep, error) {
	c := s.canary
	if err := r.Tenancy.CheckCanary(c, nil); err != nil {
		return handOverStep{}, err
	}
	rt, err := router.For(c)
	if err != nil {
		return handOverStep{}, err
	}
	s.router = rt
	// As in decide: a MeshPolicy that does not compose does not keep the traffic off the
	// primary; the routes go without it.
	primaryOnly := progress.Routing{PrimaryWeight: 100}
	set, err := r.renderRouting(s, primaryOnly, s.policy)
	if err != nil && s.policy != nil {
		set, err = r.renderRouting(s, primaryOnly, nil)
	}
	if err != nil {
		return handOverStep{}, err
	}
	if err := r.apply(ctx, c, set.Route()); err != nil {
		return handOverStep{}, err
	}
	c.Status.CanaryWeight = 0
	kind := c.Spec.TargetRef.KindOrDefault()
	msg := fmt.Sprintf("Deletion waits: %s %s carries revision %s (%s), which was not promoted; %s %s serves all traffic with revision %s (%s). "+
		"Set %s %s back to that revision (in Git), or hand revision %s over as it is with kubectl canopy confirm-deletion %s -n %s (annotation %s=%s:<token>)",
		kind, s.target.Name, rev, images(s.target), kind, s.primary.Name, c.Status.LastPromotedRevision, images(s.primary),
		kind, s.target.Name, rev, c.Name, c.Namespace, meshv1.AnnotationRequest, progress.ActionConfirmDeletion)
	var step handOverStep
	if readyReason(&s.before.Status) != meshv1.ReasonDeletionBlocked || c.Status.CurrentRevision != s.before.Status.CurrentRevision {
		step.events = append(step.events, progress.Event{Type: progress.EventWarning, Reason: meshv1.ReasonDeletionBlocked, Message: msg})
	}
	s.setDeletionCondition(meshv1.ReasonDeletionBlocked, msg)
	return step, nil
}

// routeToTarget points the apex Service at the target's pods and removes the routes (the
// VirtualService, the HTTPRoute), so that the mesh routes the apex host by the Service. It reports whether it changed
// anything. The apex Service stays, as the user's: canopy's owner reference goes.
func (r *CanaryReconciler) routeToTarget(ctx context.Context, s *canaryScope) (bool, error) {
	c, moved := s.canary, false
	if apex := s.apex; apex != nil && (!maps.Equal(apex.Spec.Selector, s.target.Spec.Selector.MatchLabels) || hasOwner(apex.OwnerReferences, c)) {
		patch := client.MergeFrom(apex.DeepCopy())
		apex.Spec.Selector = maps.Clone(s.target.Spec.Selector.MatchLabels)
		apex.OwnerReferences = withoutOwner(apex.OwnerReferences, c)
		if err := r.Patch(ctx, apex, patch); err != nil {
			return false, fmt.Errorf("pointing Service %s at the target's pods: %w", apex.Name, err)
		}
		moved = true
	}
	deleted := false
	for _, rt := range router.All() {
		routes, _ := rt.Owned(c)
		for _, o := range routes {
			d, err := r.deleteOwned(ctx, c, o)
			if err != nil {
				return moved || deleted, err
			}
			deleted = deleted || d
		}
	}
	return moved || deleted, nil
}

// deleteGenerated removes what canopy generated for the Canary, except the apex Service.
func (r *CanaryReconciler) deleteGenerated(ctx context.Context, c *meshv1.Canary) error {
	ns, name := c.Namespace, c.Spec.TargetRef.Name
	var objs []client.Object
	for _, rt := range router.All() {
		routes, rest := rt.Owned(c)
		objs = append(append(objs, routes...), rest...)
	}
	objs = append(objs,
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: render.PrimaryName(name)}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: render.CanaryName(name)}},
		&autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: render.PrimaryName(name)}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: render.PrimaryName(name)}},
		&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: render.PrimaryName(name)}},
	)
	return r.deleteAllOwned(ctx, c, objs)
}

// deleteAllOwned deletes those of objs the Canary controls, trying every one.
func (r *CanaryReconciler) deleteAllOwned(ctx context.Context, c *meshv1.Canary, objs []client.Object) error {
	var errs []error
	for _, o := range objs {
		if _, err := r.deleteOwned(ctx, c, o); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteOwned deletes o when the Canary controls it, and reports whether it sent a deletion.
func (r *CanaryReconciler) deleteOwned(ctx context.Context, c *meshv1.Canary, o client.Object) (bool, error) {
	if err := r.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
		if meta.IsNoMatchError(err) {
			return false, nil // an API the cluster does not serve holds nothing of ours
		}
		return false, client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(o, c) || !o.GetDeletionTimestamp().IsZero() {
		return false, nil // never delete what is not ours
	}
	switch err := r.Delete(ctx, o); {
	case apierrors.IsNotFound(err):
		return false, nil // gone meanwhile
	case err != nil:
		return false, fmt.Errorf("deleting %T %s: %w", o, o.GetName(), err)
	}
	return true, nil
}

// announce records a HandingOver event with msg when a stage of the hand-over begins.
func (h *handOverStep) announce(begins bool, msg string) {
	if begins {
		h.events = append(h.events, progress.Event{Type: progress.EventNormal, Reason: meshv1.ReasonHandingOver, Message: msg})
	}
}

// handingOver reports a hand-over in progress.
func (s *canaryScope) handingOver(msg string) { s.setDeletionCondition(meshv1.ReasonHandingOver, msg) }

// setDeletionCondition: a Canary being deleted is not ready, and reconciling until it is gone.
func (s *canaryScope) setDeletionCondition(reason, msg string) {
	st := &s.canary.Status
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: meshv1.ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: msg})
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: meshv1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: reason, Message: msg})
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: meshv1.ConditionStalled, Status: metav1.ConditionFalse, Reason: reason, Message: msg})
}

// handOverWaits writes the status of a hand-over that is not done, once, and records its
// events after the write landed.
func (r *CanaryReconciler) handOverWaits(ctx context.Context, s *canaryScope, step handOverStep, err error) (ctrl.Result, error) {
	if perr := r.patchStatus(ctx, s); perr != nil {
		return ctrl.Result{}, errors.Join(err, perr)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	for _, e := range step.events {
		r.Recorder.Eventf(s.canary, nil, e.Type, e.Reason, e.Reason, "%s", eventNote(e.Message))
	}
	return ctrl.Result{RequeueAfter: step.wait}, nil
}

// images names a Deployment's container images, the way a revision is found in Git.
func images(d *appsv1.Deployment) string {
	var out []string
	for _, ctr := range d.Spec.Template.Spec.Containers {
		out = append(out, ctr.Image)
	}
	return "image " + strings.Join(out, ", ")
}

func readyReason(st *meshv1.CanaryStatus) string {
	if c := meta.FindStatusCondition(st.Conditions, meshv1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

func ptrTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t).Rfc3339Copy()
	return &mt
}

func hasOwner(refs []metav1.OwnerReference, owner client.Object) bool {
	for _, ref := range refs {
		if ref.UID == owner.GetUID() {
			return true
		}
	}
	return false
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
