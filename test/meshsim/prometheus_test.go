package meshsim

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/analysis"
	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/analysis/providers/prometheus"
	"canopy.dev/canopy/test/testenv"
)

// TestChecksThroughPrometheus closes the loop the operator relies on: the simulator's
// metrics, scraped by a real Prometheus, answer canopy's built-in checks and a
// MetricTemplate, a bad revision fails them, and a stopped Prometheus is Unreachable.
func TestChecksThroughPrometheus(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	createReviews(t, ns, 50, 50)
	sim := startSim(t, Options{TickInterval: 250 * time.Millisecond, Namespaces: []string{ns}})
	prom, err := testenv.StartPrometheus(testenv.PrometheusOptions{Targets: []string{sim.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prom.Close() })
	ctx := t.Context()

	tmpl := &meshv1.MetricTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "server-errors"},
		Spec: meshv1.MetricTemplateSpec{Query: `sum(rate(istio_requests_total{reporter="destination",` +
			`destination_workload_namespace="{{ namespace }}",destination_workload="{{ target }}",response_code=~"{{ variables.class }}.."}[{{ interval }}])) or vector(0)`},
	}
	if err := env.Client.Create(ctx, tmpl); err != nil {
		t.Fatal(err)
	}
	canary := &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec: meshv1.CanarySpec{
			TargetRef: meshv1.TargetRef{Name: "reviews"},
			Analysis: meshv1.CanaryAnalysis{Interval: "10s", Metrics: []meshv1.CanaryMetric{
				{Name: "request-success-rate", ThresholdRange: meshv1.ThresholdRange{Min: ptr.To(99.0)}, MinRequests: ptr.To[int64](20)},
				{Name: "request-duration", ThresholdRange: meshv1.ThresholdRange{Max: ptr.To(500.0)}},
				{
					Name: "server-errors", TemplateRef: &meshv1.TemplateRef{Name: "server-errors"},
					ThresholdRange: meshv1.ThresholdRange{Max: ptr.To(0.5)},
					// A value in a regular expression matcher is matched literally (issue 19,
					// item 8): the template holds the pattern, the variable the code class.
					TemplateVariables: map[string]string{"class": "5"},
				},
			}},
		},
	}
	runner := analysis.New(env.Client, prometheus.NewFactory().New, analysis.Options{
		DefaultProvider: providers.Config{Address: prom.URL()},
	})
	expect := func(want ...meshv1.CheckOutcome) func() error {
		return func() error {
			got := runner.Run(ctx, canary)
			for i, st := range got {
				if st.Outcome != want[i] {
					return fmt.Errorf("%s is %s (value %q, %s), want %s", st.Name, st.Outcome, st.Value, st.Message, want[i])
				}
			}
			for _, st := range got {
				t.Logf("%s: %s %s (%s) %s", st.Name, st.Outcome, st.Value, st.Threshold, st.Message)
			}
			return nil
		}
	}

	// A healthy canary: ~25 requests a second, no errors, p99 about 25 ms.
	testenv.Eventually(t, 2*time.Minute, expect(meshv1.OutcomePass, meshv1.OutcomePass, meshv1.OutcomePass))

	// A bad revision is a Deployment edit: half the requests fail, and slowly.
	dep := &appsv1.Deployment{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reviews"}, dep); err != nil {
		t.Fatal(err)
	}
	dep.Spec.Template.Annotations = map[string]string{AnnotationErrorRate: "0.5", AnnotationLatency: "p50=400,p99=900"}
	if err := env.Client.Update(ctx, dep); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 2*time.Minute, expect(meshv1.OutcomeFail, meshv1.OutcomeFail, meshv1.OutcomeFail))

	// That a variable cannot rewrite the query, in a regular expression matcher or a string,
	// is tested where the query is built (internal/analysis: TestRenderQuery*, FuzzRenderQuery)
	// and as a tenant's attack in test/e2e (TestTenantRegexVariableStaysLiteral).

	// Prometheus stopped: every check is Unreachable, none passes.
	if err := prom.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, st := range runner.Run(ctx, canary) {
		if st.Outcome != meshv1.OutcomeUnreachable || !strings.Contains(st.Message, "connection refused") {
			t.Errorf("%s with Prometheus stopped: %s (%s), want Unreachable", st.Name, st.Outcome, st.Message)
		}
	}
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 2*time.Minute, expect(meshv1.OutcomeFail, meshv1.OutcomeFail, meshv1.OutcomeFail))
}
