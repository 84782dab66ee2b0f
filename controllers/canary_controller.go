package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/analysis"
	"canopy.dev/canopy/internal/apply"
	"canopy.dev/canopy/internal/budget"
	"canopy.dev/canopy/internal/desired"
	"canopy.dev/canopy/internal/hooks"
	"canopy.dev/canopy/internal/progress"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/internal/router"
	"canopy.dev/canopy/internal/workload"
)

// CanaryFinalizer lets canopy hand the service back to the target and clean up before a
// Canary goes away.
const CanaryFinalizer = "mesh.canopy.dev/finalizer"

// indexTarget indexes Canaries by the name of their target Deployment, indexAutoscaler by
// the name of the target's autoscaler.
const (
	indexTarget     = "spec.targetRef.name"
	indexAutoscaler = "spec.autoscalerRef.name"
)

// CanaryReconciler runs the rollouts of Canaries.
type CanaryReconciler struct {
	client.Client
	Applier  *apply.Applier
	Recorder events.EventRecorder
	Analyzer analysis.Analyzer
	Hooks    hooks.Caller
	Clock    clock.PassiveClock
	// APIReader reads by name and uncached what a cache would not hold or would cost too
	// much for: the ConfigMaps (whose data the cache drops) and Secrets the primary gets
	// copies of, and the namespace of a Canary being deleted. The manager's APIReader; nil:
	// the Client.
	APIReader client.Reader
	// Tenancy is what a Canary may claim beyond its namespace (nil: nothing).
	Tenancy *render.Tenancy
	// Limits bound the time one reconcile spends on the Canary's checks and webhooks
	// (zero fields: the defaults), so that no Canary holds a shared worker for long.
	Limits budget.Limits
	// Observers are told of each status written (metrics, notifications).
	Observers []RolloutObserver

	// unroutable holds the routing providers (meshv1.RoutingProvider) whose kinds the API
	// server does not serve yet: a Canary choosing one waits, saying which API is missing.
	// An apiGate per provider adds the watches on its kinds once they are served, removes
	// it, and wakes the Canaries that chose it.
	unroutable sync.Map
}

// +kubebuilder:rbac:groups=mesh.canopy.dev,resources=canaries,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=mesh.canopy.dev,resources=canaries/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=mesh.canopy.dev,resources=canaries/finalizers,verbs=update
// +kubebuilder:rbac:groups=mesh.canopy.dev,resources=meshpolicies;metrictemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apps,resources=deployments/scale,verbs=get;update;patch
// +kubebuilder:rbac:groups=apps,resources=daemonsets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.istio.io,resources=virtualservices;destinationrules,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;update;patch;delete

// Reconcile moves one Canary's rollout forward by at most the steps that are due now.
func (r *CanaryReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	log := ctrl.LoggerFrom(ctx)
	c := &meshv1.Canary{}
	if err := r.Get(ctx, req.NamespacedName, c); err != nil {
		if apierrors.IsNotFound(err) {
			r.Applier.Writes().Forget(&meshv1.Canary{ObjectMeta: metav1.ObjectMeta{Namespace: req.Namespace, Name: req.Name}})
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	fresh, err := r.Applier.Writes().Fresh(ctx, r.Client, c)
	if err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !fresh {
		// Our last write is not in the cache yet: deciding now could repeat a step. The
		// watch event that brings it wakes the Canary (apply.Writes.CaughtUp).
		return ctrl.Result{RequeueAfter: staleRetry}, nil
	}
	if !c.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, c)
	}
	if !controllerutil.ContainsFinalizer(c, CanaryFinalizer) {
		patch := client.MergeFromWithOptions(c.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(c, CanaryFinalizer)
		if err := r.Patch(ctx, c, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding the finalizer: %w", err)
		}
		r.Applier.Writes().Wrote(c)
	}

	s := &canaryScope{canary: c, before: c.DeepCopy(), now: r.Clock.Now()}
	defer func() {
		if err := r.patchStatus(ctx, s); err != nil {
			retErr = errors.Join(retErr, err)
			return
		}
		// Events and notifications go out only once the status recorded the step: when the
		// write is lost (the process dies, the optimistic lock refuses it), the next
		// reconcile decides the same step again and announces it then, once.
		if s.completed {
			r.announce(ctx, s)
		}
	}()

	for _, step := range []func(context.Context, *canaryScope) (bool, error){
		r.loadWorkloads,
		r.checkConflict,
		r.observe,
		r.decide,
		r.applyWorkload,
		r.applyRouting,
	} {
		done, err := step(ctx, s)
		if err != nil {
			s.fail(err)
			return ctrl.Result{}, err
		}
		if done {
			break
		}
	}
	s.completed = true
	if s.decision != nil {
		after := r.requeueAfter(s)
		log.V(1).Info("Reconciled", "phase", s.decision.Status.Phase, "weight", s.decision.Status.CanaryWeight, "requeueAfter", after)
		return ctrl.Result{RequeueAfter: after}, nil
	}
	// Stopped before a decision (the target is missing, the spec is invalid): a watch on
	// the target or a change of the spec brings the Canary back.
	return ctrl.Result{}, nil
}

// requeueAfter is the decision's wait counted from the moment the progression read the
// clock, not from now: the time this reconcile spent on checks, webhooks and writes is not
// added to every interval (a step would otherwise come that much late, step after step).
func (r *CanaryReconciler) requeueAfter(s *canaryScope) time.Duration {
	d := s.decision.RequeueAfter
	if d <= 0 {
		return 0
	}
	// Already due: as soon as possible, though never as a 0, which means no requeue.
	return max(d-r.Clock.Since(s.now), time.Millisecond)
}

// canaryScope is what one reconcile of a Canary learns and decides.
type canaryScope struct {
	canary *meshv1.Canary
	before *meshv1.Canary
	now    time.Time
	// target and primary are read as Deployments (a DaemonSet as its workload.View);
	// targetObj is the target as stored, which the canary's scale is written to.
	target    *appsv1.Deployment
	primary   *appsv1.Deployment
	targetObj client.Object
	apex      *corev1.Service
	hpa       *autoscalingv2.HorizontalPodAutoscaler
	policy    *meshv1.MeshPolicy
	obs       progress.Observation

	decision *progress.Decision
	// completed: every step ran without error, so the decision was carried out.
	completed bool
	warnings  []render.Warning
	tracked   []string // the target's tracked configs, part of its revision

	// What decide rendered, before anything is written: the primary and its config copies
	// (nil when the primary is not written this reconcile), the primary's autoscaler (nil
	// without one) and the routing.
	primaryObj client.Object
	copyObjs   []client.Object // the primary's copies of its ConfigMaps and Secrets
	hpaObj     *autoscalingv2.HorizontalPodAutoscaler
	router     router.Router
	routing    router.Set
}

// checkConflict refuses a Canary whose target Deployment (loadWorkloads found it; a missing
// one is reported first) an older Canary of the namespace already delivers: both would apply the same primary and VirtualService under one field
// manager, their weights would fight, and deleting one would take the other's objects. The
// older one owns the target (ties: the name first in order); a later one is Stalled with
// reason Conflict, names the owner, and writes nothing until the owner is gone or targets
// another Deployment (the sibling watch wakes it then).
func (r *CanaryReconciler) checkConflict(ctx context.Context, s *canaryScope) (bool, error) {
	owner, err := r.targetOwner(ctx, s.canary)
	if err != nil {
		return true, err
	}
	if owner == nil {
		return false, nil
	}
	c := s.canary
	kind := c.Spec.TargetRef.KindOrDefault()
	s.setNotReady(meshv1.ReasonConflict, fmt.Sprintf("%s %s/%s is delivered by Canary %s, created before this one: this Canary writes nothing until that one is deleted or targets another %s",
		kind, c.Namespace, c.Spec.TargetRef.Name, owner.Name, kind), true)
	return true, nil
}

// targetOwner returns the older Canary of c's namespace that delivers c's target, or nil
// when c owns it.
func (r *CanaryReconciler) targetOwner(ctx context.Context, c *meshv1.Canary) (*meshv1.Canary, error) {
	list := &meshv1.CanaryList{}
	if err := r.List(ctx, list, client.InNamespace(c.Namespace), client.MatchingFields{indexTarget: c.Spec.TargetRef.Name}); err != nil {
		return nil, fmt.Errorf("listing the Canaries of %s %s: %w", c.Spec.TargetRef.KindOrDefault(), c.Spec.TargetRef.Name, err)
	}
	var owner *meshv1.Canary
	for i := range list.Items {
		o := &list.Items[i]
		if o.UID == c.UID || !render.CreatedBefore(o, c) {
			continue
		}
		if owner == nil || render.CreatedBefore(o, owner) {
			owner = o
		}
	}
	return owner, nil
}

// loadWorkloads reads the target (a Deployment or a DaemonSet), the primary and the apex
// Service from the cache.
func (r *CanaryReconciler) loadWorkloads(ctx context.Context, s *canaryScope) (bool, error) {
	c := s.canary
	ns, kind := c.Namespace, c.Spec.TargetRef.KindOrDefault()
	get := workload.ReaderLookup(r.Client)
	var err error
	s.target, s.targetObj, err = workload.Get(ctx, get, kind, types.NamespacedName{Namespace: ns, Name: c.Spec.TargetRef.Name})
	if err != nil {
		return true, fmt.Errorf("reading the target %s: %w", kind, err)
	}
	if s.target == nil {
		s.setNotReady(meshv1.ReasonTargetNotFound, fmt.Sprintf("%s %s/%s does not exist", kind, ns, c.Spec.TargetRef.Name), false)
		return true, nil
	}
	if s.primary, _, err = workload.Get(ctx, get, kind, types.NamespacedName{Namespace: ns, Name: render.PrimaryName(c.Spec.TargetRef.Name)}); err != nil {
		return true, fmt.Errorf("reading the primary %s: %w", kind, err)
	}
	s.apex = &corev1.Service{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: c.Spec.TargetRef.Name}, s.apex); err != nil {
		if !apierrors.IsNotFound(err) {
			return true, fmt.Errorf("reading the apex Service: %w", err)
		}
		s.apex = nil
	}
	if ref := c.Spec.AutoscalerRef; ref != nil {
		s.hpa = &autoscalingv2.HorizontalPodAutoscaler{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, s.hpa); err != nil {
			if !apierrors.IsNotFound(err) {
				return true, fmt.Errorf("reading the autoscaler: %w", err)
			}
			s.hpa = nil // the primary keeps its replicas until the autoscaler appears
		}
	}
	policies := &meshv1.MeshPolicyList{}
	if err := r.List(ctx, policies, client.InNamespace(ns)); err != nil {
		return true, fmt.Errorf("listing MeshPolicies: %w", err)
	}
	// Of two policies for one Service the older one is in force (the newer one is refused as
	// a Conflict by its own controller).
	ps := make([]*meshv1.MeshPolicy, len(policies.Items))
	for i := range policies.Items {
		ps[i] = &policies.Items[i]
	}
	s.policy = desired.PolicyFor(ps, c.Spec.TargetRef.Name)
	return false, nil
}

// observe turns what was read into the progression's observation and runs what it needs:
// the due checks, the check-like webhooks and the gates. They share one budget
// (budget.Limits): a Canary whose endpoints hang holds this worker no longer than that,
// and what the budget did not reach reports Timeout, never a pass. The metric checks run
// beside the webhooks, which keep their order.
func (r *CanaryReconciler) observe(ctx context.Context, s *canaryScope) (bool, error) {
	c := s.canary
	tracked, err := workload.TrackedConfigs(ctx, r.Client, c.Namespace, &s.target.Spec.Template.Spec)
	if err != nil {
		return true, err
	}
	obs := progress.Observation{
		TargetRevision: render.Revision(&s.target.Spec.Template, tracked...),
		Request:        c.Annotations[meshv1.AnnotationRequest],
	}
	if s.primary != nil {
		obs.PrimaryReady, _ = workload.ReadyAt(s.primary, c.Spec.Analysis.PrimaryReadyThreshold)
		obs.PrimaryRevision = s.primary.Annotations[render.AnnotationRevision]
	}
	if workload.Replicas(s.target) > 0 {
		obs.CanaryReady, _ = workload.ReadyAt(s.target, c.Spec.Analysis.CanaryReadyThreshold)
	}
	needs := progress.Plan(&c.Spec, &c.Status, obs, s.now)
	ctx = budget.NewContext(ctx, budget.Start(r.Clock, r.Limits))
	var metrics sync.WaitGroup
	var measured []meshv1.CheckStatus
	if needs.RunChecks && r.Analyzer != nil {
		metrics.Go(func() { measured = r.Analyzer.Run(ctx, c) })
	} else if needs.RunChecks {
		measured = []meshv1.CheckStatus{}
	}
	var hookChecks []meshv1.CheckStatus
	for _, t := range needs.Hooks {
		for _, h := range webhooksOf(c, t) {
			hookChecks = append(hookChecks, r.callCheckHook(ctx, s, h))
		}
	}
	for _, t := range needs.Gates {
		for _, h := range webhooksOf(c, t) {
			obs.Gates = append(obs.Gates, r.callGate(ctx, s, h))
		}
	}
	metrics.Wait()
	// nil when nothing ran: the progression tells "not run" from "no results".
	obs.Checks = measured
	if hookChecks != nil {
		obs.Checks = append(obs.Checks, hookChecks...)
	}
	s.obs, s.tracked = obs, tracked
	return false, nil
}

// decide runs the progression and renders everything the decision says to write, before
// anything is written: a spec the renderer refuses leaves every object as it was. When the
// service's MeshPolicy cannot be composed with the Canary's routing (a route port that is not
// the Canary's, a host the namespace may not claim), the Canary still routes: the
// progression decides again with the routing held (all traffic on the primary, a rollout
// holding at its step; rollbacks land), the routing is rendered without the policy's extras,
// and the MeshPolicy condition says why.
func (r *CanaryReconciler) decide(ctx context.Context, s *canaryScope) (bool, error) {
	c := s.canary
	if err := r.Tenancy.CheckCanary(c, nil); err != nil {
		return true, r.invalid(s, err)
	}
	rt, err := router.For(c)
	if err != nil {
		return true, r.invalid(s, err)
	}
	if _, missing := r.unroutable.Load(rt.Provider()); missing {
		s.setNotReady(meshv1.ReasonRoutingAPIMissing, fmt.Sprintf("spec.routing.provider %s: the API server does not serve %s; canopy goes on once they are installed",
			rt.Provider(), kindNames(r.Scheme(), rt.Kinds())), false)
		return true, nil
	}
	s.router = rt
	d := progress.Step(&c.Spec, c.Status, s.obs, s.now)
	set, composeErr := r.renderRouting(s, d.Routing, s.policy)
	if composeErr != nil && s.policy != nil {
		s.obs.RoutingHeld = render.Describe(composeErr)
		d = progress.Step(&c.Spec, c.Status, s.obs, s.now)
		var err error
		if set, err = r.renderRouting(s, d.Routing, nil); err != nil {
			return true, r.invalid(s, err) // the Canary's own spec does not render either
		}
	} else if composeErr != nil {
		return true, r.invalid(s, composeErr)
	}
	s.decision, s.routing, s.warnings = &d, set, set.Warnings
	setPolicyCondition(&d.Status, s.policy, composeErr)
	setRoutingCondition(&d.Status, rt, set.Unsupported)
	return r.renderWorkload(ctx, s)
}

// renderRouting renders the Services and the router's objects for the routing, composing
// policy (nil: none) after the operator's tenancy allows it.
func (r *CanaryReconciler) renderRouting(s *canaryScope, rt progress.Routing, policy *meshv1.MeshPolicy) (router.Set, error) {
	if policy != nil {
		if err := r.Tenancy.CheckCanary(s.canary, policy); err != nil {
			return router.Set{}, err
		}
	}
	in := s.desired()
	in.Routing, in.Policy = rt, policy
	_, set, err := desired.CanaryRouting(in)
	return set, err
}

// desired is what the reconcile knows of the Canary for the desired package; the decision's
// routing and workload are set by the caller.
func (s *canaryScope) desired() desired.Canary {
	return desired.Canary{Canary: s.canary, Target: s.target, TargetObject: s.targetObj, Primary: s.primary, Autoscaler: s.hpa, Policy: s.policy}
}

// setRoutingCondition names on st the settings the Canary's router cannot express; without
// any there is no such condition.
func setRoutingCondition(st *meshv1.CanaryStatus, rt router.Router, unsupported []render.Warning) {
	if len(unsupported) == 0 {
		meta.RemoveStatusCondition(&st.Conditions, meshv1.ConditionRouting)
		return
	}
	fields := make([]string, 0, len(unsupported))
	for _, u := range unsupported {
		fields = append(fields, u.String())
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: meshv1.ConditionRouting, Status: metav1.ConditionFalse, Reason: meshv1.ReasonRoutingIncomplete,
		Message: fmt.Sprintf("routing.provider %s cannot express these settings, which are not in force: %s", rt.Provider(), strings.Join(fields, "; ")),
	})
}

// kindNames names the kinds of objs, for a message.
func kindNames(s *runtime.Scheme, objs []client.Object) string {
	names := make([]string, 0, len(objs))
	for _, o := range objs {
		if gvk, err := apiutil.GVKForObject(o, s); err == nil {
			names = append(names, gvk.GroupVersion().String()+" "+gvk.Kind)
		}
	}
	return strings.Join(names, ", ")
}

// setPolicyCondition reports on st whether the service's MeshPolicy is composed into the
// Canary's routing; without a policy there is no such condition.
func setPolicyCondition(st *meshv1.CanaryStatus, policy *meshv1.MeshPolicy, err error) {
	switch {
	case policy == nil:
		meta.RemoveStatusCondition(&st.Conditions, meshv1.ConditionMeshPolicy)
	case err != nil:
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: meshv1.ConditionMeshPolicy, Status: metav1.ConditionFalse, Reason: meshv1.ReasonPolicyNotComposed,
			Message: fmt.Sprintf("MeshPolicy %s cannot be composed with this Canary's routing, which goes on without it (all traffic on the primary while a rollout holds): %s", policy.Name, render.Describe(err)),
		})
	default:
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: meshv1.ConditionMeshPolicy, Status: metav1.ConditionTrue, Reason: meshv1.ReasonPolicyComposed,
			Message: fmt.Sprintf("MeshPolicy %s is composed into the routing", policy.Name),
		})
	}
}

// renderWorkload renders the primary Deployment, when the decision writes it, and the
// primary's autoscaler.
func (r *CanaryReconciler) renderWorkload(ctx context.Context, s *canaryScope) (bool, error) {
	d := s.decision
	in := s.desired()
	in.Routing, in.Workload = d.Routing, d.Workload
	// While the target carries the promoted revision the primary must be exactly what it
	// renders to: re-applying it puts back manual edits (the applier skips no-ops).
	in.Repair = s.primary != nil && s.obs.TargetRevision == d.Status.LastPromotedRevision &&
		s.obs.PrimaryRevision == d.Status.LastPromotedRevision
	if in.WritesPrimary() {
		// The copies of the configs are read and rendered with the primary, whose pods read
		// them; applyWorkload writes them first.
		configs, copies, err := r.primaryConfigs(ctx, s, in.Repair && !in.Workload.Initialize && !in.Workload.PromotePrimary)
		if err != nil {
			return true, r.invalid(s, err)
		}
		in.Configs, s.copyObjs = configs, copies
	}
	primary, hpa, err := desired.CanaryWorkload(in)
	if err != nil {
		return true, r.invalid(s, err)
	}
	s.primaryObj, s.hpaObj = primary, hpa
	return false, nil
}

// applyWorkload makes the primary and the target Deployments what the decision says.
func (r *CanaryReconciler) applyWorkload(ctx context.Context, s *canaryScope) (bool, error) {
	c, w := s.canary, s.decision.Workload
	if s.primaryObj != nil {
		for _, o := range append(s.copyObjs, s.primaryObj) {
			if err := r.apply(ctx, c, o); err != nil {
				return true, err
			}
		}
	}
	resyncSecrets(s)
	if n, ok := desired.CanaryReplicas(w, s.primary, s.target); ok {
		if err := r.scale(ctx, s.targetObj, n); err != nil {
			return true, err
		}
	}
	if s.hpaObj != nil {
		if err := r.apply(ctx, c, s.hpaObj); err != nil {
			return true, err
		}
	}
	return false, nil
}

// applyRouting applies the Services and the router's objects decide rendered, then deletes
// what another router wrote for the Canary (its spec.routing.provider changed).
func (r *CanaryReconciler) applyRouting(ctx context.Context, s *canaryScope) (bool, error) {
	c := s.canary
	adopted := s.apex != nil && !metav1.IsControlledBy(s.apex, c)
	for _, o := range s.routing.All() {
		if svc, ok := o.(*corev1.Service); ok && svc.Name == c.Spec.TargetRef.Name && adopted {
			// A Service the user already had is taken over but not owned: deleting the
			// Canary must not garbage-collect it.
			if err := r.applyUnowned(ctx, o); err != nil {
				return true, err
			}
			continue
		}
		if err := r.apply(ctx, c, o); err != nil {
			return true, err
		}
	}
	s.decision.Status.ServiceAdopted = adopted
	for _, other := range router.All() {
		if other.Provider() == s.router.Provider() {
			continue
		}
		routes, rest := other.Owned(c)
		if err := r.deleteAllOwned(ctx, c, append(routes, rest...)); err != nil {
			return true, err
		}
	}
	return false, nil
}

// scale sets the replicas of the target (workload.ScaleObject: a Deployment's scale
// subresource, a DaemonSet stopped or started); the applier knows the version written as
// canopy's own (apply.Writes.Own).
func (r *CanaryReconciler) scale(ctx context.Context, target client.Object, replicas int32) error {
	before := target.GetResourceVersion()
	if err := workload.ScaleObject(ctx, r.Client, target, replicas); err != nil {
		return err
	}
	if target.GetResourceVersion() != before {
		r.Applier.Writes().Wrote(target)
	}
	return nil
}

func (r *CanaryReconciler) apply(ctx context.Context, owner client.Object, obj client.Object) error {
	if err := controllerutil.SetControllerReference(owner, obj, r.Scheme()); err != nil {
		return err
	}
	return r.applyUnowned(ctx, obj)
}

func (r *CanaryReconciler) applyUnowned(ctx context.Context, obj client.Object) error {
	_, err := r.Applier.Apply(ctx, obj)
	return err
}

// invalid marks the Canary stalled on a spec the renderer refused; no retry helps until the
// spec changes, so the error is terminal.
func (r *CanaryReconciler) invalid(s *canaryScope, err error) error {
	reason := render.ReasonOf(err)
	if reason == "" {
		return err // a bug of ours, not of the spec: retry with backoff
	}
	s.setNotReady(reason, err.Error(), true)
	s.decision = nil
	return reconcile.TerminalError(err)
}

// SetupWithManager registers the controller and its watches.
func (r *CanaryReconciler) SetupWithManager(mgr ctrl.Manager, maxConcurrent int) error {
	byTarget := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		return r.canariesFor(ctx, o.GetNamespace(), indexTarget, o.GetName())
	})
	byAutoscaler := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		return r.canariesFor(ctx, o.GetNamespace(), indexAutoscaler, o.GetName())
	})
	byPolicy := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		return r.canariesFor(ctx, o.GetNamespace(), indexTarget, o.(*meshv1.MeshPolicy).Spec.TargetRef.Name)
	})
	bySibling := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		return r.canariesFor(ctx, o.GetNamespace(), indexTarget, o.(*meshv1.Canary).Spec.TargetRef.Name)
	})
	// canopy's own writes of what it generates or scales wake no Canary (apply.Writes.NotOwn).
	others := r.Applier.Writes().NotOwn()
	deployments := builder.WithPredicates(others, deploymentChanged)
	b := ctrl.NewControllerManagedBy(mgr)
	// Each router's kinds are watched where the API server serves them; a Canary choosing a
	// router whose API is missing says so (RoutingAPIMissing) until it is installed.
	var missing []router.Router
	for _, rt := range router.All() {
		served, err := kindsServed(mgr.GetRESTMapper(), mgr.GetScheme(), rt.Kinds())
		if err != nil {
			return err
		}
		if !served {
			r.unroutable.Store(rt.Provider(), true)
			missing = append(missing, rt)
			continue
		}
		for _, k := range rt.Kinds() {
			b = b.Owns(k, builder.WithPredicates(others))
		}
	}
	// Canaries waiting for a router's API are sent through this channel when it arrives.
	wake := make(chan event.GenericEvent)
	ctl, err := b.
		WatchesRawSource(source.Channel(wake, &handler.EnqueueRequestForObject{})).
		For(&meshv1.Canary{}, builder.WithPredicates(predicate.Or[client.Object](r.Applier.Writes().CaughtUp(), predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&appsv1.Deployment{}, deployments).
		Owns(&appsv1.DaemonSet{}, deployments).
		Owns(&corev1.Service{}, builder.WithPredicates(others)).
		Owns(&autoscalingv2.HorizontalPodAutoscaler{}, builder.WithPredicates(others)).
		// The primary's copies of ConfigMaps: a change or deletion by someone else is
		// repaired. (Secrets are not watched: see secretResync.)
		Owns(&corev1.ConfigMap{}, builder.WithPredicates(others)).
		Watches(&appsv1.Deployment{}, byTarget, deployments).
		Watches(&appsv1.DaemonSet{}, byTarget, deployments).
		Watches(&corev1.Service{}, byTarget, builder.WithPredicates(others)).
		Watches(&meshv1.MeshPolicy{}, byPolicy).
		// A Canary refused for a Conflict takes the target over once its owner is gone or
		// targets another Deployment.
		Watches(&meshv1.Canary{}, bySibling, builder.WithPredicates(siblingGone)).
		Watches(&autoscalingv2.HorizontalPodAutoscaler{}, byAutoscaler).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.canariesReading)).
		WithOptions(controller.Options{MaxConcurrentReconciles: maxConcurrent}).
		Named("canary").
		Build(r)
	if err != nil {
		return err
	}
	for _, rt := range missing {
		if err := mgr.Add(r.routerGate(mgr, ctl, rt, others, wake)); err != nil {
			return err
		}
	}
	return nil
}

// routerGate waits for the API of a router the API server did not serve at setup: once it
// does, the controller owns the router's kinds and the Canaries that chose it go on.
func (r *CanaryReconciler) routerGate(mgr ctrl.Manager, ctl controller.Controller, rt router.Router, others predicate.Predicate, wake chan event.GenericEvent) *apiGate {
	mgr.GetLogger().Info("A routing API is not installed: Canaries choosing it wait for it", "provider", rt.Provider(), "kinds", kindNames(mgr.GetScheme(), rt.Kinds()))
	return &apiGate{
		name: "routing provider " + string(rt.Provider()), wake: wake, interval: meshAPIPoll,
		served: func() (bool, error) { return kindsServed(mgr.GetRESTMapper(), mgr.GetScheme(), rt.Kinds()) },
		start: func() error {
			for _, k := range rt.Kinds() {
				owner := handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &meshv1.Canary{}, handler.OnlyControllerOwner())
				if err := ctl.Watch(source.Kind(mgr.GetCache(), k, owner, others)); err != nil {
					return fmt.Errorf("watching %T: %w", k, err)
				}
			}
			r.unroutable.Delete(rt.Provider())
			return nil
		},
		waiting: func(ctx context.Context) ([]client.Object, error) {
			list := &meshv1.CanaryList{}
			if err := r.List(ctx, list); err != nil {
				return nil, err
			}
			var out []client.Object
			for i := range list.Items {
				if c := &list.Items[i]; c.Spec.RoutingProviderOf() == rt.Provider() {
					out = append(out, c)
				}
			}
			return out, nil
		},
	}
}

// kindsServed says whether the API server serves every kind of objs.
func kindsServed(mapper meta.RESTMapper, s *runtime.Scheme, objs []client.Object) (bool, error) {
	for _, o := range objs {
		gvk, err := apiutil.GVKForObject(o, s)
		if err != nil {
			return false, err
		}
		if _, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			if meta.IsNoMatchError(err) {
				return false, nil
			}
			return false, fmt.Errorf("looking up %s: %w", gvk, err)
		}
	}
	return true, nil
}

// siblingGone passes what ends a Canary's ownership of its target: its deletion, or a new
// spec (maybe another target; the map function sees the old and the new object).
var siblingGone = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	UpdateFunc:  func(e event.UpdateEvent) bool { return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() },
	DeleteFunc:  func(event.DeleteEvent) bool { return true },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// deploymentChanged passes the Deployment and DaemonSet updates a Canary decides on (a
// DaemonSet read as its workload.View): its spec or metadata changed, or it became ready or
// stopped being so (workload.Ready is all canopy reads of a Deployment's status). A rolling Deployment's status is written many times by the
// controller-manager (replica counts, conditions) and each write used to wake its Canary:
// at a thousand rollouts these were most of canopy's reconciles.
var deploymentChanged = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	old, cur := workload.View(e.ObjectOld), workload.View(e.ObjectNew)
	if old == nil || cur == nil {
		return true
	}
	oldReady, _ := workload.Ready(old)
	curReady, _ := workload.Ready(cur)
	// A Canary with a readiness threshold below 100% decides on a Deployment that is not
	// fully available yet: each change of its available replicas may cross the threshold.
	rising := !curReady && old.Status.AvailableReplicas != cur.Status.AvailableReplicas
	return old.Generation != cur.Generation || oldReady != curReady || rising ||
		!cur.DeletionTimestamp.Equal(old.DeletionTimestamp) ||
		!maps.Equal(old.Labels, cur.Labels) || !maps.Equal(old.Annotations, cur.Annotations) ||
		!equality.Semantic.DeepEqual(old.OwnerReferences, cur.OwnerReferences)
}}

// canariesFor finds the Canaries of a namespace whose indexed field is name.
func (r *CanaryReconciler) canariesFor(ctx context.Context, namespace, index, name string) []reconcile.Request {
	list := &meshv1.CanaryList{}
	if err := r.List(ctx, list, client.InNamespace(namespace), client.MatchingFields{index: name}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing Canaries for a watched object", "object", klog.KRef(namespace, name))
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return out
}

// canariesReading finds the Canaries whose target reads a ConfigMap.
func (r *CanaryReconciler) canariesReading(ctx context.Context, cm client.Object) []reconcile.Request {
	list := &meshv1.CanaryList{}
	if err := r.List(ctx, list, client.InNamespace(cm.GetNamespace())); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing Canaries for a ConfigMap", "configMap", klog.KObj(cm))
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		c := &list.Items[i]
		d, _, err := workload.Get(ctx, workload.ReaderLookup(r.Client), c.Spec.TargetRef.KindOrDefault(), types.NamespacedName{Namespace: c.Namespace, Name: c.Spec.TargetRef.Name})
		if err != nil || d == nil {
			continue
		}
		if slices.Contains(workload.ConfigMapRefs(&d.Spec.Template.Spec), cm.GetName()) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(c)})
		}
	}
	return out
}

func webhooksOf(c *meshv1.Canary, t meshv1.WebhookType) []meshv1.CanaryWebhook {
	var out []meshv1.CanaryWebhook
	for _, h := range c.Spec.Analysis.Webhooks {
		if h.Type == t {
			out = append(out, h)
		}
	}
	return out
}
