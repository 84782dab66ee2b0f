package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/pmezard/go-difflib/difflib"
	"github.com/spf13/cobra"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	istiotelv1 "istio.io/client-go/pkg/apis/telemetry/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/yaml"

	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/internal/scheme"
)

type diffOptions struct {
	*rootOptions
	fileFlags
	fieldManager string
}

func (o *rootOptions) diffCommand() *cobra.Command {
	d := &diffOptions{rootOptions: o}
	cmd := &cobra.Command{
		Use:   "diff -f FILE...",
		Short: "Compare the objects canopy would generate for the manifests with the cluster's",
		Long: `Render the given manifests as render does and compare each generated object with the
cluster's: missing, differs (a unified diff of the fields canopy sets, live then canopy's)
or same. Exits 1 when anything is missing or differs, 0 when all is the same.

The manifests are first applied with a server-side dry run, so that they are rendered as
the API server would store them (its defaults are part of the revision canopy computes); set
--field-manager to the manager that applies them (kubectl, kustomize-controller for Flux,
argocd-controller for Argo CD) so that fields removed from them count as removed. What the
files lack is read from the cluster: a Canary's target Deployment, a MeshPolicy's Service,
the other side of a Canary and MeshPolicy pair, the ConfigMaps of the revision.
A Canary that is rolling out is rendered with the weights it routes with now, so only your
changes show, and an ingress Gateway with its certificate's current state. Fields other
managers set, and the defaults the API server adds, are not compared.`,
		Example: `  kubectl canopy diff -f config/samples/
  kustomize build overlays/prod | kubectl canopy diff -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return d.run(cmd.Context()) },
	}
	d.bind(cmd)
	cmd.Flags().StringVar(&d.fieldManager, "field-manager", "kubectl-canopy", "Field manager of the server-side dry run of the manifests")
	return cmd
}

func (d *diffOptions) run(ctx context.Context) error {
	if len(d.files) == 0 {
		return &exitError{code: ExitError, msg: "error: give the manifests with -f FILE or -f DIR (-f - reads standard input)"}
	}
	ns := d.namespace()
	cl, err := d.client()
	if err != nil {
		return err
	}
	s := scheme.New()
	warn := d.warner()
	files, err := readManifests(d.files, d.recursive, d.streams.In, s, ns, warn)
	if err != nil {
		return err
	}
	files = asStored(ctx, cl, s, files, d.fieldManager, warn)
	res, err := generate(ctx, s, files, generateOptions{live: cl, now: d.now()})
	for _, w := range res.warnings {
		warn(w)
	}
	if err != nil {
		return err
	}
	differ := false
	p := d.palette()
	for _, g := range res.objects {
		c, err := compare(ctx, cl, g)
		if err != nil {
			return err
		}
		writeComparison(d.streams.Out, g, c, p)
		differ = differ || c.state != stateSame
	}
	extra, err := leftovers(ctx, cl, res)
	if err != nil {
		return err
	}
	for _, g := range extra {
		writeComparison(d.streams.Out, g, comparison{state: stateExtra}, p)
		differ = true
	}
	if differ {
		return &exitError{code: ExitNo}
	}
	return nil
}

// asStored replaces each manifest by what the API server would store if it were applied
// (a server-side dry run): defaults, admission and what other managers own included. A
// manifest the dry run refuses is kept as written, with a warning saying why; one whose
// namespace does not exist yet is kept silently (everything it generates is missing anyway).
func asStored(ctx context.Context, cl client.Client, s *runtime.Scheme, files []manifest, fieldManager string, warn func(string)) []manifest {
	out := make([]manifest, 0, len(files))
	for _, m := range files {
		if !namespaced(m.obj) {
			out = append(out, m)
			continue
		}
		stored, err := dryRunApply(ctx, cl, s, m.obj, fieldManager)
		switch {
		case err == nil:
			out = append(out, manifest{obj: stored, source: m.source})
			continue
		case apierrors.IsNotFound(err) && strings.Contains(err.Error(), "namespaces"):
		default:
			warn(fmt.Sprintf("%s: the server-side dry run failed, so it is compared as written: %v", m.source, explain(err)))
		}
		out = append(out, m)
	}
	return out
}

func dryRunApply(ctx context.Context, cl client.Client, s *runtime.Scheme, obj client.Object, fieldManager string) (client.Object, error) {
	gvk, err := apiutil.GVKForObject(obj, s)
	if err != nil {
		return nil, err
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(gvk)
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	u.SetResourceVersion("")
	u.SetManagedFields(nil)
	if err := cl.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.DryRunAll, client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
		return nil, err
	}
	typed, err := s.New(gvk)
	if err != nil {
		return nil, err
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, typed); err != nil {
		return nil, err
	}
	return typed.(client.Object), nil
}

// prunedKinds are what a MeshPolicy generates and canopy deletes when the policy no longer
// does (controllers generatedKinds); the Gateway and Certificate may live in another
// namespace.
var prunedKinds = []struct {
	gvk          schema.GroupVersionKind
	anyNamespace bool
}{
	{istiosecv1.SchemeGroupVersion.WithKind("PeerAuthentication"), false},
	{istiosecv1.SchemeGroupVersion.WithKind("AuthorizationPolicy"), false},
	{istionetv1.SchemeGroupVersion.WithKind("ServiceEntry"), false},
	{istionetv1.SchemeGroupVersion.WithKind("DestinationRule"), false},
	{istionetv1.SchemeGroupVersion.WithKind("VirtualService"), false},
	{istiotelv1.SchemeGroupVersion.WithKind("Telemetry"), false},
	{cmv1.SchemeGroupVersion.WithKind("Certificate"), true},
	{istionetv1.SchemeGroupVersion.WithKind("Gateway"), true},
}

// leftovers are the objects the rendered MeshPolicies generated before (they carry their
// owner labels) and generate no more: canopy deletes them. An API the cluster lacks holds
// none.
func leftovers(ctx context.Context, cl client.Reader, res rendering) ([]generated, error) {
	keep := map[string]bool{}
	for _, g := range res.objects {
		keep[g.obj.GetObjectKind().GroupVersionKind().Kind+"/"+g.obj.GetNamespace()+"/"+g.obj.GetName()] = true
	}
	var out []generated
	for _, p := range res.policies {
		labels := client.MatchingLabels(render.OwnerLabels(render.KindMeshPolicy, p.Namespace, p.Name))
		for _, k := range prunedKinds {
			list := &metav1.PartialObjectMetadataList{}
			list.SetGroupVersionKind(k.gvk.GroupVersion().WithKind(k.gvk.Kind + "List"))
			opts := []client.ListOption{labels}
			if !k.anyNamespace {
				opts = append(opts, client.InNamespace(p.Namespace))
			}
			if err := cl.List(ctx, list, opts...); err != nil {
				if meta.IsNoMatchError(err) {
					continue
				}
				return nil, fmt.Errorf("listing %ss: %w", k.gvk.Kind, err)
			}
			for i := range list.Items {
				o := &list.Items[i]
				if keep[k.gvk.Kind+"/"+o.Namespace+"/"+o.Name] {
					continue
				}
				if ref := metav1.GetControllerOf(o); ref != nil && (ref.Kind != render.KindMeshPolicy || ref.Name != p.Name) {
					continue
				}
				o.SetGroupVersionKind(k.gvk)
				out = append(out, generated{obj: o, owner: render.KindMeshPolicy + " " + client.ObjectKeyFromObject(p).String()})
			}
		}
	}
	return out, nil
}

type compareState string

const (
	stateSame    compareState = "same"
	stateDiffers compareState = "differs"
	stateMissing compareState = "missing"
	// stateExtra: canopy generated the object before and deletes it now.
	stateExtra compareState = "extra, canopy deletes it"
)

type comparison struct {
	state compareState
	// diff is the unified diff, live then canopy's, when the object differs.
	diff string
	// why qualifies missing (e.g. the API is not installed).
	why string
}

// compare reads the live object and compares the fields canopy sets.
func compare(ctx context.Context, cl client.Reader, g generated) (comparison, error) {
	desired, err := render.ToUnstructured(g.obj)
	if err != nil {
		return comparison{}, err
	}
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(desired.GroupVersionKind())
	switch err := cl.Get(ctx, client.ObjectKeyFromObject(g.obj), live); {
	case apierrors.IsNotFound(err):
		return comparison{state: stateMissing}, nil
	case meta.IsNoMatchError(err):
		return comparison{state: stateMissing, why: fmt.Sprintf("the cluster has no %s API (%s)", desired.GetKind(), desired.GetAPIVersion())}, nil
	case err != nil:
		return comparison{}, fmt.Errorf("reading %s %s: %w", desired.GetKind(), client.ObjectKeyFromObject(g.obj), err)
	}
	diff, err := diffFields(live.Object, desired.Object)
	if err != nil {
		return comparison{}, err
	}
	if diff == "" {
		return comparison{state: stateSame}, nil
	}
	return comparison{state: stateDiffers, diff: diff}, nil
}

// diffFields is the unified diff of live against desired on desired's fields only.
func diffFields(live, desired map[string]any) (string, error) {
	keyed := associative(desired)
	projected, _ := project(live, desired, keyed).(map[string]any)
	if projected == nil {
		projected = map[string]any{}
	}
	a, err := yaml.Marshal(projected)
	if err != nil {
		return "", err
	}
	b, err := yaml.Marshal(desired)
	if err != nil {
		return "", err
	}
	if string(a) == string(b) {
		return "", nil
	}
	return difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(strings.TrimSuffix(string(a), "\n")), B: difflib.SplitLines(strings.TrimSuffix(string(b), "\n")),
		FromFile: "live", ToFile: "canopy", Context: 3,
	})
}

// associative says whether the object's lists of named entries merge by key under
// server-side apply (containers, ports, env of the built-in kinds), so that entries other
// managers added are not canopy's business. Istio's and cert-manager's lists are atomic:
// canopy owns them whole.
func associative(obj map[string]any) bool {
	apiVersion, _ := obj["apiVersion"].(string)
	group, _, found := strings.Cut(apiVersion, "/")
	if !found {
		group = ""
	}
	return group == "" || group == "apps" || group == "autoscaling"
}

// project keeps of live the fields desired has. Where live lacks one, the result lacks it
// too, which the diff shows.
func project(live, desired any, keyed bool) any {
	switch d := desired.(type) {
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok {
			return live
		}
		out := map[string]any{}
		for k, dv := range d {
			if lv, ok := l[k]; ok {
				out[k] = project(lv, dv, keyed)
			}
		}
		return out
	case []any:
		l, ok := live.([]any)
		if !ok {
			return live
		}
		if key := listKey(d); keyed && key != "" {
			out := make([]any, 0, len(d))
			for _, de := range d {
				if le := findEntry(l, key, de.(map[string]any)[key]); le != nil {
					out = append(out, project(le, de, keyed))
				}
			}
			return out
		}
		out := make([]any, len(l))
		for i := range l {
			if i < len(d) {
				out[i] = project(l[i], d[i], keyed)
			} else {
				out[i] = l[i]
			}
		}
		return out
	default:
		return live
	}
}

// listKey is the field entries of a list are merged by: "name", or "port" for Service ports.
func listKey(entries []any) string {
	for _, key := range []string{"name", "port"} {
		all := len(entries) > 0
		for _, e := range entries {
			m, ok := e.(map[string]any)
			if !ok || m[key] == nil {
				all = false
				break
			}
		}
		if all {
			return key
		}
	}
	return ""
}

func findEntry(list []any, key string, value any) any {
	for _, e := range list {
		if m, ok := e.(map[string]any); ok && fmt.Sprint(m[key]) == fmt.Sprint(value) {
			return e
		}
	}
	return nil
}

func writeComparison(w io.Writer, g generated, c comparison, p palette) {
	kind := g.obj.GetObjectKind().GroupVersionKind().Kind
	ref := fmt.Sprintf("%s %s/%s", kind, g.obj.GetNamespace(), g.obj.GetName())
	var state string
	switch c.state {
	case stateSame:
		state = p.green(string(c.state))
	case stateDiffers:
		state = p.red(string(c.state))
	case stateMissing, stateExtra:
		state = p.yellow(string(c.state))
	}
	line := fmt.Sprintf("%s: %s", p.bold(ref), state)
	if c.why != "" {
		line += " (" + c.why + ")"
	}
	if g.note != "" && c.state != stateSame {
		line += " (" + g.note + ")"
	}
	printLine(w, line)
	if c.diff == "" {
		return
	}
	for _, l := range strings.SplitAfter(c.diff, "\n") {
		switch {
		case strings.HasPrefix(l, "+++"), strings.HasPrefix(l, "---"):
			l = p.bold(strings.TrimSuffix(l, "\n")) + "\n"
		case strings.HasPrefix(l, "+"):
			l = p.green(strings.TrimSuffix(l, "\n")) + "\n"
		case strings.HasPrefix(l, "-"):
			l = p.red(strings.TrimSuffix(l, "\n")) + "\n"
		case strings.HasPrefix(l, "@@"):
			l = p.cyan(strings.TrimSuffix(l, "\n")) + "\n"
		}
		if l != "" && l != "\n" {
			printText(w, "  "+l)
		}
	}
}
