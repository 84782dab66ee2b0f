package e2e

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/tarpit"
	"canopy.dev/canopy/test/testenv"
)

// Issue 19, item 3: tenant A's Canary points many checks at a Prometheus that never
// answers and many webhooks at a server that never answers, each with the longest timeout
// and the most retries its CRD allows; the operator runs one Canary worker. Tenant B's
// Canary, in another namespace, fails its analysis while A is in that slow analysis, and
// must be rolled back: B's decision waits for a worker only as long as the reconcile budget
// lets A hold it. Without the budget, A's reconcile holds the worker for hours, and B's
// rollback never comes within the bound.
func TestTenantCannotStallAnotherTenantsRollback(t *testing.T) {
	testenv.SkipIfShort(t)
	a, b := newTenant(t, ""), newTenant(t, "")
	startOperator(t, manager.Options{
		WatchNamespaces: a.ns + "," + b.ns,
		// One worker: whatever A holds, B waits for.
		MaxConcurrent:       1,
		WebhookAllowedCIDRs: "127.0.0.0/8", MetricsProviderAllowedCIDRs: "127.0.0.0/8",
		ReconcileBudget: 3 * time.Second, MaxCheckTimeout: time.Second, MaxWebhookTimeout: time.Second,
	})

	// B progresses to its maximum weight and waits there for a promotion gate that says
	// "not yet", its success rate read from a provider of its own that answers 100.
	var rate atomic.Value
	rate.Store("100")
	provider := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"%s"]}]}}`, rate.Load())
	})
	notYet := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) })
	cb := providerCanary(b.ns, "reviews", provider.URL)
	cb.Spec.Analysis.Interval, cb.Spec.Analysis.Threshold = "3s", 1
	cb.Spec.Analysis.Webhooks = []meshv1.CanaryWebhook{{Name: "release-manager", Type: meshv1.WebhookConfirmPromotion, URL: notYet.URL}}
	startRollout(t, b.c, cb)
	waitWeight(t, b.ns, "reviews", 30)

	// A's slow analysis: 8 checks on the tar-pit Prometheus and 8 rollout webhooks to the
	// tar-pit server, 10m and 10 retries each.
	prom, hook := tarpit.New(t), tarpit.New(t)
	ca := providerCanary(a.ns, "reviews", prom.URL)
	ca.Spec.Analysis.Interval, ca.Spec.Analysis.Threshold = "1s", 1000
	ca.Spec.Analysis.Provider.Timeout = "10m"
	slow := map[string]meshv1.MetricProvider{}
	for i := range 7 {
		slow[fmt.Sprintf("slow-%d", i)] = meshv1.MetricProvider{Address: prom.URL, Timeout: "10m"}
	}
	withTemplates(t, a.c, ca, slow)
	for i := range 8 {
		ca.Spec.Analysis.Webhooks = append(ca.Spec.Analysis.Webhooks, meshv1.CanaryWebhook{
			Name: fmt.Sprintf("tarpit-%d", i), Type: meshv1.WebhookRollout, URL: hook.URL + "/hook", Timeout: "10m", Retries: ptr.To[int32](10),
		})
	}
	startRollout(t, a.c, ca)
	testenv.Eventually(t, 2*time.Minute, func() error {
		if prom.Accepted() == 0 || hook.Accepted() == 0 {
			return fmt.Errorf("the tar pits have %d and %d connections, want A's analysis in both", prom.Accepted(), hook.Accepted())
		}
		return nil
	})

	// B's revision goes bad while A is in its analysis: B's next check fails and, its
	// threshold being 1, B rolls back. The bound is 20 of B's intervals: without a budget
	// A's one reconcile holds the only worker for (10 retries + 1) x 10m per webhook.
	inA := prom.Accepted() + hook.Accepted()
	rate.Store("0")
	testenv.Eventually(t, time.Minute, func() error {
		c := getCanary(t, b.ns, "reviews")
		if c.Status.Phase != meshv1.PhaseRollingBack && c.Status.Phase != meshv1.PhaseFailed {
			return fmt.Errorf("B is %s at weight %d, want it rolled back", c.Status.Phase, c.Status.CanaryWeight)
		}
		return nil
	})
	expectRouted(t, b.ns, "reviews", 100, 0)

	// ...while A was still in its slow analysis: Progressing, its tar pits still being
	// dialed, its checks reported as cut by the operator's bounds, never passed.
	c := getCanary(t, a.ns, "reviews")
	if c.Status.Phase != meshv1.PhaseProgressing {
		t.Errorf("A is %s, want it still Progressing in its slow analysis", c.Status.Phase)
	}
	if prom.Accepted()+hook.Accepted() <= inA {
		t.Errorf("A's tar pits got no connection while B rolled back: A's analysis was not running")
	}
	waitCheck(t, a.ns, "reviews", "slow-0", "Timeout", "lowered to the operator's ceiling 1s (--max-check-timeout)")
	waitCheck(t, a.ns, "reviews", "tarpit-0", "lowered to the operator's ceiling 1s (--max-webhook-timeout)")
	waitCheck(t, a.ns, "reviews", "tarpit-7", "Timeout", "not run: the reconcile's time budget")
	for _, ch := range getCanary(t, a.ns, "reviews").Status.Checks {
		if ch.Outcome == meshv1.OutcomePass {
			t.Errorf("A's check %s passed: %q", ch.Name, ch.Message)
		}
	}
}

// waitWeight waits until the Canary routes weight percent to its canary.
func waitWeight(t *testing.T, ns, name string, weight int32) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, func() error {
		c := getCanary(t, ns, name)
		if c.Status.Phase != meshv1.PhaseProgressing || c.Status.CanaryWeight != weight {
			return fmt.Errorf("%s at weight %d, want Progressing at %d; conditions %+v", c.Status.Phase, c.Status.CanaryWeight, weight, c.Status.Conditions)
		}
		return nil
	})
}

// expectRouted checks the apex VirtualService's split.
func expectRouted(t *testing.T, ns, name string, primary, canary int32) {
	t.Helper()
	vs := &istionetv1.VirtualService{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, vs); err != nil {
		t.Fatal(err)
	}
	p, c, ok := render.ObservedWeights(vs, name)
	if !ok || p != primary || c != canary {
		t.Errorf("VirtualService %s/%s routes %d/%d (split found: %v), want %d/%d", ns, name, p, c, ok, primary, canary)
	}
}
