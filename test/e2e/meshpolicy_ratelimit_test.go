package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	istionetv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/meshsim"
	"canopy.dev/canopy/test/testenv"
)

// TestRateLimit: a MeshPolicy's rateLimit, end to end. The operator writes the
// EnvoyFilter, istiod puts the local rate limit filter into the inbound chain of the
// Service's sidecar, and the mesh simulator, following istiod's xDS like Envoy, answers
// 429 once the bucket is empty; from then on no request reaches the workload (the
// interval, an hour, refills none). istioctl analyze finds nothing in the namespace when
// the test ends.
func TestRateLimit(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	startOperator(t, manager.Options{WatchNamespaces: ns})
	deployService(t, ns, "reviews")
	const tokens = 20
	p := &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec: meshv1.MeshPolicySpec{
			TargetRef: meshv1.ServiceRef{Name: "reviews"},
			// A VirtualService for the simulator's callers to send to.
			Resilience: &meshv1.Resilience{Timeout: "5s"},
			RateLimit:  &meshv1.RateLimit{Requests: tokens, Interval: "1h"},
		},
	}
	if err := env.Client.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitPolicy(t, ns, "reviews", func(p *meshv1.MeshPolicy) error {
		return expectPolicyCondition(p, meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonReconciled)
	})
	efs := &istionetv1alpha3.EnvoyFilterList{}
	if err := env.Client.List(t.Context(), efs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(efs.Items) != 1 {
		t.Fatalf("%d EnvoyFilters in %s, want the rate limit's", len(efs.Items), ns)
	}

	ctx, cancel := context.WithCancel(context.Background())
	sim, err := meshsim.Start(ctx, env.Config, meshsim.Options{
		XDSAddress:      env.Istio.XDSAddress,
		Namespaces:      []string{ns},
		InboundSidecars: true,
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-sim.Done() })
	count := func(code int) int64 {
		return sim.Stats().Requests(func(k meshsim.RouteKey) bool {
			return k.Namespace == ns && k.Workload == "reviews" && k.Code == code
		})
	}
	testenv.Eventually(t, 2*time.Minute, func() error {
		if n := count(429); n < 200 {
			return fmt.Errorf("%d requests to reviews answered 429 (%d answered 200), waiting for 200", n, count(200))
		}
		return nil
	})
	// The simulator's sidecars may have sent a few requests before istiod's filter
	// reached the destination's: those pass unlimited. From the first 429 on, the bucket
	// is empty for the hour.
	ok, limited := count(200), count(429)
	if ok < tokens {
		t.Errorf("%d requests answered 200, fewer than the bucket's %d tokens", ok, tokens)
	}
	testenv.Eventually(t, time.Minute, func() error {
		if n := count(429); n < limited+100 {
			return fmt.Errorf("%d more requests limited, waiting for 100", n-limited)
		}
		return nil
	})
	if n := count(200); n != ok {
		t.Errorf("%d more requests answered 200 after the bucket was empty, want none", n-ok)
	}
	t.Logf("reviews: %d answered 200, %d answered 429", count(200), count(429))
}
