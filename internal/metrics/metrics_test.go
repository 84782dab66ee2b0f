package metrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/hooks"
	"canopy.dev/canopy/internal/scheme"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func ts(d time.Duration) *metav1.Time { t := metav1.NewTime(t0.Add(d)); return &t }

func TestStateCollectorReportsStatus(t *testing.T) {
	canary := &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "reviews"},
		Spec:       meshv1.CanarySpec{TargetRef: meshv1.TargetRef{Name: "reviews-v"}},
		Status: meshv1.CanaryStatus{
			Phase: meshv1.PhaseProgressing, CanaryWeight: 20, StepIndex: 2, FailedChecks: 1,
			RolloutStarted: ts(0), LastTransitionTime: ts(time.Minute),
			Checks: []meshv1.CheckStatus{
				{Name: "request-success-rate", Outcome: meshv1.OutcomePass, Value: "99.5"},
				{Name: "no-data", Outcome: meshv1.OutcomeNoData},
			},
			Conditions: []metav1.Condition{{Type: meshv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Progressing", LastTransitionTime: *ts(0)}},
		},
	}
	policy := &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "gateway"},
		Status: meshv1.MeshPolicyStatus{
			Certificates: []meshv1.CertificateStatus{{Name: "gw-tls", Namespace: "istio-system", SecretName: "gw-tls", Ready: true, NotAfter: ts(90 * 24 * time.Hour), RenewalTime: ts(60 * 24 * time.Hour)}},
			Conditions:   []metav1.Condition{{Type: meshv1.ConditionReady, Status: metav1.ConditionFalse, Reason: "CertificatePending", LastTransitionTime: *ts(0)}},
		},
	}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithStatusSubresource(canary, policy).WithObjects(canary, policy).Build()
	// The fake client does not keep status on create; write it as the controllers would.
	for _, o := range []client.Object{canary, policy} {
		if err := c.Status().Update(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	s := &StateCollector{Reader: c}

	var want strings.Builder
	want.WriteString("# HELP canopy_canary_phase 1 for the phase the Canary is in, 0 for the others.\n# TYPE canopy_canary_phase gauge\n")
	for _, p := range Phases {
		v := 0
		if p == meshv1.PhaseProgressing {
			v = 1
		}
		fmt.Fprintf(&want, "canopy_canary_phase{name=\"reviews\",namespace=\"shop\",phase=%q} %d\n", p, v)
	}
	want.WriteString(`# HELP canopy_canary_info Always 1: names the Canary's target Deployment and the primary, Istio's destination_workload of the canary and primary pods.
# TYPE canopy_canary_info gauge
canopy_canary_info{name="reviews",namespace="shop",primary="reviews-v-primary",target="reviews-v"} 1
# HELP canopy_canary_weight Percentage of the traffic routed to the canary (status.canaryWeight).
# TYPE canopy_canary_weight gauge
canopy_canary_weight{name="reviews",namespace="shop"} 20
# HELP canopy_canary_failed_checks Failed checks in the current rollout (status.failedChecks).
# TYPE canopy_canary_failed_checks gauge
canopy_canary_failed_checks{name="reviews",namespace="shop"} 1
# HELP canopy_canary_ready 1 when the Canary's Ready condition is True.
# TYPE canopy_canary_ready gauge
canopy_canary_ready{name="reviews",namespace="shop"} 1
# HELP canopy_analysis_check_value Last measured value of a check, when it had a numeric one.
# TYPE canopy_analysis_check_value gauge
canopy_analysis_check_value{check="request-success-rate",name="reviews",namespace="shop"} 99.5
# HELP canopy_canary_rollout_start_timestamp_seconds When the current or last rollout started (status.rolloutStarted), in Unix seconds.
# TYPE canopy_canary_rollout_start_timestamp_seconds gauge
canopy_canary_rollout_start_timestamp_seconds{name="reviews",namespace="shop"} 1.7953416e+09
# HELP canopy_meshpolicy_ready 1 when the MeshPolicy's Ready condition is True.
# TYPE canopy_meshpolicy_ready gauge
canopy_meshpolicy_ready{name="gateway",namespace="shop"} 0
# HELP canopy_certificate_expiry_timestamp_seconds When a MeshPolicy's certificate expires (notAfter), in Unix seconds.
# TYPE canopy_certificate_expiry_timestamp_seconds gauge
canopy_certificate_expiry_timestamp_seconds{certificate="gw-tls",certificate_namespace="istio-system",meshpolicy="gateway",namespace="shop",secret="gw-tls"} 1.8031176e+09
# HELP canopy_certificate_ready 1 when a MeshPolicy's cert-manager Certificate is Ready.
# TYPE canopy_certificate_ready gauge
canopy_certificate_ready{certificate="gw-tls",certificate_namespace="istio-system",meshpolicy="gateway",namespace="shop",secret="gw-tls"} 1
# HELP canopy_state_scrape_errors 1 when the Canaries or MeshPolicies (kind) could not be listed from the cache for this scrape.
# TYPE canopy_state_scrape_errors gauge
canopy_state_scrape_errors{kind="Canary"} 0
canopy_state_scrape_errors{kind="MeshPolicy"} 0
`)
	if err := testutil.CollectAndCompare(s, strings.NewReader(want.String()),
		"canopy_canary_info", "canopy_canary_phase", "canopy_canary_weight", "canopy_canary_failed_checks", "canopy_canary_ready",
		"canopy_analysis_check_value", "canopy_canary_rollout_start_timestamp_seconds", "canopy_meshpolicy_ready",
		"canopy_certificate_expiry_timestamp_seconds", "canopy_certificate_ready", "canopy_state_scrape_errors"); err != nil {
		t.Fatal(err)
	}

	// A deleted Canary's series go with it.
	if err := c.Delete(context.Background(), canary); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(s, "canopy_canary_weight"); n != 0 {
		t.Fatalf("%d canopy_canary_weight series after the Canary was deleted, want 0", n)
	}
}

func TestStateCollectorReportsAFailedList(t *testing.T) {
	s := &StateCollector{Reader: failingReader{}}
	want := `# HELP canopy_state_scrape_errors 1 when the Canaries or MeshPolicies (kind) could not be listed from the cache for this scrape.
# TYPE canopy_state_scrape_errors gauge
canopy_state_scrape_errors{kind="Canary"} 1
canopy_state_scrape_errors{kind="MeshPolicy"} 1
`
	if err := testutil.CollectAndCompare(s, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

type failingReader struct{ client.Reader }

func (failingReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("cache not synced")
}

// runs makes the series of each run of a test its own (go test -count=N).
var runs atomic.Int32

func TestRolloutsCountTransitionsOnce(t *testing.T) {
	name := fmt.Sprintf("once-%d", runs.Add(1))
	ns := "rollouts-" + name // the histogram is by namespace
	before := meshv1.CanaryStatus{Phase: meshv1.PhaseFinalising, CanaryWeight: 0, RolloutStarted: ts(0),
		Checks: []meshv1.CheckStatus{{Name: "ok", Outcome: meshv1.OutcomePass, LastMeasured: ts(time.Minute)}}}
	after := &meshv1.Canary{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Status: before}
	after.Status.Phase = meshv1.PhaseSucceeded
	after.Status.LastTransitionTime = ts(5 * time.Minute)
	after.Status.Checks = []meshv1.CheckStatus{
		{Name: "ok", Outcome: meshv1.OutcomePass, LastMeasured: ts(time.Minute)},          // not measured again
		{Name: "latency", Outcome: meshv1.OutcomeFail, LastMeasured: ts(2 * time.Minute)}, // new
	}
	Rollouts{}.ObserveRollout(context.Background(), &before, after)
	// The same status observed again (a reconcile that changed nothing else) counts nothing.
	st := after.Status
	Rollouts{}.ObserveRollout(context.Background(), &st, after)

	if v := testutil.ToFloat64(phaseTransitions.WithLabelValues(ns, name, "Succeeded")); v != 1 {
		t.Errorf("Succeeded transitions %v, want 1", v)
	}
	if v := testutil.ToFloat64(checkResults.WithLabelValues(ns, name, "latency", "Fail")); v != 1 {
		t.Errorf("latency Fail results %v, want 1", v)
	}
	if v := testutil.ToFloat64(checkResults.WithLabelValues(ns, name, "ok", "Pass")); v != 0 {
		t.Errorf("ok Pass results %v, want 0 (not measured in this transition)", v)
	}
	h := rolloutDuration.WithLabelValues(ns, "promoted").(prometheus.Histogram)
	want := `# HELP canopy_canary_rollout_duration_seconds Time from the start of a rollout to its end, by namespace and outcome (promoted or failed).
# TYPE canopy_canary_rollout_duration_seconds histogram
canopy_canary_rollout_duration_seconds_bucket{namespace="%[1]s",outcome="promoted",le="10"} 0
canopy_canary_rollout_duration_seconds_bucket{namespace="%[1]s",outcome="promoted",le="30"} 0
canopy_canary_rollout_duration_seconds_bucket{namespace="%[1]s",outcome="promoted",le="60"} 0
canopy_canary_rollout_duration_seconds_bucket{namespace="%[1]s",outcome="promoted",le="120"} 0
canopy_canary_rollout_duration_seconds_bucket{namespace="%[1]s",outcome="promoted",le="300"} 1
canopy_canary_rollout_duration_seconds_bucket{namespace="%[1]s",outcome="promoted",le="600"} 1
canopy_canary_rollout_duration_seconds_bucket{namespace="%[1]s",outcome="promoted",le="1200"} 1
canopy_canary_rollout_duration_seconds_bucket{namespace="%[1]s",outcome="promoted",le="1800"} 1
canopy_canary_rollout_duration_seconds_bucket{namespace="%[1]s",outcome="promoted",le="3600"} 1
canopy_canary_rollout_duration_seconds_bucket{namespace="%[1]s",outcome="promoted",le="7200"} 1
canopy_canary_rollout_duration_seconds_bucket{namespace="%[1]s",outcome="promoted",le="14400"} 1
canopy_canary_rollout_duration_seconds_bucket{namespace="%[1]s",outcome="promoted",le="28800"} 1
canopy_canary_rollout_duration_seconds_bucket{namespace="%[1]s",outcome="promoted",le="+Inf"} 1
canopy_canary_rollout_duration_seconds_sum{namespace="%[1]s",outcome="promoted"} 300
canopy_canary_rollout_duration_seconds_count{namespace="%[1]s",outcome="promoted"} 1
`
	if err := testutil.CollectAndCompare(h, strings.NewReader(fmt.Sprintf(want, ns))); err != nil {
		t.Fatal(err)
	}
}

// A deleted Canary's series go with it: Canaries created and deleted do not pile up.
func TestForgetCanaryDropsItsSeries(t *testing.T) {
	name := fmt.Sprintf("forget-%d", runs.Add(1))
	for _, n := range []string{name, name + "-other"} {
		c := &meshv1.Canary{ObjectMeta: metav1.ObjectMeta{Namespace: "forget-test", Name: n}}
		c.Status.Phase = meshv1.PhaseProgressing
		c.Status.Checks = []meshv1.CheckStatus{{Name: "ok", Outcome: meshv1.OutcomePass, LastMeasured: ts(time.Minute)}}
		Rollouts{}.ObserveRollout(context.Background(), &meshv1.CanaryStatus{Phase: meshv1.PhaseSucceeded}, c)
	}
	series := func(n string) int { return count(t, n) }
	if got := series(name); got != 2 {
		t.Fatalf("%d series of %s before, want 2 (a transition and a check)", got, name)
	}
	Rollouts{}.ForgetCanary("forget-test", name)
	if got := series(name); got != 0 {
		t.Errorf("%d series of %s after ForgetCanary, want 0", got, name)
	}
	if got := series(name + "-other"); got != 2 {
		t.Errorf("%d series of the other Canary, want its 2 kept", got)
	}
}

// count is the number of series of the Canary forget-test/name in the package's vectors.
func count(t *testing.T, name string) int {
	t.Helper()
	n := 0
	for _, c := range []prometheus.Collector{phaseTransitions, checkResults} {
		ch := make(chan prometheus.Metric, 1024)
		c.Collect(ch)
		close(ch)
		for m := range ch {
			var d dto.Metric
			if err := m.Write(&d); err != nil {
				t.Fatal(err)
			}
			labels := map[string]string{}
			for _, l := range d.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == "forget-test" && labels["name"] == name {
				n++
			}
		}
	}
	return n
}

func TestCallOutcome(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "success"},
		{fmt.Errorf("webhook gate: %w", &hooks.StatusError{StatusCode: 403}), "rejected"},
		{fmt.Errorf("webhook gate: %w", &hooks.NotAllowedError{URL: "http://127.0.0.1", Reason: "loopback"}), "refused"},
		{errors.New("dial tcp: connection refused"), "error"},
	} {
		if got := CallOutcome(tc.err); got != tc.want {
			t.Errorf("CallOutcome(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestInstrumentCallerCounts(t *testing.T) {
	c := InstrumentCaller(answering{err: &hooks.StatusError{StatusCode: 412}})
	hook := meshv1.CanaryWebhook{Name: "gate", Type: meshv1.WebhookConfirmPromotion}
	before := testutil.ToFloat64(webhookCalls.WithLabelValues(string(hook.Type), "rejected"))
	if err := c.Call(context.Background(), hook, hooks.Payload{}); err == nil {
		t.Fatal("the caller's error was swallowed")
	}
	if got := testutil.ToFloat64(webhookCalls.WithLabelValues(string(hook.Type), "rejected")); got != before+1 {
		t.Fatalf("rejected calls %v, want %v", got, before+1)
	}
}

type answering struct{ err error }

func (a answering) Call(context.Context, meshv1.CanaryWebhook, hooks.Payload) error { return a.err }
