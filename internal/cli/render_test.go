package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/internal/scheme"
)

// cliRun runs the plugin in-process and returns what it printed and its exit code.
func cliRun(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	s := defaultSettings()
	s.poll = 50 * 1e6 // 50ms: the tests' operator answers quickly
	code = run(t.Context(), args, IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut}, s)
	return out.String(), errOut.String(), code
}

// offline makes sure no kubeconfig is found: render must not need one.
func offline(t *testing.T) {
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	t.Setenv("HOME", t.TempDir())
}

// parseBack decodes rendered YAML into typed objects, failing on anything that does not
// decode strictly.
func parseBack(t *testing.T, out string) []client.Object {
	t.Helper()
	decoder := serializer.NewCodecFactory(scheme.New(), serializer.EnableStrict).UniversalDeserializer()
	docs := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	var objs []client.Object
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		obj, gvk, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("rendered document does not parse back: %v\n%s", err, doc)
		}
		if gvk.Kind == "" {
			t.Fatalf("no kind in\n%s", doc)
		}
		objs = append(objs, obj.(client.Object))
	}
	return objs
}

func names(objs []client.Object) []string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.GetObjectKind().GroupVersionKind().Kind+" "+o.GetNamespace()+"/"+o.GetName())
	}
	return out
}

const samples = "../../config/samples/"

func TestRenderBookinfoOffline(t *testing.T) {
	offline(t)
	out, errOut, code := cliRun(t, "", "render", "-f", samples+"bookinfo.yaml", "-f", samples+"mesh_v1alpha1_canary.yaml")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if errOut != "" {
		t.Errorf("unexpected warnings: %s", errOut)
	}
	objs := parseBack(t, out)
	want := []string{
		"Deployment bookinfo/reviews-primary",
		"Service bookinfo/reviews", "Service bookinfo/reviews-primary", "Service bookinfo/reviews-canary",
		"DestinationRule bookinfo/reviews-primary", "DestinationRule bookinfo/reviews-canary",
		"VirtualService bookinfo/reviews",
	}
	if got := names(objs); !slices.Equal(got, want) {
		t.Fatalf("rendered %v, want %v", got, want)
	}

	// Exactly what the renderer gives the controller, at rest.
	target, canary := readBookinfo(t)
	set, err := render.CanaryObjects(canary, target, progress.Routing{PrimaryWeight: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	vs := objs[6].(*networkingv1.VirtualService)
	if !proto.Equal(&vs.Spec, &set.VirtualService.Spec) {
		t.Errorf("VirtualService spec %v, want %v", &vs.Spec, &set.VirtualService.Spec)
	}
	if p, c, ok := render.ObservedWeights(vs, "reviews"); !ok || p != 100 || c != 0 {
		t.Errorf("weights %d/%d (%v), want 100/0", p, c, ok)
	}
	primary := objs[0].(*appsv1.Deployment)
	if got, want := primary.Annotations[render.AnnotationRevision], render.Revision(&target.Spec.Template); got != want {
		t.Errorf("primary revision %s, want %s", got, want)
	}
	if primary.Spec.Replicas == nil || *primary.Spec.Replicas != 2 {
		t.Errorf("primary replicas %v, want the target's 2", primary.Spec.Replicas)
	}
	if !strings.HasPrefix(out, "# generated for Canary bookinfo/reviews; written when the Canary initializes") {
		t.Errorf("no owner comment:\n%s", out[:200])
	}
}

func readBookinfo(t *testing.T) (*appsv1.Deployment, *meshv1.Canary) {
	t.Helper()
	files, err := readManifests([]string{samples + "bookinfo.yaml", samples + "mesh_v1alpha1_canary.yaml"}, false, nil, scheme.New(), "default", func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	var d *appsv1.Deployment
	var c *meshv1.Canary
	for _, m := range files {
		switch o := m.obj.(type) {
		case *appsv1.Deployment:
			d = o
		case *meshv1.Canary:
			c = o
		}
	}
	if d == nil || c == nil {
		t.Fatal("the samples lost Bookinfo's reviews Deployment or Canary")
	}
	return d, c
}

// Every sample renders and parses back, from the directory as from standard input.
func TestRenderTheSamplesDirectory(t *testing.T) {
	offline(t)
	out, errOut, code := cliRun(t, "", "render", "-f", samples)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	objs := parseBack(t, out)
	if !slices.Contains(names(objs), "VirtualService bookinfo/reviews") {
		t.Errorf("no VirtualService for reviews in %v", names(objs))
	}
	var all bytes.Buffer
	entries, _ := os.ReadDir(samples)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".yaml") && e.Name() != "kustomization.yaml" {
			b, _ := os.ReadFile(samples + e.Name())
			all.WriteString("---\n")
			all.Write(b)
			all.WriteString("\n")
		}
	}
	fromStdin, errOut, code := cliRun(t, all.String(), "render", "-f", "-")
	if code != ExitOK {
		t.Fatalf("stdin: exit %d: %s", code, errOut)
	}
	if fromStdin != out {
		t.Errorf("standard input renders differently from the directory")
	}
}

func TestRenderAsJSON(t *testing.T) {
	offline(t)
	out, errOut, code := cliRun(t, "", "render", "-o", "json", "-f", samples+"bookinfo.yaml", "-f", samples+"mesh_v1alpha1_canary.yaml")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	list := &corev1.List{}
	if err := utilyaml.Unmarshal([]byte(out), list); err != nil || len(list.Items) != 7 {
		t.Fatalf("not a List of 7 objects (%v):\n%s", err, out)
	}
}

// A Canary and the MeshPolicy of its Service meet in one VirtualService; the policy's
// workload policies get copies for the canary's pods.
func TestRenderComposesACanaryWithItsMeshPolicy(t *testing.T) {
	offline(t)
	policy := `
apiVersion: mesh.canopy.dev/v1alpha1
kind: MeshPolicy
metadata: {name: reviews, namespace: bookinfo}
spec:
  targetRef: {name: reviews}
  mtls: {mode: STRICT}
  resilience:
    timeout: 3s
`
	out, errOut, code := cliRun(t, policy, "render", "-f", samples+"bookinfo.yaml", "-f", samples+"mesh_v1alpha1_canary.yaml", "-f", "-")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	objs := parseBack(t, out)
	got := names(objs)
	for _, want := range []string{"VirtualService bookinfo/reviews", "PeerAuthentication bookinfo/reviews", "PeerAuthentication bookinfo/reviews-canary"} {
		if !slices.Contains(got, want) {
			t.Errorf("no %s in %v", want, got)
		}
	}
	vss := 0
	for _, o := range objs {
		switch o := o.(type) {
		case *networkingv1.VirtualService:
			vss++
			if o.Spec.Http[0].Timeout.AsDuration().String() != "3s" {
				t.Errorf("the policy's timeout is not in the Canary's VirtualService: %v", &o.Spec)
			}
		case *securityv1.PeerAuthentication:
			if o.Name == "reviews" && o.Spec.Selector.MatchLabels["app"] != "reviews-primary" {
				t.Errorf("the policy's PeerAuthentication selects %v, want the primary's pods", o.Spec.Selector.MatchLabels)
			}
		}
	}
	if vss != 1 {
		t.Errorf("%d VirtualServices for one host, want 1", vss)
	}
}

func TestRenderSaysWhatIsMissing(t *testing.T) {
	offline(t)
	tests := []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
	}{{
		name: "a Canary without its Deployment",
		args: []string{"render", "-f", samples + "mesh_v1alpha1_canary.yaml"},
		code: ExitError,
		want: "Canary bookinfo/reviews: its target Deployment reviews is not in the files (render reads nothing from the cluster); add its manifest with -f",
	}, {
		name:  "a MeshPolicy without its Service",
		stdin: "apiVersion: mesh.canopy.dev/v1alpha1\nkind: MeshPolicy\nmetadata: {name: web}\nspec: {targetRef: {name: web}, mtls: {mode: STRICT}}\n",
		args:  []string{"render", "-n", "shop", "-f", "-"},
		code:  ExitError,
		want:  "MeshPolicy shop/web: its Service web is not in the files",
	}, {
		name: "no canopy resource",
		args: []string{"render", "-f", samples + "bookinfo.yaml"},
		code: ExitError,
		want: "the files hold no Canary or MeshPolicy",
	}, {
		name: "no files",
		args: []string{"render"},
		code: ExitError,
		want: "give the manifests with -f FILE",
	}, {
		name: "a file that is not there",
		args: []string{"render", "-f", "nope.yaml"},
		code: ExitError,
		want: "nope.yaml: no such file",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := cliRun(t, tt.stdin, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut, tt.code, tt.want)
			}
		})
	}
}

func TestReadManifests(t *testing.T) {
	in := `# a comment-only document
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: a}
  data: {k: v}
- apiVersion: v1
  kind: Service
  metadata: {name: b, namespace: other}
---
apiVersion: example.com/v1
kind: Unknown
metadata: {name: skipped}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: typo}
dta: {k: v}
---
resources: [not-an-object.yaml]
---
apiVersion: v1
kind: Namespace
metadata: {name: ns}
`
	var warnings []string
	got, err := readManifests([]string{"-"}, false, strings.NewReader(in), scheme.New(), "team", func(s string) { warnings = append(warnings, s) })
	if err != nil {
		t.Fatal(err)
	}
	refs := make([]string, 0, len(got))
	for _, m := range got {
		refs = append(refs, m.obj.GetObjectKind().GroupVersionKind().Kind+" "+m.obj.GetNamespace()+"/"+m.obj.GetName())
	}
	want := []string{"ConfigMap team/a", "Service other/b", "ConfigMap team/typo", "Namespace /ns"}
	if !slices.Equal(refs, want) {
		t.Errorf("read %v, want %v", refs, want)
	}
	if len(warnings) != 2 || !strings.Contains(warnings[0], `unknown field "dta"`) || !strings.Contains(warnings[1], "-#4: not a Kubernetes object") {
		t.Errorf("warnings %q", warnings)
	}
}

func TestRenderNeedsNoCluster(t *testing.T) {
	offline(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errOut bytes.Buffer
	// An explicit kubeconfig that does not exist is no reason to fail either.
	code := run(ctx, []string{"--kubeconfig", "/nonexistent/kubeconfig", "render", "-f", samples + "bookinfo.yaml", "-f", samples + "mesh_v1alpha1_canary.yaml"},
		IOStreams{Out: &out, ErrOut: &errOut}, defaultSettings())
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
}

// Of two MeshPolicies for one Service canopy applies the older; without creation times
// (manifests as written) render cannot tell which, and says so.
func TestRenderTwoPoliciesForOneService(t *testing.T) {
	offline(t)
	svc := "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {selector: {app: web}, ports: [{name: http, port: 80}]}\n"
	policy := func(name, created string) string {
		meta := "{name: " + name + ", namespace: shop}"
		if created != "" {
			meta = "{name: " + name + ", namespace: shop, creationTimestamp: \"" + created + "\"}"
		}
		return "---\napiVersion: mesh.canopy.dev/v1alpha1\nkind: MeshPolicy\nmetadata: " + meta + "\nspec: {targetRef: {name: web}, mtls: {mode: STRICT}}\n"
	}
	out, errOut, code := cliRun(t, svc+policy("b", "2026-01-01T00:00:00Z")+policy("a", "2026-02-01T00:00:00Z"), "render", "-f", "-")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if got := names(parseBack(t, out)); !slices.Equal(got, []string{"PeerAuthentication shop/b", "DestinationRule shop/web"}) {
		t.Errorf("rendered %v, want the older policy's only", got)
	}
	if !strings.Contains(errOut, "warning: MeshPolicy shop/a: not applied: MeshPolicy b already targets Service web (it is older)") {
		t.Errorf("no warning about the younger policy: %q", errOut)
	}

	_, errOut, code = cliRun(t, svc+policy("b", "")+policy("a", ""), "render", "-f", "-")
	if code != ExitError || !strings.Contains(errOut, "MeshPolicies b and a both target Service shop/web: canopy applies only the older") {
		t.Errorf("exit %d: %s", code, errOut)
	}
}

// The primary rendered offline reads canopy's copies of the ConfigMaps its target reads, as
// the operator writes it, and the note says so.
func TestRenderThePrimaryReadsConfigCopies(t *testing.T) {
	offline(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(file, []byte(`apiVersion: v1
kind: ConfigMap
metadata: {name: reviews-config, namespace: shop}
data: {stars: red}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  template:
    metadata: {labels: {app: reviews}}
    spec:
      containers:
      - name: reviews
        image: reviews:v1
        envFrom: [{configMapRef: {name: reviews-config}}]
---
apiVersion: mesh.canopy.dev/v1alpha1
kind: Canary
metadata: {name: reviews, namespace: shop}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: reviews}
  service: {port: 9080}
  analysis: {interval: 1m, threshold: 2, stepWeight: 10, maxWeight: 50}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := cliRun(t, "", "render", "-f", file)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	primary := parseBack(t, out)[0].(*appsv1.Deployment)
	if ref := primary.Spec.Template.Spec.Containers[0].EnvFrom[0].ConfigMapRef; ref == nil || ref.Name != "reviews-config-primary" {
		t.Errorf("the rendered primary reads %v, want the copy reviews-config-primary", ref)
	}
	if !strings.Contains(out, "it reads canopy's copies, written with it, of ConfigMap reviews-config") {
		t.Errorf("the note does not name the copied ConfigMap:\n%s", out[:300])
	}
}

// A Canary routed with the Gateway API renders an HTTPRoute, through the router the
// controller uses, instead of the VirtualService and DestinationRules.
func TestRenderAGatewayAPICanary(t *testing.T) {
	offline(t)
	data, err := os.ReadFile(samples + "mesh_v1alpha1_canary.yaml")
	if err != nil {
		t.Fatal(err)
	}
	gw := strings.Replace(string(data), "\nspec:\n", "\nspec:\n  routing:\n    provider: gatewayapi\n", 1)
	if gw == string(data) {
		t.Fatal("the sample Canary has no spec to add routing to")
	}
	file := filepath.Join(t.TempDir(), "canary.yaml")
	if err := os.WriteFile(file, []byte(gw), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := cliRun(t, "", "render", "-f", samples+"bookinfo.yaml", "-f", file)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	objs := parseBack(t, out)
	want := []string{
		"Deployment bookinfo/reviews-primary",
		"Service bookinfo/reviews", "Service bookinfo/reviews-primary", "Service bookinfo/reviews-canary",
		"HTTPRoute bookinfo/reviews",
	}
	if got := names(objs); !slices.Equal(got, want) {
		t.Fatalf("rendered %v, want %v", got, want)
	}
	hr := objs[4].(*gwapiv1.HTTPRoute)
	if p, c, ok := render.ObservedHTTPRouteWeights(hr, "reviews"); !ok || p != 100 || c != 0 {
		t.Errorf("weights %d/%d (%v), want 100/0", p, c, ok)
	}
	if ref := hr.Spec.ParentRefs[0]; string(*ref.Kind) != "Service" || ref.Name != "reviews" {
		t.Errorf("parent %+v, want the apex Service", ref)
	}
}

// A DaemonSet Canary renders a primary DaemonSet, as the controller writes it, beside the
// same Services and routes.
func TestRenderADaemonSetCanary(t *testing.T) {
	offline(t)
	file := filepath.Join(t.TempDir(), "agent.yaml")
	const manifests = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: infra}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: example/agent:v1, ports: [{containerPort: 9080}]}]
---
apiVersion: mesh.canopy.dev/v1alpha1
kind: Canary
metadata: {name: agent, namespace: infra}
spec:
  targetRef: {apiVersion: apps/v1, kind: DaemonSet, name: agent}
  service: {port: 9080}
  analysis: {interval: 1m, iterations: 3}
`
	if err := os.WriteFile(file, []byte(manifests), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := cliRun(t, "", "render", "-f", file)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	objs := parseBack(t, out)
	want := []string{
		"DaemonSet infra/agent-primary",
		"Service infra/agent", "Service infra/agent-primary", "Service infra/agent-canary",
		"DestinationRule infra/agent-primary", "DestinationRule infra/agent-canary",
		"VirtualService infra/agent",
	}
	if got := names(objs); !slices.Equal(got, want) {
		t.Fatalf("rendered %v, want %v", got, want)
	}
	primary := objs[0].(*appsv1.DaemonSet)
	if img := primary.Spec.Template.Spec.Containers[0].Image; img != "example/agent:v1" || primary.Spec.Selector.MatchLabels[render.SelectorLabel] != "agent-primary" {
		t.Errorf("primary DaemonSet runs %s, selects %v", img, primary.Spec.Selector.MatchLabels)
	}

	// Weighted steps are refused, naming the field.
	weighted := strings.Replace(manifests, "iterations: 3", "stepWeight: 10, maxWeight: 50", 1)
	if err := os.WriteFile(file, []byte(weighted), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := cliRun(t, "", "render", "-f", file); code == ExitOK || !strings.Contains(errOut, "spec.analysis.stepWeight") {
		t.Errorf("a weighted DaemonSet Canary rendered (exit %d): %s", code, errOut)
	}
}
