package e2e

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/meshsim"
	"canopy.dev/canopy/test/testenv"
)

// The ingress of the Gateway API scenarios: a Gateway of class istio, which istiod
// deploys (its proxy is the simulator's), for *.<namespace>.example.com.
const ingressGateway = "public"

// ingressHost is the host the Canary of ns routes through the Gateway, which
// --allowed-hosts gives to ns.
func ingressHost(ns string) string { return "reviews." + ns + ".example.com" }

// TestGatewayAPIIngress plays rollouts of a Canary routed with the Gateway API through an
// ingress Gateway: canopy's HTTPRoute has the apex Service and the Gateway public (class
// istio) as parents; istiod deploys public's proxy (public-istio, kwok's pods; the test
// plays the load balancer that gives it an address) and translates the route into that
// proxy's listeners, which the mesh simulator follows for reviews.<ns>.example.com. The
// rollouts are judged by the traffic (Prometheus for the checks), and the test watches the
// split at the ingress, tick by tick.
func TestGatewayAPIIngress(t *testing.T) {
	testenv.SkipIfShort(t)
	playGatewayScenarios(t, []gatewayScenario{
		{"weighted-promoted", ingressWeighted},
		{"errors-rolled-back", ingressRollback},
	}, createIngressGateway, manager.Options{AllowedHosts: "*.{namespace}.example.com"})
}

// createIngressGateway creates the Gateway public in ns, an HTTP listener on port 80 for
// *.<ns>.example.com, and waits until istiod has deployed it and reports it Programmed.
func createIngressGateway(t *testing.T, ns string) {
	t.Helper()
	hostname := gwapiv1.Hostname("*." + ns + ".example.com")
	gw := &gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ingressGateway}}
	gw.Spec.GatewayClassName = "istio"
	gw.Spec.Listeners = []gwapiv1.Listener{{Name: "http", Port: 80, Protocol: gwapiv1.HTTPProtocolType, Hostname: &hostname}}
	if err := env.Client.Create(t.Context(), gw); err != nil {
		t.Fatal(err)
	}
	env.ProvisionGatewayAddress(t, ns, ingressGateway)
}

// ingressCanary is gatewayCanary exposed through the Gateway public as ingressHost(ns).
func ingressCanary(ns string, stepWeight, maxWeight int32, metrics ...meshv1.CanaryMetric) *meshv1.Canary {
	c := gatewayCanary(ns, stepWeight, maxWeight, metrics...)
	c.Spec.Service.Gateways = []string{ingressGateway}
	c.Spec.Service.Hosts = []string{ingressHost(ns)}
	return c
}

func ingressWeighted(t *testing.T, b *analysisBed, ns string) {
	deployReviews(t, ingressCanary(ns, 20, 60, successRate(99)))
	expectIngressHTTPRoute(t, ns)
	shares := watchIngressShares(t, b.sim, ns)
	weights := watchRouteWeights(t, ns, "reviews")
	shares.waitFor(t, []int{0}) // the ingress is seen on the primary alone before the rollout
	newRevision(t, ns, "bookinfo/reviews:v2", healthy)
	c := waitPhase(t, ns, "reviews", meshv1.PhaseSucceeded)

	if got, want := weights.values(), []int32{0, 20, 40, 60, 0}; !slices.Equal(got, want) {
		t.Errorf("the HTTPRoute's canary weights went %v, want %v", got, want)
	}
	if ch := findCheck(c, "request-success-rate"); ch == nil || ch.Outcome != meshv1.OutcomePass {
		t.Errorf("request-success-rate: %+v, want a pass", ch)
	}
	if cond := meta.FindStatusCondition(c.Status.Conditions, meshv1.ConditionRouting); cond != nil {
		t.Errorf("Routing condition %s/%s %q: nothing of this Canary is beyond the Gateway API", cond.Status, cond.Reason, cond.Message)
	}
	// Promoted: the ingress sends everything to the primary again.
	shares.waitFor(t, []int{0, 20, 40, 60, 0})
}

func ingressRollback(t *testing.T, b *analysisBed, ns string) {
	c := ingressCanary(ns, 10, 50, successRate(99))
	c.Spec.Analysis.Threshold = 2
	deployReviews(t, c)
	expectIngressHTTPRoute(t, ns)
	waitQuiet(t, b.prom.URL(), ns)
	shares := watchIngressShares(t, b.sim, ns)
	shares.waitFor(t, []int{0})
	newRevision(t, ns, "bookinfo/reviews:v2", map[string]string{meshsim.AnnotationErrorRate: "0.2"})
	c = waitPhase(t, ns, "reviews", meshv1.PhaseFailed)

	ch := findCheck(c, "request-success-rate")
	if ch == nil || ch.Outcome != meshv1.OutcomeFail {
		t.Fatalf("request-success-rate: %+v, want the failure the traffic showed", ch)
	}
	t.Logf("rolled back on request-success-rate %s", ch.Value)
	shares.waitFor(t, []int{0, 10, 0})
	// The bad revision's errors were seen at the ingress: by the simulator, and in Istio's
	// metrics reported by the gateway's workload.
	s := b.sim.Stats()
	if n := s.Requests(func(k meshsim.RouteKey) bool {
		return k.Namespace == ns && k.Host == ingressHost(ns) && k.Workload == "reviews" && k.Code == 500
	}); n == 0 {
		t.Errorf("no ingress request got the canary's 500")
	}
	q := fmt.Sprintf(`sum(istio_requests_total{reporter="source",source_workload=%q,source_workload_namespace=%q,destination_workload="reviews",response_code="500"})`,
		ingressGateway+"-istio", ns)
	testenv.Eventually(t, time.Minute, func() error {
		v, _, err := promQuery(t.Context(), b.prom.URL(), q)
		if err != nil {
			return err
		}
		if v == 0 {
			return fmt.Errorf("no 500 of the canary reported by the gateway in Prometheus: %s", q)
		}
		return nil
	})
	expectRouteRolledBack(t, ns)
}

// expectIngressHTTPRoute checks the Canary's HTTPRoute: its parents are the apex Service
// and the Gateway public, for ingressHost(ns), and istiod accepted it on both.
func expectIngressHTTPRoute(t *testing.T, ns string) {
	t.Helper()
	hr := &gwapiv1.HTTPRoute{}
	testenv.Eventually(t, time.Minute, func() error {
		if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews"}, hr); err != nil {
			return err
		}
		refs := hr.Spec.ParentRefs
		if len(refs) != 2 || ptr.Deref(refs[0].Kind, "") != "Service" || refs[0].Name != "reviews" ||
			ptr.Deref(refs[1].Kind, "") != "Gateway" || refs[1].Name != ingressGateway {
			return fmt.Errorf("the HTTPRoute's parents %+v, want the apex Service reviews and the Gateway %s", refs, ingressGateway)
		}
		if !slices.Equal(hr.Spec.Hostnames, []gwapiv1.Hostname{gwapiv1.Hostname(ingressHost(ns))}) {
			return fmt.Errorf("the HTTPRoute's hostnames %v, want %s", hr.Spec.Hostnames, ingressHost(ns))
		}
		for _, ps := range hr.Status.Parents {
			if ps.ParentRef.Name != ingressGateway {
				continue
			}
			if c := meta.FindStatusCondition(ps.Conditions, string(gwapiv1.RouteConditionAccepted)); c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != hr.Generation {
				return fmt.Errorf("the Gateway %s has not accepted the HTTPRoute: %+v", ingressGateway, ps.Conditions)
			}
			return nil
		}
		return fmt.Errorf("no status of the Gateway %s on the HTTPRoute: %+v", ingressGateway, hr.Status.Parents)
	})
}

// shareLog records the canary's share of the ingress requests for ingressHost(ns), tick by tick: the percentage of those the gateway routed to the
// canary Service, rounded to 5, a new entry each time it changes.
type shareLog struct {
	mu  sync.Mutex
	log []int
}

// watchIngressShares samples the simulator's counts after every tick until the test ends.
// A tick routes all its requests by one configuration of the gateway, so each sample is
// one split istiod sent; samples spanning two ticks are dropped.
func watchIngressShares(t *testing.T, sim *meshsim.Sim, ns string) *shareLog {
	l := &shareLog{}
	count := func(s meshsim.Stats, service string) int64 {
		host := service + "." + ns + ".svc.cluster.local"
		return s.Requests(func(k meshsim.RouteKey) bool {
			return k.Namespace == ns && k.Host == ingressHost(ns) && !k.Mirror && k.DestinationHost == host
		})
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		last := sim.Stats()
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			s := sim.Stats()
			if s.Ticks == last.Ticks {
				continue
			}
			p := count(s, "reviews-primary") - count(last, "reviews-primary")
			c := count(s, "reviews-canary") - count(last, "reviews-canary")
			oneTick := s.Ticks == last.Ticks+1
			last = s
			if !oneTick || p+c == 0 {
				continue
			}
			share := int(math.Round(float64(c)/float64(p+c)*20)) * 5
			l.mu.Lock()
			if n := len(l.log); n == 0 || l.log[n-1] != share {
				l.log = append(l.log, share)
			}
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { close(done); wg.Wait() })
	return l
}

func (l *shareLog) values() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.log)
}

// waitFor waits until the ingress has gone through exactly the shares want (in percent)
// and fails when it went elsewhere.
func (l *shareLog) waitFor(t *testing.T, want []int) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() error {
		got := l.values()
		if len(got) > len(want) || !slices.Equal(got, want[:len(got)]) {
			t.Fatalf("the canary's share of the ingress went %v%%, want %v%%", got, want)
		}
		if len(got) < len(want) {
			return fmt.Errorf("the canary's share of the ingress went %v%% so far, want %v%%", got, want)
		}
		return nil
	})
	t.Logf("the canary's share of the ingress went %v%%", want)
}
