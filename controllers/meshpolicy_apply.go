package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	istionetv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	istiotelv1 "istio.io/client-go/pkg/apis/telemetry/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/internal/router"
)

// The states of a generated object in status.objects.
const (
	stateApplied = "Applied"
	statePending = "Pending"
	stateFailed  = "Failed"
)

// render renders the policy for what was observed. When a Canary delivers the Service,
// the policy is also rendered into the Canary's routing, so that the policy reports the
// mistakes that would stop the Canary from carrying it (an mTLS mode its DestinationRules'
// TLS contradicts, a route to a port the Canary's Services lack).
func (r *MeshPolicyReconciler) render(ctx context.Context, s *policyScope) (bool, error) {
	opts := render.MeshPolicyOptions{
		CertificateReady:  s.serveHTTPS(),
		CanaryOwnsRouting: s.canary != nil,
		CanarySelector:    s.canarySelector,
	}
	if namesMeshProvider(s.policy) {
		providers, read, err := readMeshProviders(ctx, r.meshConfigReader(), r.meshConfig())
		if err != nil {
			return true, err
		}
		opts.MeshConfigRead, opts.TracingProviders, opts.AuthorizationProviders = read, providers.tracing, providers.authorization
	}
	set, err := render.MeshPolicyObjects(s.policy, s.svc, opts)
	var composed []render.Warning
	if err == nil && s.canary != nil && s.canaryTarget != nil {
		composed, err = compose(s)
	}
	if err != nil {
		reason := render.ReasonOf(err)
		if reason == "" {
			return true, fmt.Errorf("rendering: %w", err) // a bug: retry, and let it be seen
		}
		s.block(reason, err.Error(), true)
		return true, err
	}
	s.set = set
	for _, w := range append(set.Warnings, composed...) {
		s.warnings = append(s.warnings, policyWarning{meshv1.ReasonRenderWarning, w.String()})
	}
	return false, nil
}

// compose renders the Canary's routing with the policy, as the Canary's reconciler does
// (with the Canary's router), and keeps the errors and warnings that concern the policy,
// with its settings the router cannot express.
func compose(s *policyScope) ([]render.Warning, error) {
	tag := render.KindMeshPolicy + "/" + s.policy.Name
	about := func(object, message string) bool { return object == tag || strings.Contains(message, tag) }
	rt, err := router.For(s.canary)
	if err != nil {
		// An unknown provider is the Canary's own problem: its status says so.
		return nil, nil //nolint:nilerr // not the policy's error
	}
	set, err := rt.Render(router.Input{Canary: s.canary, Target: s.canaryTarget, Routing: progress.Routing{PrimaryWeight: 100}, Policy: s.policy})
	if err != nil {
		var mine []error
		for _, e := range flatten(err) {
			var fe *render.FieldError
			if !errors.As(e, &fe) || !about(fe.Object, fe.Message) {
				continue // the Canary's own problem: its status says so
			}
			if fe.Object == "" {
				fe = &render.FieldError{Object: "Canary/" + s.canary.Name, Field: fe.Field, Reason: fe.Reason, Message: fe.Message}
			}
			mine = append(mine, fe)
		}
		return nil, errors.Join(mine...)
	}
	var out []render.Warning
	for _, w := range set.Unsupported {
		if w.Object == tag {
			w.Message = fmt.Sprintf("%s (Canary %s routes with routing.provider %s)", w.Message, s.canary.Name, rt.Provider())
			out = append(out, w)
		}
	}
	for _, w := range set.Warnings {
		if about(w.Object, w.Message) {
			if w.Object == "" {
				w.Object = "Canary/" + s.canary.Name
			}
			out = append(out, w)
		}
	}
	return out, nil
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		out := make([]error, 0, len(j.Unwrap()))
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// apply applies every rendered object in order (a Certificate before the Gateway that
// names its Secret, the Gateway before the VirtualService bound to it). Objects in the
// policy's namespace are owned by it; the Gateway and Certificate of another namespace
// carry the owner labels only, and the finalizer removes them.
func (r *MeshPolicyReconciler) apply(ctx context.Context, s *policyScope) (bool, error) {
	p := s.policy
	objs := s.set.Objects()
	s.objectsKnown = true
	s.objects = make([]meshv1.GeneratedObject, 0, len(objs)+1)
	for _, o := range objs {
		s.objects = append(s.objects, meshv1.GeneratedObject{
			Kind: kindOf(o), Name: o.GetName(), Namespace: o.GetNamespace(), State: statePending, Message: "not applied yet",
		})
	}
	for i, obj := range objs {
		o := obj.(client.Object)
		if o.GetNamespace() == p.Namespace {
			if err := controllerutil.SetControllerReference(p, o, r.Scheme()); err != nil {
				return true, err
			}
		}
		if msg, err := r.ownerOf(ctx, p, o); err != nil || msg != "" {
			if err == nil {
				err = errors.New(msg)
				s.block(meshv1.ReasonConflict, fmt.Sprintf("%s %s/%s: %s", s.objects[i].Kind, o.GetNamespace(), o.GetName(), msg), true)
			}
			s.objects[i].State, s.objects[i].Message = stateFailed, err.Error()
			return true, err
		}
		changed, err := r.Applier.Apply(ctx, o)
		if err != nil {
			if apierrors.IsNotFound(err) && o.GetNamespace() != p.Namespace {
				err = fmt.Errorf("the ingress gateway's namespace %s does not exist: %w", o.GetNamespace(), err)
			}
			s.objects[i].State, s.objects[i].Message = stateFailed, err.Error()
			if apierrors.IsInvalid(err) {
				// The API server's schema refused what the renderer let through: no retry
				// helps until the spec (or canopy) changes.
				s.block(meshv1.ReasonApplyFailed, err.Error(), true)
			}
			return true, err
		}
		if changed {
			s.applied = append(s.applied, describe(s.objects[i]))
		}
		s.objects[i].State, s.objects[i].Message = s.objectState(obj)
	}
	if s.canary != nil {
		s.objects = append(s.objects, r.canaryRouting(ctx, s))
	}
	return false, nil
}

// ownerOf says why the policy must not apply o over the object of that name, if one
// exists: "" when it may. An object outside the policy's namespace must carry this
// policy's owner labels; one in it, unless it carries none (the namespace's own, taken
// over as before), must be this policy's or a Canary's of the namespace (which hands the
// Service's VirtualService over in place). canopy writes with cluster-wide rights: without
// this a name another owner uses would be overwritten, and the two would overwrite each
// other on every reconcile.
func (r *MeshPolicyReconciler) ownerOf(ctx context.Context, p *meshv1.MeshPolicy, o client.Object) (string, error) {
	gvk, err := apiutil.GVKForObject(o, r.Scheme())
	if err != nil {
		return "", err
	}
	// The typed object, read from the informer the controller already has for the kind.
	obj, err := r.Scheme().New(gvk)
	if err != nil {
		return "", err
	}
	live := obj.(client.Object)
	if err := r.Get(ctx, client.ObjectKeyFromObject(o), live); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", fmt.Errorf("reading %s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
	}
	l := live.GetLabels()
	kind, ns, name := l[meshv1.LabelOwnerKind], l[meshv1.LabelOwnerNamespace], l[meshv1.LabelOwnerName]
	switch {
	case kind == render.KindMeshPolicy && ns == p.Namespace && name == render.LabelValue(p.Name):
		return "", nil
	case live.GetNamespace() == p.Namespace && l[meshv1.LabelManagedBy] != meshv1.ManagedByValue && metav1.GetControllerOf(live) == nil:
		return "", nil
	case live.GetNamespace() == p.Namespace && kind == render.KindCanary && ns == p.Namespace:
		return "", nil
	case kind == "":
		return "the object exists and is not this policy's (it has no canopy owner labels): canopy does not apply over it; delete it or rename what the policy generates", nil
	default:
		return fmt.Sprintf("the object is %s %s/%s's (its owner labels say so): canopy does not apply over another owner's object", kind, ns, name), nil
	}
}

// objectState is what status says of an applied object.
func (s *policyScope) objectState(o render.Object) (string, string) {
	cs := s.certStatus
	switch o.(type) {
	case *cmv1.Certificate:
		if cs != nil && !cs.Ready {
			return statePending, cs.Message
		}
	case *istionetv1.Gateway:
		// The ingress Gateway waits for its certificate; an egress one does not.
		if cs != nil && !s.serveHTTPS() && o.GetName() == render.GatewayName(s.policy) {
			return statePending, fmt.Sprintf("serving HTTP only until Certificate %s/%s is Ready", cs.Namespace, cs.Name)
		}
	}
	return stateApplied, ""
}

// canaryRouting is the status entry of the Service's route (the VirtualService, or the
// HTTPRoute of a Canary routed with the Gateway API) when a Canary writes it.
func (r *MeshPolicyReconciler) canaryRouting(ctx context.Context, s *policyScope) meshv1.GeneratedObject {
	p, c := s.policy, s.canary
	g := meshv1.GeneratedObject{Kind: "VirtualService", Name: p.Spec.TargetRef.Name, Namespace: p.Namespace}
	what := "with this policy's routes, retries and timeouts"
	carried := "; its DestinationRules carry the resilience and TLS"
	rt, err := router.For(c)
	if err != nil {
		g.State, g.Message = statePending, fmt.Sprintf("Canary %s delivers the Service: %v", c.Name, err)
		return g
	}
	routes, _ := rt.Owned(c)
	route := routes[0]
	if gvk, err := apiutil.GVKForObject(route, r.Scheme()); err == nil {
		g.Kind = gvk.Kind
	}
	if rt.Provider() != meshv1.RoutingIstio {
		what = fmt.Sprintf("with what routing.provider %s can express of this policy", rt.Provider())
		carried = ""
	}
	err = r.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: route.GetName()}, route)
	if err == nil && route.GetLabels()[meshv1.LabelOwnerKind] == render.KindCanary && route.GetLabels()[meshv1.LabelOwnerName] == render.LabelValue(c.Name) {
		g.State = stateApplied
		g.Message = fmt.Sprintf("written by Canary %s, %s%s", c.Name, what, carried)
		return g
	}
	g.State, g.Message = statePending, fmt.Sprintf("Canary %s delivers the Service and is to write it, %s", c.Name, what)
	return g
}

// generatedKinds are the kinds a MeshPolicy generates; anyNamespace marks those that live
// in the gateway's namespace, which may be another one (or have been, before a change).
var generatedKinds = []struct {
	kind         string
	list         func() client.ObjectList
	anyNamespace bool
}{
	{"PeerAuthentication", func() client.ObjectList { return &istiosecv1.PeerAuthenticationList{} }, false},
	{"AuthorizationPolicy", func() client.ObjectList { return &istiosecv1.AuthorizationPolicyList{} }, false},
	{"RequestAuthentication", func() client.ObjectList { return &istiosecv1.RequestAuthenticationList{} }, false},
	{"ServiceEntry", func() client.ObjectList { return &istionetv1.ServiceEntryList{} }, false},
	{"DestinationRule", func() client.ObjectList { return &istionetv1.DestinationRuleList{} }, false},
	{"VirtualService", func() client.ObjectList { return &istionetv1.VirtualServiceList{} }, false},
	{"Telemetry", func() client.ObjectList { return &istiotelv1.TelemetryList{} }, false},
	{"EnvoyFilter", func() client.ObjectList { return &istionetv1alpha3.EnvoyFilterList{} }, false},
	{"Certificate", func() client.ObjectList { return &cmv1.CertificateList{} }, true},
	{"Gateway", func() client.ObjectList { return &istionetv1.GatewayList{} }, true},
}

// prune deletes what the policy generated before and no longer renders.
func (r *MeshPolicyReconciler) prune(ctx context.Context, s *policyScope) (bool, error) {
	return false, r.pruneExcept(ctx, s, s.set.Objects())
}

// pruneExcept deletes the objects carrying the policy's owner labels that are not in keep.
func (r *MeshPolicyReconciler) pruneExcept(ctx context.Context, s *policyScope, keep []render.Object) error {
	want := map[string]bool{}
	for _, o := range keep {
		want[kindOf(o)+"/"+o.GetNamespace()+"/"+o.GetName()] = true
	}
	return r.pruneWhere(ctx, s, func(kind string, o client.Object) bool {
		return !want[kind+"/"+o.GetNamespace()+"/"+o.GetName()]
	})
}

// pruneWhere deletes the objects carrying the policy's owner labels that drop selects. It
// never deletes an object another owner controls, nor, while a Canary delivers the
// Service, the VirtualService named after it: the Canary takes that one over in place.
func (r *MeshPolicyReconciler) pruneWhere(ctx context.Context, s *policyScope, drop func(kind string, o client.Object) bool) error {
	p := s.policy
	labels := client.MatchingLabels(render.OwnerLabels(render.KindMeshPolicy, p.Namespace, p.Name))
	for _, k := range generatedKinds {
		if k.kind == "Certificate" && r.NoCertManager.Load() {
			continue
		}
		list := k.list()
		opts := []client.ListOption{labels}
		if !k.anyNamespace {
			opts = append(opts, client.InNamespace(p.Namespace))
		}
		if err := r.List(ctx, list, opts...); err != nil {
			return fmt.Errorf("listing %ss: %w", k.kind, err)
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return err
		}
		for _, it := range items {
			o := it.(client.Object)
			if !drop(k.kind, o) {
				continue
			}
			if ref := metav1.GetControllerOf(o); ref != nil && ref.UID != p.UID {
				continue
			}
			if s.canary != nil && k.kind == "VirtualService" && o.GetNamespace() == p.Namespace && o.GetName() == p.Spec.TargetRef.Name {
				continue
			}
			uid := o.GetUID()
			if err := r.Delete(ctx, o, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("deleting %s %s/%s: %w", k.kind, o.GetNamespace(), o.GetName(), err)
			}
			s.deleted = append(s.deleted, fmt.Sprintf("%s %s/%s", k.kind, o.GetNamespace(), o.GetName()))
		}
	}
	return nil
}

// finalize removes everything the policy generated, then the finalizer.
func (r *MeshPolicyReconciler) finalize(ctx context.Context, p *meshv1.MeshPolicy) error {
	if !controllerutil.ContainsFinalizer(p, MeshPolicyFinalizer) {
		return nil
	}
	if err := r.pruneExcept(ctx, &policyScope{policy: p}, nil); err != nil {
		return err
	}
	patch := client.MergeFrom(p.DeepCopy())
	controllerutil.RemoveFinalizer(p, MeshPolicyFinalizer)
	if err := r.Patch(ctx, p, patch); err != nil {
		return fmt.Errorf("removing the finalizer: %w", err)
	}
	return nil
}

func kindOf(o render.Object) string { return o.GetObjectKind().GroupVersionKind().Kind }

func describe(g meshv1.GeneratedObject) string {
	return fmt.Sprintf("%s %s/%s", g.Kind, g.Namespace, g.Name)
}

func (r *MeshPolicyReconciler) meshConfig() types.NamespacedName {
	if r.MeshConfig.Name == "" {
		return DefaultMeshConfig
	}
	return r.MeshConfig
}

func (r *MeshPolicyReconciler) meshConfigReader() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

// namesMeshProvider says whether the policy names an extension provider of the mesh
// configuration (a tracing provider, an external authorizer), which is then read.
func namesMeshProvider(p *meshv1.MeshPolicy) bool {
	t, a := p.Spec.Telemetry, p.Spec.Authorization
	return (t != nil && t.Tracing != nil && t.Tracing.Provider != "") || (a != nil && a.Provider != "")
}
