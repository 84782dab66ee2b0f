package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	istionetv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	istiotelv1 "istio.io/client-go/pkg/apis/telemetry/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/apply"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/internal/router"
)

// MeshPolicyFinalizer lets canopy delete a MeshPolicy's Gateway and Certificate before the
// policy goes: they live in the gateway's namespace, where no ownerReference can point at
// the policy, so the garbage collector would never remove them.
const MeshPolicyFinalizer = "mesh.canopy.dev/finalizer"

// indexPolicyTarget indexes MeshPolicies by the name of their target Service.
const indexPolicyTarget = "spec.targetRef.name"

// MeshPolicyReconciler renders MeshPolicies into Istio and cert-manager objects and keeps
// them applied.
type MeshPolicyReconciler struct {
	client.Client
	Applier  *apply.Applier
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
	// Tenancy is what a MeshPolicy may claim beyond its namespace (nil: nothing).
	Tenancy *render.Tenancy
	// MeshConfig is the ConfigMap of istiod's mesh configuration (zero: DefaultMeshConfig),
	// read uncached through APIReader (nil: the Client) when a policy names a tracing
	// provider or an external authorizer, to check that it exists.
	MeshConfig types.NamespacedName
	APIReader  client.Reader
	// Prometheus answers the queries of spec.rollout (nil: a rollout waits, saying so).
	Prometheus PolicyPrometheus

	// NoCertManager says cert-manager's API is not installed: canopy then runs without
	// watching Certificates, and policies with ingress.tls say what is missing. Setup
	// finds out, and a gate starts the watches once cert-manager is installed, with no
	// restart (see apiGate).
	NoCertManager atomic.Bool
}

// +kubebuilder:rbac:groups=mesh.canopy.dev,resources=meshpolicies,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=mesh.canopy.dev,resources=meshpolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=mesh.canopy.dev,resources=meshpolicies/finalizers,verbs=update
// +kubebuilder:rbac:groups=mesh.canopy.dev,resources=canaries,verbs=get;list;watch
// +kubebuilder:rbac:groups=security.istio.io,resources=peerauthentications;authorizationpolicies;requestauthentications,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.istio.io,resources=gateways;serviceentries;virtualservices;destinationrules,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=telemetry.istio.io,resources=telemetries,verbs=get;list;watch;create;update;patch;delete
// The rate limit's EnvoyFilters are applied server-side (create, patch), never updated.
// +kubebuilder:rbac:groups=networking.istio.io,resources=envoyfilters,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificates,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificaterequests,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=services;serviceaccounts,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile makes a MeshPolicy's generated objects what its spec and the cluster say.
func (r *MeshPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	p := &meshv1.MeshPolicy{}
	if err := r.Get(ctx, req.NamespacedName, p); err != nil {
		if apierrors.IsNotFound(err) {
			r.Applier.Writes().Forget(&meshv1.MeshPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: req.Namespace, Name: req.Name}})
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	fresh, err := r.Applier.Writes().Fresh(ctx, r.Client, p)
	if err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !fresh {
		return ctrl.Result{RequeueAfter: staleRetry}, nil
	}
	if !p.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, p)
	}
	if !controllerutil.ContainsFinalizer(p, MeshPolicyFinalizer) {
		patch := client.MergeFromWithOptions(p.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(p, MeshPolicyFinalizer)
		if err := r.Patch(ctx, p, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding the finalizer: %w", err)
		}
		r.Applier.Writes().Wrote(p)
	}

	s := &policyScope{policy: p, before: p.DeepCopy(), now: r.Clock.Now()}
	defer func() {
		if err := r.writeStatus(ctx, s); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	for _, step := range []func(context.Context, *policyScope) (bool, error){
		r.checkTenancy,
		r.loadTarget,
		r.checkConflicts,
		r.observeCanary,
		r.observeCertificate,
		r.render,
		r.rollout,
		r.checkConsistency,
		r.apply,
		r.prune,
	} {
		done, err := step(ctx, s)
		if err != nil {
			return ctrl.Result{}, s.fail(err)
		}
		if done {
			break
		}
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Reconciled", "objects", len(s.objects), "applied", len(s.applied), "deleted", len(s.deleted))
	return ctrl.Result{RequeueAfter: s.nextDecision()}, nil
}

// nextDecision is how long until the rendering changes with time alone: the Gateway serves
// HTTPS with the Certificate's Secret until its notAfter (serveHTTPS), and at that moment
// nothing else may wake the policy (cert-manager's renewal keeps failing, so the Certificate
// does not change). 0 when nothing depends on the time.
func (s *policyScope) nextDecision() time.Duration {
	if !s.serveHTTPS() || s.cert.Status.NotAfter == nil {
		return s.rolloutRequeue
	}
	// A moment past notAfter, so that serveHTTPS sees the certificate expired.
	d := s.cert.Status.NotAfter.Sub(s.now) + time.Second
	if s.rolloutRequeue > 0 {
		d = min(d, s.rolloutRequeue)
	}
	return d
}

// policyScope is what one reconcile of a MeshPolicy learns and does.
type policyScope struct {
	policy *meshv1.MeshPolicy
	before *meshv1.MeshPolicy
	now    time.Time

	svc *corev1.Service
	// canary delivers the Service; it writes the VirtualService and DestinationRules.
	canary         *meshv1.Canary
	canaryTarget   *appsv1.Deployment
	canarySelector map[string]string
	// cert is the observed ingress Certificate; certStatus what status says of it.
	cert       *cmv1.Certificate
	certStatus *meshv1.CertificateStatus
	certReason string

	set      render.MeshPolicySet
	warnings []policyWarning

	// rollout is spec.rollout's status and condition after this reconcile (nil when its
	// step did not run); rolloutRequeue when to look again.
	rollout        *meshv1.PolicyRolloutStatus
	rolloutCond    *metav1.Condition
	rolloutRequeue time.Duration

	// objects is the generated objects' status; objectsKnown says it replaces the old.
	objects      []meshv1.GeneratedObject
	objectsKnown bool
	applied      []string
	deleted      []string

	// problem keeps the policy from being Ready.
	problem *policyProblem
	// transient is set when the reconcile failed in a way a retry may fix.
	transient bool
}

type policyWarning struct{ reason, message string }

type policyProblem struct {
	reason, message string
	// stalled: only a change of a resource (this spec, another policy, a Canary) fixes it.
	stalled bool
}

func (s *policyScope) block(reason, message string, stalled bool) {
	s.problem = &policyProblem{reason: reason, message: message, stalled: stalled}
}

// fail records why the reconcile stopped and returns the error to return: terminal when
// the problem is the spec, so that controller-runtime does not retry in vain.
func (s *policyScope) fail(err error) error {
	if s.problem != nil && s.problem.stalled {
		return reconcile.TerminalError(err)
	}
	s.transient = true
	s.block(meshv1.ReasonApplyFailed, err.Error(), false)
	return err
}

// SetupWithManager registers the controller and its watches.
func (r *MeshPolicyReconciler) SetupWithManager(mgr ctrl.Manager, maxConcurrent int) error {
	byName := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		return r.policiesTargeting(ctx, o.GetNamespace(), o.GetName())
	})
	byCanary := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		return r.policiesTargeting(ctx, o.GetNamespace(), o.(*meshv1.Canary).Spec.TargetRef.Name)
	})
	byHost := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		dr := o.(*istionetv1.DestinationRule)
		return r.policiesTargeting(ctx, o.GetNamespace(), hostService(dr.Spec.GetHost(), dr.Namespace))
	})
	byOwnerLabels := handler.EnqueueRequestsFromMapFunc(r.policyOfLabels)
	byServiceAccount := handler.EnqueueRequestsFromMapFunc(r.policiesNaming)
	// A Deployment's or DaemonSet's selector is immutable: only its coming and going changes
	// what a policy of a Canary's Service renders for the canary's pods.
	createdOrDeleted := predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return true },
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
	// Without cert-manager a watch on Certificates would keep the manager from starting,
	// Canaries included: the watches are added once its API appears.
	missing, err := certManagerMissing(mgr.GetRESTMapper())
	if err != nil {
		return err
	}
	r.NoCertManager.Store(missing)
	// Policies waiting for cert-manager are sent through this channel when it arrives.
	wake := make(chan event.GenericEvent)
	b := ctrl.NewControllerManagedBy(mgr).
		For(&meshv1.MeshPolicy{}, builder.WithPredicates(predicate.Or[client.Object](r.Applier.Writes().CaughtUp(), predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&istiosecv1.PeerAuthentication{}).
		Owns(&istiosecv1.AuthorizationPolicy{}).
		Owns(&istiosecv1.RequestAuthentication{}).
		Owns(&istionetv1.ServiceEntry{}).
		Owns(&istionetv1.DestinationRule{}).
		Owns(&istionetv1.VirtualService{}).
		Owns(&istiotelv1.Telemetry{}).
		Owns(&istionetv1alpha3.EnvoyFilter{}).
		// The Gateway and Certificate of another namespace carry owner labels only.
		Watches(&istionetv1.Gateway{}, byOwnerLabels).
		Watches(&corev1.Service{}, byName).
		Watches(&corev1.ServiceAccount{}, byServiceAccount, builder.WithPredicates(createdOrDeleted)).
		Watches(&meshv1.Canary{}, byCanary, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&appsv1.Deployment{}, byName, builder.WithPredicates(createdOrDeleted)).
		Watches(&appsv1.DaemonSet{}, byName, builder.WithPredicates(createdOrDeleted)).
		// The Service's VirtualService changes hands with a Canary; another author's
		// DestinationRule for the host may contradict the mTLS mode.
		Watches(&istionetv1.VirtualService{}, byName).
		Watches(&istionetv1.DestinationRule{}, byHost).
		WatchesRawSource(source.Channel(wake, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: maxConcurrent}).
		Named("meshpolicy")
	// The route a Canary of another router writes for the Service (an HTTPRoute) changes
	// hands with it too, where the API server serves it.
	for _, rt := range router.All() {
		for _, k := range rt.Kinds() {
			switch k.(type) {
			case *istionetv1.VirtualService, *istionetv1.DestinationRule:
				continue // watched above
			}
			served, err := kindsServed(mgr.GetRESTMapper(), mgr.GetScheme(), []client.Object{k})
			if err != nil {
				return err
			}
			if served {
				b = b.Watches(k, byName)
			}
		}
	}
	watchCertificates := func(add func(source.Source) error) error {
		for _, obj := range []client.Object{&cmv1.Certificate{}, &cmv1.CertificateRequest{}} {
			if err := add(source.Kind(mgr.GetCache(), obj, byOwnerLabels)); err != nil {
				return fmt.Errorf("watching %T: %w", obj, err)
			}
		}
		return nil
	}
	if !missing {
		if err := watchCertificates(func(src source.Source) error { b = b.WatchesRawSource(src); return nil }); err != nil {
			return err
		}
		return b.Complete(r)
	}
	mgr.GetLogger().Info("cert-manager's Certificate API is not installed: MeshPolicies with ingress.tls wait for it")
	ctl, err := b.Build(r)
	if err != nil {
		return err
	}
	return mgr.Add(&apiGate{
		name: "cert-manager's Certificates", wake: wake, interval: meshAPIPoll,
		served: func() (bool, error) {
			missing, err := certManagerMissing(mgr.GetRESTMapper())
			return !missing, err
		},
		start: func() error {
			if err := watchCertificates(ctl.Watch); err != nil {
				return err
			}
			r.NoCertManager.Store(false)
			return nil
		},
		waiting: func(ctx context.Context) ([]client.Object, error) {
			policies := &meshv1.MeshPolicyList{}
			if err := mgr.GetClient().List(ctx, policies); err != nil {
				return nil, err
			}
			var out []client.Object
			for i := range policies.Items {
				if p := &policies.Items[i]; p.Spec.Ingress != nil && p.Spec.Ingress.TLS != nil {
					out = append(out, p)
				}
			}
			return out, nil
		},
	})
}

// policiesTargeting finds the MeshPolicies of the Service name.
func (r *MeshPolicyReconciler) policiesTargeting(ctx context.Context, namespace, name string) []reconcile.Request {
	if name == "" {
		return nil
	}
	list := &meshv1.MeshPolicyList{}
	if err := r.List(ctx, list, client.InNamespace(namespace), client.MatchingFields{indexPolicyTarget: name}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing MeshPolicies for a watched object", "object", klog.KRef(namespace, name))
		return nil
	}
	return requestsFor(list.Items, func(*meshv1.MeshPolicy) bool { return true })
}

// policyOfLabels finds the MeshPolicy an object's owner labels name.
func (r *MeshPolicyReconciler) policyOfLabels(ctx context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	if l[meshv1.LabelOwnerKind] != render.KindMeshPolicy || l[meshv1.LabelOwnerNamespace] == "" {
		return nil
	}
	list := &meshv1.MeshPolicyList{}
	if err := r.List(ctx, list, client.InNamespace(l[meshv1.LabelOwnerNamespace])); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing MeshPolicies for a watched object", "object", klog.KObj(o))
		return nil
	}
	// The label holds a shortened name when the policy's is longer than a label value.
	return requestsFor(list.Items, func(p *meshv1.MeshPolicy) bool { return render.LabelValue(p.Name) == l[meshv1.LabelOwnerName] })
}

// policiesNaming finds the MeshPolicies whose authorization names a ServiceAccount.
func (r *MeshPolicyReconciler) policiesNaming(ctx context.Context, o client.Object) []reconcile.Request {
	list := &meshv1.MeshPolicyList{}
	if err := r.List(ctx, list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing MeshPolicies for a watched object", "object", klog.KObj(o))
		return nil
	}
	ref := o.GetNamespace() + "/" + o.GetName()
	return requestsFor(list.Items, func(p *meshv1.MeshPolicy) bool {
		for _, sa := range serviceAccountRefs(p) {
			if sa.ref == ref {
				return true
			}
		}
		return false
	})
}

func requestsFor(items []meshv1.MeshPolicy, keep func(*meshv1.MeshPolicy) bool) []reconcile.Request {
	var out []reconcile.Request
	for i := range items {
		if keep(&items[i]) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&items[i])})
		}
	}
	return out
}
