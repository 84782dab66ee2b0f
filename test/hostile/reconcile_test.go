package hostile

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/analysis"
	"canopy.dev/canopy/internal/analysis/providers"
	promprovider "canopy.dev/canopy/internal/analysis/providers/prometheus"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/inprocess"
	"canopy.dev/canopy/test/testenv"
)

// TestInjectionStaysData: template variables are data. Values written to break out of a
// label matcher or to append an expression are accepted by the apiserver (a variable is
// any string), and the analysis the reconciler runs either quotes them inside the string
// they land in, or refuses to run the query: Prometheus never receives another query.
func TestInjectionStaysData(t *testing.T) {
	inprocess.Start(t, env, manager.Options{})
	ns := env.CreateNamespace(t)
	prom := newPrometheus(t)
	ctx := t.Context()

	templates := map[string]string{
		"by-label": `sum(rate(http_requests_total{namespace="{{ namespace }}",job="{{ variables.job }}"}[{{ interval }}]))`,
		"by-name":  `sum(rate({{ variables.metric }}[{{ interval }}]))`,
	}
	for name, q := range templates {
		mt := &meshv1.MetricTemplate{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: meshv1.MetricTemplateSpec{Query: q}}
		if err := env.Client.Create(ctx, mt); err != nil {
			t.Fatalf("creating MetricTemplate %s: %v", name, err)
		}
	}
	const breakOut = `x"} or vector(1) or up{job="`
	c := &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns},
		Spec: meshv1.CanarySpec{
			TargetRef: meshv1.TargetRef{Name: "podinfo"},
			Service:   meshv1.CanaryService{Port: 9898},
			Analysis: meshv1.CanaryAnalysis{Interval: "1m", StepWeight: ptr.To[int32](10), MaxWeight: 50, Metrics: []meshv1.CanaryMetric{
				{Name: "label-break-out", TemplateRef: &meshv1.TemplateRef{Name: "by-label"}, ThresholdRange: meshv1.ThresholdRange{Min: ptr.To(0.5)},
					TemplateVariables: map[string]string{"job": breakOut}, OnError: meshv1.OnErrorFail},
				{Name: "expression-append", TemplateRef: &meshv1.TemplateRef{Name: "by-name"}, ThresholdRange: meshv1.ThresholdRange{Min: ptr.To(0.5)},
					TemplateVariables: map[string]string{"metric": `up[5m])) or vector(1) #`}, OnError: meshv1.OnErrorFail},
			}},
		},
	}
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatalf("the apiserver refused template variables, which are data: %v", err)
	}

	// The Canary as stored, measured by the analysis the reconciler runs.
	stored := &meshv1.Canary{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(c), stored); err != nil {
		t.Fatal(err)
	}
	runner := analysis.New(env.Client, promprovider.NewFactory().New, analysis.Options{
		DefaultProvider: providers.Config{Type: promprovider.Type, Address: prom.URL, Timeout: 10 * time.Second},
	})
	results := runner.Run(ctx, stored)
	if len(results) != 2 {
		t.Fatalf("%d results, want 2: %+v", len(results), results)
	}
	if r := results[0]; r.Outcome != meshv1.OutcomePass {
		t.Errorf("label-break-out: %s %q, want Pass: the value is a label value like any other", r.Outcome, r.Message)
	}
	if r := results[1]; r.Outcome != meshv1.OutcomeBadQuery || !strings.Contains(r.Message, "not an identifier") {
		t.Errorf("expression-append: %s %q, want BadQuery saying the value is not an identifier", r.Outcome, r.Message)
	}
	want := `sum(rate(http_requests_total{namespace="` + ns + `",job="x\"} or vector(1) or up{job=\""}[1m]))`
	if got := prom.received(); len(got) != 1 || got[0] != want {
		t.Errorf("Prometheus received %q, want exactly [%q]", got, want)
	}
}

// TestRefusedAtReconcileWritesNothing: a MeshPolicy the webhook cannot judge (its route
// names a port, and only the Service knows its ports) is accepted, then refused by the
// controller, which generates none of its objects; once corrected, all of them.
func TestRefusedAtReconcileWritesNothing(t *testing.T) {
	op := inprocess.Start(t, env, manager.Options{})
	ns := env.CreateNamespace(t)
	ctx := t.Context()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "reviews"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 9080, TargetPort: intstr.FromInt32(9080)}}},
	}
	if err := env.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	p := &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: ns},
		Spec: meshv1.MeshPolicySpec{
			TargetRef: meshv1.ServiceRef{Name: "reviews"},
			MTLS:      &meshv1.MTLS{Mode: meshv1.MTLSStrict},
			Routes:    []meshv1.Route{{Name: "api", Port: ptr.To[int32](8080), Timeout: "3s"}},
		},
	}
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatalf("refused at admission, want refused by the controller: %v", err)
	}
	key := client.ObjectKeyFromObject(p)
	testenv.Eventually(t, time.Minute, func() error {
		if err := env.Client.Get(ctx, key, p); err != nil {
			return err
		}
		stalled := meta.FindStatusCondition(p.Status.Conditions, meshv1.ConditionStalled)
		if stalled == nil || stalled.Status != metav1.ConditionTrue || stalled.Reason != meshv1.ReasonInconsistent ||
			!strings.Contains(stalled.Message, "spec.routes[0].port") || !strings.Contains(stalled.Message, "8080 is not a port of Service") {
			return fmt.Errorf("Stalled = %+v, want True, %s, naming spec.routes[0].port", stalled, meshv1.ReasonInconsistent)
		}
		return nil
	})
	if n := generated(t, ns); n != 0 {
		t.Errorf("%d objects generated for a refused MeshPolicy, want none", n)
	}

	p.Spec.Routes[0].Port = ptr.To[int32](9080)
	if err := env.Client.Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, func() error {
		if err := env.Client.Get(ctx, key, p); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(p.Status.Conditions, meshv1.ConditionReady) || p.Status.ObservedGeneration != p.Generation {
			return fmt.Errorf("conditions %+v", p.Status.Conditions)
		}
		return nil
	})
	// PeerAuthentication, DestinationRule and VirtualService: all of them at once.
	if n := generated(t, ns); n != 3 {
		t.Errorf("%d objects generated for the corrected MeshPolicy, want 3", n)
	}
	if err := op.Exited(); err != nil {
		t.Fatal(err)
	}
}

// generated counts the Istio objects canopy generated in ns.
func generated(t *testing.T, ns string) int {
	t.Helper()
	n := 0
	for _, gvk := range []struct{ apiVersion, kind string }{
		{"security.istio.io/v1", "PeerAuthenticationList"},
		{"security.istio.io/v1", "AuthorizationPolicyList"},
		{"networking.istio.io/v1", "DestinationRuleList"},
		{"networking.istio.io/v1", "VirtualServiceList"},
		{"telemetry.istio.io/v1", "TelemetryList"},
	} {
		l := &unstructured.UnstructuredList{}
		l.SetAPIVersion(gvk.apiVersion)
		l.SetKind(gvk.kind)
		if err := env.Client.List(t.Context(), l, client.InNamespace(ns), client.MatchingLabels{meshv1.LabelManagedBy: meshv1.ManagedByValue}); err != nil {
			t.Fatal(err)
		}
		n += len(l.Items)
	}
	return n
}
