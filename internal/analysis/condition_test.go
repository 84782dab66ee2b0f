package analysis

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

func TestCompileCondition(t *testing.T) {
	for _, tc := range []struct {
		expr    string
		compare bool   // a check with compareWithPrimary
		want    string // "" when valid; else a piece of the error
	}{
		{expr: "result < 0.01 && result >= 0"},
		{expr: "result <= 1"}, // an int literal compares with the double
		{expr: "result * 2.0 > 3.5 || result == 0.0"},
		{expr: "result <", want: "not a valid CEL expression"},
		{expr: "results < 1", want: "undeclared reference"},
		{expr: "result + 1.0", want: "must return a bool"},
		{expr: "canary < 1", want: "undeclared reference"},
		{expr: "canary <= primary * 1.1 + 0.5", compare: true},
		{expr: "canary <= primary * 1.1 + 5", compare: true, want: "write 10.0, not 10"},
		{expr: "result <= primary", compare: true},
		{expr: "canary < baseline", compare: true, want: "undeclared reference"},
		// Nested comprehensions over a list: cheap to write, dear to run.
		{expr: "[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, a+b+c+d > 0))))", want: "estimated cost"},
	} {
		_, err := CompileCondition(tc.expr, tc.compare)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.expr, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want one saying %q", tc.expr, err, tc.want)
		}
	}
}

func TestJudgeConditions(t *testing.T) {
	const success, failure = "result < 0.01", "result > 0.05"
	for _, tc := range []struct {
		name             string
		success, failure string
		value            float64
		want             meshv1.CheckOutcome
	}{
		{"success alone, true", success, "", 0.001, meshv1.OutcomePass},
		{"success alone, false", success, "", 0.02, meshv1.OutcomeFail},
		{"failure alone, true", "", failure, 0.06, meshv1.OutcomeFail},
		{"failure alone, false", "", failure, 0.02, meshv1.OutcomePass},
		{"both, success", success, failure, 0.001, meshv1.OutcomePass},
		{"both, failure", success, failure, 0.06, meshv1.OutcomeFail},
		{"both, neither", success, failure, 0.02, meshv1.OutcomeInconclusive},
		{"failure wins", "result > 0.0", "result > 0.05", 0.06, meshv1.OutcomeFail},
		{"NaN never passes", "", "result > 0.05", math.NaN(), meshv1.OutcomeNaN},
		{"Inf never passes", "result > 0.0", "", math.Inf(1), meshv1.OutcomeNaN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &meshv1.CanaryMetric{Name: "errors", SuccessCondition: tc.success, FailureCondition: tc.failure}
			got, msg := judgeConditions(measured{canary: tc.value}, m)
			if got != tc.want {
				t.Errorf("outcome %s (%s), want %s", got, msg, tc.want)
			}
			if got != meshv1.OutcomePass && msg == "" {
				t.Errorf("outcome %s has no message", got)
			}
		})
	}
}

// TestRunnerConditions runs a templated check judged by CEL conditions end to end through
// the runner: the value comes from a Prometheus stand-in, and the status shows the
// conditions as the threshold.
func TestRunnerConditions(t *testing.T) {
	prom := newPromServer(t, map[string]string{"errors_total": sample("0.02")})
	tmpl := &meshv1.MetricTemplate{}
	tmpl.Namespace, tmpl.Name = "shop", "errors"
	tmpl.Spec.Query = `sum(rate(errors_total{namespace="{{ namespace }}"}[{{ interval }}]))`
	r := newTestRunner(t, prom.URL, Options{}, tmpl)
	m := meshv1.CanaryMetric{Name: "errors", TemplateRef: &meshv1.TemplateRef{Name: "errors"},
		SuccessCondition: "result < 0.01", FailureCondition: "result > 0.05"}
	got := r.Run(context.Background(), testCanary(m))[0]
	if got.Outcome != meshv1.OutcomeInconclusive || got.Value != "0.02" {
		t.Fatalf("got %+v, want Inconclusive at 0.02", got)
	}
	if got.Threshold != "success: result < 0.01; failure: result > 0.05" {
		t.Errorf("threshold %q", got.Threshold)
	}

	m.FailureCondition = ""
	m.DryRun = true
	got = r.Run(context.Background(), testCanary(m))[0]
	if got.Outcome != meshv1.OutcomeFail || !got.DryRun {
		t.Errorf("got %+v, want a dry-run Fail", got)
	}
}

// TestRunnerComparesWithPrimary runs a check with compareWithPrimary through the runner:
// the same template is queried for the canary's workload and for the primary's, the
// condition sees both, and the status shows both.
func TestRunnerComparesWithPrimary(t *testing.T) {
	prom := newPromServer(t, map[string]string{
		`workload="reviews"`:         sample("0.3"),
		`workload="reviews-primary"`: sample("0.25"),
	})
	tmpl := &meshv1.MetricTemplate{}
	tmpl.Namespace, tmpl.Name = "shop", "errors"
	tmpl.Spec.Query = `sum(rate(errors_total{workload="{{ target }}",service="{{ service }}"}[{{ interval }}]))`
	r := newTestRunner(t, prom.URL, Options{}, tmpl)
	m := meshv1.CanaryMetric{Name: "errors", TemplateRef: &meshv1.TemplateRef{Name: "errors"},
		CompareWithPrimary: true, SuccessCondition: "canary <= primary * 1.1"}
	got := r.Run(context.Background(), testCanary(m))[0]
	if got.Outcome != meshv1.OutcomeFail || got.Value != "0.3" || got.PrimaryValue != "0.25" {
		t.Fatalf("got %+v, want a Fail at canary 0.3, primary 0.25", got)
	}
	if !strings.Contains(got.Message, "canary 0.3 (primary 0.25)") {
		t.Errorf("message %q names neither value", got.Message)
	}
	queries, _ := prom.received()
	want := []string{
		`sum(rate(errors_total{workload="reviews",service="reviews"}[30s]))`,
		`sum(rate(errors_total{workload="reviews-primary",service="reviews"}[30s]))`,
	}
	if !slices.Equal(queries, want) {
		t.Errorf("queries %q, want %q", queries, want)
	}

	m.SuccessCondition = "canary <= primary * 1.1 + 0.5"
	if got := r.Run(context.Background(), testCanary(m))[0]; got.Outcome != meshv1.OutcomePass {
		t.Errorf("got %+v, want a Pass within the primary's value plus 0.5", got)
	}
}
