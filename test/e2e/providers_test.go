package e2e

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

// Issue 23, items 1 and 2: a Canary's checks read MetricTemplates of providers other than
// Prometheus, created by a namespace editor: a web endpoint's JSON (a JSONPath) and a real
// VictoriaMetrics server (MetricsQL over Prometheus' query API). A rollout is promoted while
// both say healthy, and rolled back when either says otherwise.
func TestNonPrometheusProvidersDecideRollouts(t *testing.T) {
	testenv.SkipIfShort(t)
	vm, err := testenv.StartVictoriaMetrics()
	testenv.SkipUnlessOptional(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("VictoriaMetrics log:\n%s", vm.Log())
		}
		if err := vm.Close(); err != nil {
			t.Errorf("closing VictoriaMetrics: %v", err)
		}
	})
	ns := env.CreateNamespace(t)
	tc := tenantClient(t, ns)
	startOperator(t, manager.Options{WatchNamespaces: ns, MetricsProviderAllowedCIDRs: "127.0.0.0/8"})

	var healthy atomic.Bool
	healthy.Store(true)
	health := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"service":"reviews","status":{"healthy":%t,"checks":[{"name":"db","ok":true}]}}`, healthy.Load())
	})
	successRate := func(v float64) {
		t.Helper()
		if err := vm.Import(t.Context(), fmt.Sprintf("reviews_success_percent{namespace=%q} %g\n", ns, v)); err != nil {
			t.Fatal(err)
		}
	}
	successRate(99.9)

	templates := map[string]meshv1.MetricTemplateSpec{
		"web-health": {Provider: meshv1.MetricProvider{Type: "web", Address: health.URL + "/health?service=reviews"}, Query: "{.status.healthy}"},
		"vm-success": {
			Provider: meshv1.MetricProvider{Type: "victoriametrics", Address: vm.URL()},
			// last_over_time with a default window is MetricsQL, not PromQL.
			Query: `max(last_over_time(reviews_success_percent{namespace="{{ namespace }}"}))`,
		},
	}
	c := newCanary(ns, "reviews", 10, 30)
	c.Spec.Analysis.Metrics = nil
	for name, spec := range templates {
		mt := &meshv1.MetricTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
		if err := tc.Create(t.Context(), mt); err != nil {
			t.Fatalf("creating MetricTemplate %s as the namespace editor: %v", name, err)
		}
	}
	c.Spec.Analysis.Metrics = []meshv1.CanaryMetric{
		{Name: "web-health", TemplateRef: &meshv1.TemplateRef{Name: "web-health"}, ThresholdRange: meshv1.ThresholdRange{Min: ptr.To(1.0)}},
		{Name: "vm-success", TemplateRef: &meshv1.TemplateRef{Name: "vm-success"}, ThresholdRange: meshv1.ThresholdRange{Min: ptr.To(99.0)}},
	}

	// Both healthy: promoted, each check measured its provider's value.
	startRollout(t, tc, c)
	done := waitPhase(t, ns, "reviews", meshv1.PhaseSucceeded)
	for name, want := range map[string]string{"web-health": "1", "vm-success": "99.9"} {
		if ch := findCheck(done, name); ch == nil || ch.Value != want {
			t.Errorf("check %s = %+v, want value %s", name, ch, want)
		}
	}
	for _, name := range []string{"web-health", "vm-success"} {
		testenv.Eventually(t, time.Minute, func() error {
			mt := &meshv1.MetricTemplate{}
			if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, mt); err != nil {
				return err
			}
			if cond := meta.FindStatusCondition(mt.Status.Conditions, meshv1.ConditionReady); cond == nil || cond.Status != metav1.ConditionTrue {
				return fmt.Errorf("MetricTemplate %s Ready = %+v", name, cond)
			}
			return nil
		})
	}

	// VictoriaMetrics says the success rate fell: rolled back on its value.
	successRate(42)
	setImage(t, ns, "reviews", "bookinfo/reviews:v3")
	failed := waitPhase(t, ns, "reviews", meshv1.PhaseFailed)
	if ch := findCheck(failed, "vm-success"); ch == nil || ch.Value != "42" || ch.Outcome != meshv1.OutcomeFail {
		t.Errorf("check vm-success after the rollback = %+v, want Failed at 42", ch)
	}

	// The web endpoint says unhealthy: rolled back on its value.
	successRate(99.9)
	healthy.Store(false)
	setImage(t, ns, "reviews", "bookinfo/reviews:v4")
	testenv.Eventually(t, time.Minute, func() error {
		got := getCanary(t, ns, "reviews")
		if got.Status.Phase != meshv1.PhaseFailed || got.Status.CurrentRevision == failed.Status.CurrentRevision {
			return fmt.Errorf("phase %s at revision %s, want Failed at a new revision", got.Status.Phase, got.Status.CurrentRevision)
		}
		if ch := findCheck(got, "web-health"); ch == nil || ch.Value != "0" || ch.Outcome != meshv1.OutcomeFail {
			return fmt.Errorf("check web-health = %+v, want Failed at 0", ch)
		}
		return nil
	})
}
