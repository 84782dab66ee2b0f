package cli

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/desired"
	"canopy.dev/canopy/internal/progress"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/internal/workload"
)

// generated is one object canopy would write.
type generated struct {
	obj render.Object
	// owner is the canopy resource it is generated for, "Canary bookinfo/reviews".
	owner string
	// note says when canopy writes it, where that is not on every reconcile.
	note string
}

// rendering is what generate rendered.
type rendering struct {
	objects []generated
	// warnings are the renderer's, each naming its resource.
	warnings []string
	// policies are the MeshPolicies rendered: canopy deletes what they generated before
	// and no longer generate.
	policies []*meshv1.MeshPolicy
}

// generateOptions say where generate reads what the files lack, and what it assumes.
type generateOptions struct {
	// live is the cluster (diff); nil renders from the files alone.
	live client.Reader
	// certificateReady is, offline, whether to render ingress Gateways as they are once
	// their Certificate is issued (HTTPS) or before (plain HTTP). With live, the
	// Certificate's state decides.
	certificateReady bool
	now              time.Time
	// origin names where the given objects come from in notes: "the files" by default.
	origin string
}

func (o generateOptions) originOrFiles() string {
	if o.origin == "" {
		return "the files"
	}
	return o.origin
}

// world is the objects generate reads: the files', and the cluster's for what the files
// lack. It is a client.Reader for Get, which workload.TrackedConfigs needs.
type world struct {
	scheme *runtime.Scheme
	files  []manifest
	live   client.Reader
	// now is the time the Canaries' statuses are read at (desired.FromStatus).
	now time.Time
}

var _ client.Reader = (*world)(nil)

func (w *world) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	gvk, err := apiutil.GVKForObject(obj, w.scheme)
	if err != nil {
		return err
	}
	for _, m := range w.files {
		mg, err := apiutil.GVKForObject(m.obj, w.scheme)
		if err != nil || mg.GroupKind() != gvk.GroupKind() || m.obj.GetNamespace() != key.Namespace || m.obj.GetName() != key.Name {
			continue
		}
		src := reflect.ValueOf(m.obj.DeepCopyObject())
		dst := reflect.ValueOf(obj)
		if src.Type() != dst.Type() {
			return fmt.Errorf("%s: %s %s is %s; canopy reads %s", m.source, gvk.Kind, key.Name, mg.GroupVersion(), gvk.GroupVersion())
		}
		dst.Elem().Set(src.Elem())
		return nil
	}
	if w.live != nil {
		return w.live.Get(ctx, key, obj, opts...)
	}
	return apierrors.NewNotFound(schema.GroupResource{Group: gvk.Group, Resource: gvk.Kind}, key.Name)
}

// List is not needed by what generate calls; it refuses rather than answer wrongly.
func (w *world) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("listing is not supported while rendering")
}

// canaries are the Canaries of namespace ns: the files', then the cluster's they do not name.
func (w *world) canaries(ctx context.Context, ns string) ([]*meshv1.Canary, error) {
	list := &meshv1.CanaryList{}
	if err := w.listLive(ctx, ns, list); err != nil {
		return nil, err
	}
	live := make([]*meshv1.Canary, 0, len(list.Items))
	for i := range list.Items {
		live = append(live, &list.Items[i])
	}
	return merge(fromFiles[*meshv1.Canary](w, ns), live), nil
}

// policies are the MeshPolicies of namespace ns, the files' first.
func (w *world) policies(ctx context.Context, ns string) ([]*meshv1.MeshPolicy, error) {
	list := &meshv1.MeshPolicyList{}
	if err := w.listLive(ctx, ns, list); err != nil {
		return nil, err
	}
	live := make([]*meshv1.MeshPolicy, 0, len(list.Items))
	for i := range list.Items {
		live = append(live, &list.Items[i])
	}
	return merge(fromFiles[*meshv1.MeshPolicy](w, ns), live), nil
}

func (w *world) listLive(ctx context.Context, ns string, list client.ObjectList) error {
	if w.live == nil {
		return nil
	}
	if err := w.live.List(ctx, list, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("listing the cluster's %T: %w", list, err)
	}
	return nil
}

// fromFiles are the files' objects of type T in namespace ns.
func fromFiles[T client.Object](w *world, ns string) []T {
	var out []T
	for _, m := range w.files {
		if o, ok := m.obj.(T); ok && o.GetNamespace() == ns {
			out = append(out, o)
		}
	}
	return out
}

// merge adds to the files' objects the live ones they do not name and that are not being
// deleted: the files are what is about to be applied.
func merge[T client.Object](files, live []T) []T {
	out := files
	for _, o := range live {
		shadowed := slices.ContainsFunc(files, func(f T) bool { return f.GetName() == o.GetName() })
		if !shadowed && o.GetDeletionTimestamp().IsZero() {
			out = append(out, o)
		}
	}
	return out
}

// canaryFor is the Canary delivering Service name, as the controllers pick it.
func (w *world) canaryFor(ctx context.Context, ns, name string) (*meshv1.Canary, error) {
	cs, err := w.canaries(ctx, ns)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		if c.Spec.TargetRef.Name == name {
			return c, nil
		}
	}
	return nil, nil
}

// policyFor is the MeshPolicy of Service name. Of two, canopy puts the older in force
// (creation time, then name) and refuses the other; manifests read offline carry no
// creation time to tell, so two of them are an error.
func (w *world) policyFor(ctx context.Context, ns, name string) (*meshv1.MeshPolicy, error) {
	ps, err := w.policies(ctx, ns)
	if err != nil {
		return nil, err
	}
	// Files carry no creation times: two policies of the files for one Service have no
	// order, where the cluster would apply the older.
	var seen *meshv1.MeshPolicy
	for _, p := range ps {
		if p.Spec.TargetRef.Name != name || !p.DeletionTimestamp.IsZero() {
			continue
		}
		if seen != nil && (seen.CreationTimestamp.IsZero() || p.CreationTimestamp.IsZero()) {
			return nil, fmt.Errorf("MeshPolicies %s and %s both target Service %s/%s: canopy applies only the older; merge them or delete one",
				seen.Name, p.Name, ns, name)
		}
		seen = p
	}
	return desired.PolicyFor(ps, name), nil
}

// lookup reads obj by key; found is false when it exists neither in the files nor the cluster.
func (w *world) lookup(ctx context.Context, ns, name string, obj client.Object) (bool, error) {
	err := w.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	default:
		return false, err
	}
}

// generate renders what canopy would write for the Canaries and MeshPolicies of the files,
// as its controllers do, and the Canaries whose routing a MeshPolicy of the files changes.
// Warnings are the renderer's; errors are collected so that one bad resource does not hide
// the others' output.
func generate(ctx context.Context, s *runtime.Scheme, files []manifest, opts generateOptions) (rendering, error) {
	w := &world{scheme: s, files: files, live: opts.live, now: opts.now}
	var out []generated
	var warnings []string
	var errs []error
	var inForce []*meshv1.MeshPolicy
	rendered := map[client.ObjectKey]bool{}

	renderCanary := func(c *meshv1.Canary, routingOnly bool, why string) {
		key := client.ObjectKeyFromObject(c)
		if rendered[key] {
			return
		}
		rendered[key] = true
		objs, warns, err := w.canaryObjects(ctx, c, routingOnly)
		owner := "Canary " + key.String() + why
		for _, o := range objs {
			o.owner = owner
			out = append(out, o)
		}
		for _, x := range warns {
			warnings = append(warnings, owner+": "+x)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", owner, err))
		}
	}

	type policyToRender struct {
		p   *meshv1.MeshPolicy
		why string
	}
	var policies []policyToRender
	for _, m := range files {
		switch o := m.obj.(type) {
		case *meshv1.Canary:
			renderCanary(o, false, "")
			// The cluster's policy of the Service changes with a Canary: its workload
			// policies gain copies for the canary's pods, its routing moves to the Canary.
			p, err := w.policyFor(ctx, o.Namespace, o.Spec.TargetRef.Name)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", render.KindCanary, client.ObjectKeyFromObject(o), err))
			} else if p != nil && !w.inFiles(p) {
				policies = append(policies, policyToRender{p, " (with Canary " + o.Name + " of " + opts.originOrFiles() + ")"})
			}
		case *meshv1.MeshPolicy:
			policies = append(policies, policyToRender{p: o})
		}
	}
	seen := map[client.ObjectKey]bool{}
	for _, pr := range policies {
		p := pr.p
		key := client.ObjectKeyFromObject(p)
		if seen[key] {
			continue
		}
		seen[key] = true
		if inForce, err := w.policyFor(ctx, p.Namespace, p.Spec.TargetRef.Name); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", render.KindMeshPolicy, key, err))
			continue
		} else if inForce != nil && inForce.Name != p.Name {
			warnings = append(warnings, fmt.Sprintf("%s %s: not applied: MeshPolicy %s already targets Service %s (it is older)",
				render.KindMeshPolicy, key, inForce.Name, p.Spec.TargetRef.Name))
			continue
		}
		inForce = append(inForce, p)
		objs, warns, canary, err := w.policyObjects(ctx, p, opts)
		for _, o := range objs {
			out = append(out, generated{obj: o, owner: "MeshPolicy " + key.String() + pr.why})
		}
		for _, x := range warns {
			warnings = append(warnings, fmt.Sprintf("MeshPolicy %s: %s", key, x))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("MeshPolicy %s: %w", key, err))
			continue
		}
		// A Canary of the cluster that delivers the policy's Service carries its routes.
		if canary != nil {
			renderCanary(canary, true, " (its routing, with MeshPolicy "+p.Name+" of "+opts.originOrFiles()+")")
		}
	}
	if len(out) == 0 && len(errs) == 0 && len(inForce) == 0 {
		return rendering{warnings: warnings}, errors.New("the files hold no Canary or MeshPolicy: nothing to render")
	}
	return rendering{objects: out, warnings: warnings, policies: inForce}, errors.Join(errs...)
}

// canaryObjects renders a Canary as its controller does at rest, or with the weights the
// cluster's Canary of the same name routes with now (diff during a rollout).
func (w *world) canaryObjects(ctx context.Context, c *meshv1.Canary, routingOnly bool) ([]generated, []string, error) {
	ns, name, kind := c.Namespace, c.Spec.TargetRef.Name, c.Spec.TargetRef.KindOrDefault()
	target, targetObj, err := workload.Get(ctx, workload.ReaderLookup(w), kind, client.ObjectKey{Namespace: ns, Name: name})
	if err != nil {
		return nil, nil, err
	} else if target == nil {
		return nil, nil, fmt.Errorf("its target %s %s is not in the files%s; add its manifest with -f", kind, name, w.orCluster())
	}
	policy, err := w.policyFor(ctx, ns, name)
	if err != nil {
		return nil, nil, err
	}
	in := desired.Canary{Canary: c.DeepCopy(), Target: target, TargetObject: targetObj, Policy: policy}
	in.Canary.Status = meshv1.CanaryStatus{} // at rest, unless the cluster has it
	if w.live != nil {
		cur := &meshv1.Canary{}
		if err := w.live.Get(ctx, client.ObjectKeyFromObject(c), cur); err == nil {
			in.Canary.Status = cur.Status
		} else if !apierrors.IsNotFound(err) {
			return nil, nil, err
		}
		livePrimary, _, err := workload.Get(ctx, workload.ReaderLookup(w.live), kind, client.ObjectKey{Namespace: ns, Name: render.PrimaryName(name)})
		if err != nil {
			return nil, nil, err
		}
		in.Primary = livePrimary
	}
	if !routingOnly {
		configs, err := workload.ReadConfigs(ctx, w, ns, &target.Spec.Template.Spec)
		if err != nil {
			return nil, nil, err
		}
		in.Configs = configs
		if ref := c.Spec.AutoscalerRef; ref != nil {
			hpa := &autoscalingv2.HorizontalPodAutoscaler{}
			if ok, err := w.lookup(ctx, ns, ref.Name, hpa); err != nil {
				return nil, nil, err
			} else if ok {
				in.Autoscaler = hpa
			}
		}
	}
	// The controller's routing and workload for the status the cluster's Canary has (at
	// rest without one: all traffic on the primary).
	in = desired.FromStatus(in, w.now)
	rt, set, err := desired.CanaryRouting(in)
	if err != nil {
		return nil, nil, err
	}
	var warnings []string
	for _, x := range set.Warnings {
		warnings = append(warnings, x.String())
	}
	for _, x := range set.Unsupported {
		warnings = append(warnings, fmt.Sprintf("not in force with routing.provider %s: %s", rt.Provider(), x))
	}
	var out []generated
	if !routingOnly {
		primary, phpa, err := desired.CanaryWorkload(in)
		if err != nil {
			return nil, warnings, err
		}
		note := "written when the Canary initializes and when a revision is promoted"
		if copies := copiedConfigs(in.Configs); copies != "" {
			note += "; it reads canopy's copies, written with it, of " + copies
		}
		if w.live == nil {
			// The API server's defaults are part of the template canopy hashes; render does
			// not know them (diff asks the API server for them).
			note += "; canopy's revision hashes the " + kind + " as stored, with the API server's defaults, so it differs from this one"
		}
		out = append(out, generated{obj: primary, note: note})
		switch {
		case phpa != nil:
			out = append(out, generated{obj: phpa})
		case c.Spec.AutoscalerRef != nil:
			warnings = append(warnings, fmt.Sprintf("its autoscaler %s is not in the files%s: the primary keeps its replicas until it exists", c.Spec.AutoscalerRef.Name, w.orCluster()))
		}
	}
	for _, o := range set.All() {
		g := generated{obj: o}
		if o.GetName() == name && o.GetObjectKind().GroupVersionKind().Kind == "Service" {
			if svc := (&corev1.Service{}); w.exists(ctx, ns, name, svc) && !generatedBy(svc) {
				g.note = "adopted: canopy sets only its selector and this port"
			}
		}
		out = append(out, g)
	}
	return out, warnings, nil
}

func (w *world) exists(ctx context.Context, ns, name string, obj client.Object) bool {
	ok, err := w.lookup(ctx, ns, name, obj)
	return ok && err == nil
}

func generatedBy(o client.Object) bool {
	return o.GetLabels()[meshv1.LabelManagedBy] == meshv1.ManagedByValue
}

func (w *world) orCluster() string {
	if w.live != nil {
		return " nor in the cluster"
	}
	return " (render reads nothing from the cluster)"
}

// policyObjects renders a MeshPolicy as its controller does. It returns the Canary that
// delivers the policy's Service when that Canary is not in the files (its routing carries
// the policy's routes, so it is rendered too).
func (w *world) policyObjects(ctx context.Context, p *meshv1.MeshPolicy, opts generateOptions) ([]render.Object, []string, *meshv1.Canary, error) {
	ns, name := p.Namespace, p.Spec.TargetRef.Name
	canary, err := w.canaryFor(ctx, ns, name)
	if err != nil {
		return nil, nil, nil, err
	}
	svc := &corev1.Service{}
	found, err := w.lookup(ctx, ns, name, svc)
	if err != nil {
		return nil, nil, nil, err
	}
	ropts := render.MeshPolicyOptions{CertificateReady: opts.certificateReady}
	if canary != nil {
		kind := canary.Spec.TargetRef.KindOrDefault()
		target, _, err := workload.Get(ctx, workload.ReaderLookup(w), kind, client.ObjectKey{Namespace: ns, Name: canary.Spec.TargetRef.Name})
		if err != nil {
			return nil, nil, nil, err
		} else if target == nil {
			return nil, nil, nil, fmt.Errorf("its Service %s is delivered by Canary %s, whose target %s is not in the files%s; add its manifest with -f",
				name, canary.Name, kind, w.orCluster())
		}
		ropts.CanaryOwnsRouting = true
		if target.Spec.Selector != nil {
			ropts.CanarySelector = target.Spec.Selector.MatchLabels
		}
		// The Service the policy's controller reads is the Canary's apex: generated, or
		// adopted with canopy's selector and port.
		set, err := render.CanaryObjects(canary, target, progress.Routing{PrimaryWeight: 100}, nil)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("rendering Canary %s, which delivers its Service: %w", canary.Name, err)
		}
		apex := set.Services[0]
		if found {
			svc.Spec.Selector = apex.Spec.Selector
			svc.Spec.Ports = upsertPorts(svc.Spec.Ports, apex.Spec.Ports)
		} else {
			svc, found = apex, true
		}
	}
	if !found {
		return nil, nil, nil, fmt.Errorf("its Service %s is not in the files%s; add its manifest with -f", name, w.orCluster())
	}
	if w.live != nil {
		ropts.CertificateReady = w.certificateReady(ctx, p, opts.now)
	}
	set, err := render.MeshPolicyObjects(p, svc, ropts)
	if err != nil {
		return nil, nil, nil, err
	}
	if w.live != nil && p.Spec.Rollout != nil {
		// A change that waits (spec.rollout): the rules in force and the new ones in
		// dry-run, for the status the cluster's policy has.
		if err := w.policyRollout(ctx, p, &set); err != nil {
			return nil, nil, nil, err
		}
	}
	var warnings []string
	for _, x := range set.Warnings {
		warnings = append(warnings, x.String())
	}
	if canary != nil && !w.inFiles(canary) {
		return set.Objects(), warnings, canary, nil
	}
	return set.Objects(), warnings, nil, nil
}

// policyRollout puts into set what the policy's controller applies while a change waits,
// from the status of the cluster's policy of that name and the rules in force there
// (desired.PolicyFromStatus).
func (w *world) policyRollout(ctx context.Context, p *meshv1.MeshPolicy, set *render.MeshPolicySet) error {
	cur := &meshv1.MeshPolicy{}
	if err := w.live.Get(ctx, client.ObjectKeyFromObject(p), cur); apierrors.IsNotFound(err) {
		cur = nil
	} else if err != nil {
		return err
	}
	labels := client.MatchingLabels(render.OwnerLabels(render.KindMeshPolicy, p.Namespace, p.Name))
	aps := &istiosecv1.AuthorizationPolicyList{}
	pas := &istiosecv1.PeerAuthenticationList{}
	if cur != nil {
		for _, l := range []client.ObjectList{aps, pas} {
			if err := w.live.List(ctx, l, client.InNamespace(p.Namespace), labels); err != nil {
				return fmt.Errorf("reading the rules in force of MeshPolicy %s: %w", p.Name, err)
			}
		}
	}
	in := p.DeepCopy()
	in.Status = meshv1.MeshPolicyStatus{}
	if cur != nil {
		// The objects in force are controlled by the cluster's policy, by UID.
		in.UID, in.Status = cur.UID, cur.Status
	}
	desired.PolicyFromStatus(in, set, desired.PolicyInForceOf(in, aps.Items, pas.Items))
	return nil
}

func (w *world) inFiles(o client.Object) bool {
	return slices.ContainsFunc(w.files, func(m manifest) bool { return m.obj == o })
}

// certificateReady is whether the policy's controller serves HTTPS: the ingress
// Certificate is Ready, or still valid while it renews (controllers serveHTTPS).
func (w *world) certificateReady(ctx context.Context, p *meshv1.MeshPolicy, now time.Time) bool {
	if p.Spec.Ingress == nil || p.Spec.Ingress.TLS == nil {
		return false
	}
	cert := &cmv1.Certificate{}
	if err := w.live.Get(ctx, client.ObjectKey{Namespace: render.GatewayNamespace(p), Name: render.GatewayName(p)}, cert); err != nil {
		return false
	}
	return desired.ServesHTTPS(cert, now)
}

// upsertPorts puts canopy's ports over the Service's own, matched by port number as
// server-side apply merges them (port and protocol).
func upsertPorts(have, want []corev1.ServicePort) []corev1.ServicePort {
	out := slices.Clone(have)
	for _, p := range want {
		i := slices.IndexFunc(out, func(h corev1.ServicePort) bool {
			return h.Port == p.Port && (h.Protocol == p.Protocol || h.Protocol == "" || p.Protocol == "")
		})
		if i < 0 {
			out = append(out, p)
		} else {
			out[i] = p
		}
	}
	return out
}

// copiedConfigs names the configs the primary reads copies of, for a note: the copies are
// not listed (a Secret's would print its data).
func copiedConfigs(configs []workload.Config) string {
	var names []string
	for _, c := range configs {
		if c.Copied() {
			names = append(names, c.ConfigRef.String())
		}
	}
	return strings.Join(names, ", ")
}
