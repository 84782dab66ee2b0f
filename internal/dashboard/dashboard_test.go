package dashboard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// The history keeps weight changes only, and the last keep of them.
func TestRingKeepsTheLastChanges(t *testing.T) {
	r := &ring{keep: 3}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, w := range []int32{0, 0, 10, 10, 20, 30, 40} {
		r.weight(WeightPoint{T: t0.Add(time.Duration(i) * time.Second), Weight: w, Phase: "Progressing"})
	}
	var got []int32
	for _, p := range r.weights {
		got = append(got, p.Weight)
	}
	if len(got) != 3 || got[0] != 20 || got[2] != 40 {
		t.Errorf("weights %v, want [20 30 40]", got)
	}
}

// The weight is read from canopy_canary_weight as a step line: points where it changes.
func TestPrometheusWeights(t *testing.T) {
	var query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.Query().Get("query")
		_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"0"],[1700000015,"0"],[1700000030,"10"],[1700000045,"20"]]}]}}`))
	}))
	defer srv.Close()
	p, err := newPrometheus(srv.URL, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	points, err := p.weights(t.Context(), "bookinfo", "reviews", time.Unix(1700000060, 0))
	if err != nil {
		t.Fatal(err)
	}
	if want := `max(canopy_canary_weight{namespace="bookinfo",name="reviews"})`; query != want {
		t.Errorf("query %s, want %s", query, want)
	}
	if len(points) != 3 || points[1].Weight != 10 || !points[1].T.Equal(time.Unix(1700000030, 0)) {
		t.Errorf("points %+v, want 0, 10 from 1700000030, 20", points)
	}
	if _, err := newPrometheus("127.0.0.1:9090", time.Hour); err == nil || !strings.Contains(err.Error(), "--prometheus-url") {
		t.Errorf("a URL without scheme: error %v, want one naming --prometheus-url", err)
	}
}

// A MeshPolicy in words: mTLS, callers, resilience, and the ingress certificate's expiry.
func TestPolicyView(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter := metav1.NewTime(now.Add(48 * time.Hour))
	p := &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "storefront"},
		Spec: meshv1.MeshPolicySpec{
			TargetRef: meshv1.ServiceRef{Name: "storefront"},
			MTLS:      &meshv1.MTLS{Mode: "STRICT"},
			Authorization: &meshv1.Authorization{DefaultDeny: true, Rules: []meshv1.AuthorizationRule{{
				From: []meshv1.AuthorizationSource{{ServiceAccounts: []string{"shop/frontend"}}},
				To:   []meshv1.AuthorizationOperation{{Methods: []string{"GET"}}},
			}}},
			Resilience: &meshv1.Resilience{Timeout: "2s", Retries: &meshv1.HTTPRetry{Attempts: 3, PerTryTimeout: "500ms"}},
			Ingress:    &meshv1.Ingress{Hosts: []string{"shop.example.com"}, TLS: &meshv1.IngressTLS{IssuerRef: meshv1.IssuerRef{Name: "shop-ca"}}},
		},
		Status: meshv1.MeshPolicyStatus{Certificates: []meshv1.CertificateStatus{{Name: "shop-storefront", Namespace: "istio-system", Ready: true, NotAfter: &notAfter}}},
	}
	v := policyView(p, now)
	got := strings.Join([]string{v.MTLS, strings.Join(v.Callers, "|"), strings.Join(v.Resilience, "|"), v.Ingress[0].Certificate, v.Ingress[0].Expires}, "\n")
	for _, want := range []string{"STRICT", "nobody but the rules below", "ALLOW from service accounts shop/frontend to methods GET",
		"timeout 2s", "retries attempts:3, perTryTimeout:500ms", "istio-system/shop-storefront", "2026-01-03T00:00:00Z (in 2d)"} {
		if !strings.Contains(got, want) {
			t.Errorf("the view lacks %q:\n%s", want, got)
		}
	}
}

// A MeshPolicy's rollout: nothing without spec.rollout; what a held change would deny and
// who calls in plaintext; promote and abort only while a change waits.
func TestPolicyRolloutView(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := &meshv1.MeshPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"}}
	if v := policyView(p, now); v.Rollout != nil {
		t.Errorf("rollout %+v without spec.rollout, want none", v.Rollout)
	}
	p.Spec.Rollout = &meshv1.PolicyRollout{}
	if v := policyView(p, now); v.Rollout == nil || v.Rollout.Phase != "Pending" || v.Rollout.Waiting {
		t.Errorf("rollout %+v before any status, want Pending and nothing to press", v.Rollout)
	}
	since := metav1.NewTime(now.Add(-2 * time.Minute))
	p.Status.Rollout = &meshv1.PolicyRolloutStatus{
		Phase: meshv1.PolicyPhaseHeld, Reason: meshv1.PolicyReasonWouldDeny, Message: "would have denied 12 requests", DryRunSince: &since,
		DeniedCalls:      []meshv1.DeniedCall{{SourcePrincipal: "spiffe://cluster.local/ns/shop/sa/web", Method: "GET", Path: "/cart", Count: 12}},
		PlaintextClients: []meshv1.PlaintextClient{{Namespace: "legacy", Workload: "batch", Count: 3}},
	}
	v := policyView(p, now).Rollout
	got := strings.Join(append([]string{v.Phase, v.Reason, v.Message, v.Since}, v.Calls...), "\n")
	for _, want := range []string{"Held", "WouldDeny", "would have denied 12 requests", "2025-12-31T23:58:00Z (2m ago)",
		"would deny GET /cart from spiffe://cluster.local/ns/shop/sa/web (12 requests)", "calls without mTLS: legacy/batch (3 requests)"} {
		if !strings.Contains(got, want) {
			t.Errorf("the rollout view lacks %q:\n%s", want, got)
		}
	}
	if !v.Waiting {
		t.Errorf("a held change: want promote and abort offered")
	}
	p.Status.Rollout = &meshv1.PolicyRolloutStatus{Phase: meshv1.PolicyPhaseEnforced, DryRunSince: &since}
	if v := policyView(p, now).Rollout; v.Waiting || v.Since != "" {
		t.Errorf("an enforced change: %+v, want nothing to press and no window", v)
	}
}

// The watch's events make the history: the weight from the status first seen on, each
// change after, and each new measurement of a check once.
func TestHistoryFromTheWatch(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newCache(nil, "", 10, func() time.Time { return now })
	step := metav1.NewTime(now.Add(-time.Minute))
	cn := &meshv1.Canary{ObjectMeta: metav1.ObjectMeta{Namespace: "bookinfo", Name: "reviews", UID: "u1"}}
	cn.Status = meshv1.CanaryStatus{Phase: meshv1.PhaseProgressing, CanaryWeight: 10, LastStepTime: &step}
	c.observe(nil, cn)

	measured := metav1.NewTime(now)
	next := cn.DeepCopy()
	next.Status.CanaryWeight = 20
	next.Status.Checks = []meshv1.CheckStatus{{Name: "request-success-rate", Outcome: meshv1.OutcomePass, Value: "99.5", Threshold: ">= 99", LastMeasured: &measured}}
	c.observe(cn, next)
	c.observe(next, next.DeepCopy()) // a resync: nothing new

	h := c.historyOf("bookinfo/reviews")
	if len(h.Weight) != 2 || h.Weight[0].Weight != 10 || !h.Weight[0].T.Equal(step.Time) || h.Weight[1].Weight != 20 {
		t.Errorf("weights %+v, want 10 from the last step's time, then 20", h.Weight)
	}
	if len(h.Checks) != 1 || h.Checks[0].Value != "99.5" || h.Checks[0].Threshold != ">= 99" {
		t.Errorf("checks %+v, want the one measurement", h.Checks)
	}

	// A new Canary of the same name starts a new history.
	again := &meshv1.Canary{ObjectMeta: metav1.ObjectMeta{Namespace: "bookinfo", Name: "reviews", UID: "u2"}}
	c.observe(nil, again)
	if h := c.historyOf("bookinfo/reviews"); len(h.Weight) != 1 || h.Weight[0].Weight != 0 || len(h.Checks) != 0 {
		t.Errorf("history %+v, want the new Canary's alone", h)
	}
	c.forget(again)
	if h := c.historyOf("bookinfo/reviews"); len(h.Weight) != 0 {
		t.Errorf("history %+v after the deletion, want none", h)
	}
}
