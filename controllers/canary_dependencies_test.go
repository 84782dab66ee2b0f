package controllers

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/ptr"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/analysis"
	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/analysis/providers/prometheus"
	"canopy.dev/canopy/internal/hooks"
)

// flakyPrometheus answers instant queries as told: a healthy success rate, garbage, nothing
// until the client gives up, or a dropped connection.
type flakyPrometheus struct {
	mode atomic.Value // string
	srv  *httptest.Server
}

func newFlakyPrometheus(t *testing.T) *flakyPrometheus {
	t.Helper()
	p := &flakyPrometheus{}
	p.mode.Store("ok")
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p.mode.Load().(string) {
		case "ok":
			_, _ = fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"99.9"]}]}}`)
		case "garbage":
			_, _ = fmt.Fprint(w, `<html>It works!</html>`)
		case "slow":
			<-r.Context().Done() // never answers; the query timeout ends the wait
		case "down":
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				_ = conn.(*net.TCPConn).SetLinger(0)
				_ = conn.Close()
			}
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// withRealDependencies gives the harness's reconciler canopy's own analyzer (querying prom)
// and webhook client (both allowed to call loopback, where the test's servers are).
func (h *harness) withRealDependencies(prom *flakyPrometheus) {
	h.t.Helper()
	policy, err := hooks.ParsePolicy(nil, []string{"127.0.0.0/8"})
	if err != nil {
		h.t.Fatal(err)
	}
	h.r.Analyzer = analysis.New(env.Client, prometheus.NewFactory().New, analysis.Options{
		DefaultProvider: providers.Config{Type: prometheus.Type, Address: prom.srv.URL},
		ProviderPolicy:  policy, // the Canaries name the test's Prometheus, on loopback
		SecretReader:    env.Client,
		Clock:           h.clock,
	})
	h.r.Hooks = hooks.NewClient(policy, hooks.ClientOptions{Backoff: 10 * time.Millisecond})
}

func checkOf(c *meshv1.Canary, name string) meshv1.CheckStatus {
	for _, ch := range c.Status.Checks {
		if ch.Name == name {
			return ch
		}
	}
	return meshv1.CheckStatus{}
}

// Prometheus answering garbage, not answering within the query timeout, or dropping the
// connection holds the step (onError: hold) with the outcome in status; once it answers
// again the rollout goes on. Held longer than holdTimeout, the check counts as failed, and
// failures reaching the threshold roll back. Every reconcile returns: the waits are bounded.
func TestCanaryAnalysisThroughAMisbehavingPrometheus(t *testing.T) {
	h := newHarness(t)
	prom := newFlakyPrometheus(t)
	h.withRealDependencies(prom)
	c := reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10), MaxWeight: 50})
	c.Spec.Analysis.Provider = &meshv1.MetricProvider{Address: prom.srv.URL, Timeout: "1s"}
	c.Spec.Analysis.Metrics[0].HoldTimeout = "3m"
	h.initialize(c)
	h.startRollout("reviews:v2")
	h.expectWeights(90, 10)
	got := h.tick(time.Minute)
	h.expectWeights(80, 20)
	if ch := checkOf(got, "request-success-rate"); ch.Outcome != meshv1.OutcomePass {
		t.Fatalf("check with a healthy Prometheus: %+v", ch)
	}

	for _, tc := range []struct{ mode, outcome string }{
		{"garbage", string(meshv1.OutcomeError)},
		{"slow", string(meshv1.OutcomeTimeout)},
		{"down", string(meshv1.OutcomeUnreachable)},
	} {
		prom.mode.Store(tc.mode)
		got = h.tick(time.Minute)
		h.expectWeights(80, 20) // held, not moved and not failed
		ch := checkOf(got, "request-success-rate")
		if string(ch.Outcome) != tc.outcome || ch.HoldingSince == nil || got.Status.FailedChecks != 0 {
			t.Fatalf("Prometheus %s: check %+v, failed checks %d; want %s, holding, none failed", tc.mode, ch, got.Status.FailedChecks, tc.outcome)
		}
		if cond := meta.FindStatusCondition(got.Status.Conditions, meshv1.ConditionAnalysis); cond == nil || cond.Reason != meshv1.ReasonCheckHolding {
			t.Fatalf("Prometheus %s: Analysis condition %+v, want reason %s", tc.mode, cond, meshv1.ReasonCheckHolding)
		}
	}

	// Prometheus is back before the hold timeout: the rollout goes on from where it held.
	prom.mode.Store("ok")
	h.tick(time.Minute)
	h.expectWeights(70, 30)

	// Down for longer than the hold timeout: the check fails, twice, and the canary is rolled back.
	prom.mode.Store("down")
	for range 8 {
		got = h.tick(time.Minute)
		if got.Status.Phase == meshv1.PhaseFailed {
			break
		}
	}
	expectPhase(t, got, meshv1.PhaseFailed)
	h.expectWeights(100, 0)
	ready := meta.FindStatusCondition(got.Status.Conditions, meshv1.ConditionReady)
	if ready == nil || !strings.Contains(ready.Message, "hold timeout") {
		t.Fatalf("Ready condition should say the check was not measurable beyond its hold timeout: %+v", ready)
	}
}

// A confirm-promotion gate whose webhook hangs stays closed, bounded by the webhook's
// timeout: the reconcile returns, the weight stays at the last step, and status says which
// gate is waiting. When the webhook answers, the canary is promoted.
func TestCanaryGateWithAHangingWebhook(t *testing.T) {
	h := newHarness(t)
	prom := newFlakyPrometheus(t)
	h.withRealDependencies(prom)
	var open atomic.Bool
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then the server notices the caller hanging up
		if !open.Load() {
			<-r.Context().Done() // hangs until the caller's timeout
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(gate.Close)
	c := reviewsCanary(meshv1.CanaryAnalysis{StepWeight: ptr.To[int32](10), MaxWeight: 20})
	c.Spec.Analysis.Provider = &meshv1.MetricProvider{Address: prom.srv.URL}
	c.Spec.Analysis.Webhooks = []meshv1.CanaryWebhook{{
		Name: "release-manager", Type: meshv1.WebhookConfirmPromotion, URL: gate.URL, Timeout: "1s", Retries: ptr.To[int32](0),
	}}
	h.initialize(c)
	h.startRollout("reviews:v2")
	h.tick(time.Minute)
	h.expectWeights(80, 20)
	for range 3 {
		got := h.tick(time.Minute)
		expectPhase(t, got, meshv1.PhaseProgressing)
		h.expectWeights(80, 20)
		if !strings.Contains(meta.FindStatusCondition(got.Status.Conditions, meshv1.ConditionReady).Message, "release-manager") {
			t.Fatalf("status should name the waiting gate: %+v", got.Status.Conditions)
		}
	}
	open.Store(true)
	got := h.tick(time.Minute)
	expectPhase(t, got, meshv1.PhasePromoting)
}
