package e2e

import (
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/apply"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

// operatorAgent is the user agent the operator runs with in this test, so that the field
// managers of its non-apply writes are told apart from the test's own.
const operatorAgent = "canopy-operator"

// fieldsOwnedBy lists the leaf fields that the given managers own in obj, as paths such as
// "spec.replicas" or "metadata.finalizers".
func fieldsOwnedBy(t *testing.T, obj client.Object, managers ...string) []string {
	t.Helper()
	var out []string
	for _, e := range obj.GetManagedFields() {
		if !slices.Contains(managers, e.Manager) || e.FieldsV1 == nil {
			continue
		}
		var tree map[string]any
		if err := json.Unmarshal(e.FieldsV1.GetRawBytes(), &tree); err != nil {
			t.Fatal(err)
		}
		out = append(out, leaves("", tree)...)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// leaves flattens a managedFields tree ({"f:spec":{"f:replicas":{}}}) into field paths.
// A list or map entry ("k:{...}", "v:...") ends the path at its parent: it is all the
// parent's.
func leaves(prefix string, tree map[string]any) []string {
	var out []string
	for k, v := range tree {
		if k == "." {
			continue
		}
		name, isField := strings.CutPrefix(k, "f:")
		if !isField {
			return []string{prefix}
		}
		path := strings.TrimPrefix(prefix+"."+name, ".")
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			out = append(out, leaves(path, sub)...)
		} else {
			out = append(out, path)
		}
	}
	return out
}

// What users keep in Git (the Deployment, the Service, the Canary, the MetricTemplate) is
// not modified by canopy through a whole rollout and a rollback, except the target's replica
// count (through the scale subresource), on the Canary its status and finalizer, and on the
// MetricTemplate its status (whether it is valid). The apiserver's managedFields say who
// wrote what.
func TestGitOpsObjectsAreLeftAlone(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	cfg := rest.CopyConfig(env.Config)
	cfg.UserAgent = operatorAgent
	startOperatorWith(t, cfg, manager.Options{Analyzer: imageAnalyzer{env.Client}})

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}},
	}
	tmpl := &meshv1.MetricTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "errors"},
		Spec:       meshv1.MetricTemplateSpec{Query: `sum(rate(istio_requests_total{destination_workload="{{ target }}"}[{{ interval }}]))`},
	}
	canary := newCanary(ns, "reviews", 10, 20)
	for _, o := range []client.Object{newDeployment(ns, "reviews", "bookinfo/reviews:v1", 2), svc, tmpl, canary} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	waitPhase(t, ns, "reviews", meshv1.PhaseInitialized)
	setImage(t, ns, "reviews", "bookinfo/reviews:v2")
	waitPhase(t, ns, "reviews", meshv1.PhaseSucceeded)
	setImage(t, ns, "reviews", "bookinfo/reviews:bad-v3")
	waitPhase(t, ns, "reviews", meshv1.PhaseFailed)

	canopy := []string{operatorAgent, apply.FieldOwner}
	check := func(obj client.Object, allowed ...string) {
		t.Helper()
		if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Fatal(err)
		}
		for _, f := range fieldsOwnedBy(t, obj, canopy...) {
			if !slices.ContainsFunc(allowed, func(a string) bool { return f == a || strings.HasPrefix(f, a+".") }) {
				t.Errorf("canopy wrote %s of %T %s; it may only write %v", f, obj, obj.GetName(), allowed)
			}
		}
	}
	target := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"}}
	check(target, "spec.replicas")
	check(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}})
	check(&meshv1.MetricTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "errors"}}, "status")
	check(&meshv1.Canary{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"}}, "metadata.finalizers", "status")

	// The check has teeth: the generated primary Deployment is all canopy's.
	primary := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews-primary"}}
	if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(primary), primary); err != nil {
		t.Fatal(err)
	}
	if owned := fieldsOwnedBy(t, primary, canopy...); !slices.Contains(owned, "spec.template.spec.containers") {
		t.Fatalf("canopy's fields of the primary Deployment: %v; the managedFields check sees nothing", owned)
	}
}
