package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

// Issue 23, items 1 and 2: a Canary's checks read MetricTemplates of providers other than
// Prometheus, created by a namespace editor: a web endpoint's JSON (a JSONPath), a real
// VictoriaMetrics server (MetricsQL over Prometheus' query API) and a server speaking
// Datadog's documented query API, whose keys come from the editor's Secret. A rollout is
// promoted while all say healthy, and rolled back when one says otherwise.
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
	startOperator(t, manager.Options{WatchNamespaces: ns, MetricsProviderAllowedCIDRs: "127.0.0.0/8", CredentialAllowedHosts: "127.0.0.1"})

	var healthy atomic.Bool
	healthy.Store(true)
	health := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"service":"reviews","status":{"healthy":%t,"checks":[{"name":"db","ok":true}]}}`, healthy.Load())
	})
	vmQuery := `max(last_over_time(reviews_success_percent{namespace="{{ namespace }}"}))`
	// successRate stores v and waits until VictoriaMetrics answers it (a sample becomes
	// searchable a moment after it is written), so that the next rollout's checks see it.
	successRate := func(v float64) {
		t.Helper()
		if err := vm.Import(t.Context(), fmt.Sprintf("reviews_success_percent{namespace=%q} %g\n", ns, v)); err != nil {
			t.Fatal(err)
		}
		q := strings.ReplaceAll(vmQuery, "{{ namespace }}", ns)
		testenv.Eventually(t, time.Minute, func() error {
			got, ok, err := promQuery(t.Context(), vm.URL(), q)
			if err != nil || !ok || got != v {
				return fmt.Errorf("VictoriaMetrics answers %v (ok %t, err %v), want %v", got, ok, err, v)
			}
			return nil
		})
	}
	successRate(99.9)

	// Datadog's query API as documented, answering only with the keys of the tenant's Secret.
	datadog := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/api/v1/query" || r.Header.Get("DD-API-KEY") != "dd-api" || r.Header.Get("DD-APPLICATION-KEY") != "dd-app" ||
			r.URL.Query().Get("from") == "" || r.URL.Query().Get("query") != "sum:trace.http.request.errors{service:reviews}.as_count()" {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"errors":["Forbidden"]}`))
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok","res_type":"time_series","series":[{"metric":"trace.http.request.errors","pointlist":[[1700000000000,0.5]]}]}`))
	})
	keys := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "datadog", Labels: map[string]string{meshv1.LabelCredentials: "true"}},
		StringData: map[string]string{"api-key": "dd-api", "application-key": "dd-app"}}
	if err := tc.Create(t.Context(), keys); err != nil {
		t.Fatal(err)
	}

	templates := map[string]meshv1.MetricTemplateSpec{
		"dd-errors": {
			Provider: meshv1.MetricProvider{Type: "datadog", Address: datadog.URL, SecretRef: &meshv1.LocalObjectReference{Name: "datadog"}},
			Query:    "sum:trace.http.request.errors{service:{{ service }}}.as_count()",
		},
		"web-health": {Provider: meshv1.MetricProvider{Type: "web", Address: health.URL + "/health?service=reviews"}, Query: "{.status.healthy}"},
		"vm-success": {
			Provider: meshv1.MetricProvider{Type: "victoriametrics", Address: vm.URL()},
			// last_over_time with a default window is MetricsQL, not PromQL.
			Query: vmQuery,
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
		{Name: "dd-errors", TemplateRef: &meshv1.TemplateRef{Name: "dd-errors"}, ThresholdRange: meshv1.ThresholdRange{Max: ptr.To(1.0)}},
	}

	// Both healthy: promoted, each check measured its provider's value.
	startRollout(t, tc, c)
	done := waitPhase(t, ns, "reviews", meshv1.PhaseSucceeded)
	for name, want := range map[string]string{"web-health": "1", "vm-success": "99.9", "dd-errors": "0.5"} {
		if ch := findCheck(done, name); ch == nil || ch.Value != want {
			t.Errorf("check %s = %+v, want value %s", name, ch, want)
		}
	}
	for name := range templates {
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
