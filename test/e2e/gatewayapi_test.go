package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/meshsim"
	"canopy.dev/canopy/test/testenv"
)

// TestGatewayAPIRouting plays a weighted rollout, an A/B rollout by header and a rollback
// with spec.routing.provider gatewayapi: canopy writes an HTTPRoute whose parent is the
// apex Service (GAMMA) and no VirtualService; istiod translates it into the sidecars' xDS,
// which the mesh simulator follows, and the rollouts are judged by that traffic (through
// Prometheus for the checks, and the simulator's own counts).
func TestGatewayAPIRouting(t *testing.T) {
	testenv.SkipIfShort(t)
	playGatewayScenarios(t, []gatewayScenario{
		{"weighted-promoted", gatewayWeighted},
		{"ab-header-only", gatewayAB},
		{"errors-rolled-back", gatewayRollback},
	}, nil, manager.Options{})
}

// gatewayScenario is a rollout played in a namespace of its own, beside the others.
type gatewayScenario struct {
	name string
	run  func(t *testing.T, b *analysisBed, ns string)
}

// playGatewayScenarios prepares a namespace for each scenario (setup, when set), starts
// one analysis bed and operator (opts, watching those namespaces) for them all, and plays
// them in parallel.
func playGatewayScenarios(t *testing.T, scenarios []gatewayScenario, setup func(t *testing.T, ns string), opts manager.Options) {
	t.Helper()
	nss := make([]string, len(scenarios))
	for i := range scenarios {
		nss[i] = env.CreateNamespace(t)
		if setup != nil {
			setup(t, nss[i])
		}
	}
	bed := startAnalysisBed(t, nss)
	opts.WatchNamespaces, opts.PrometheusAddress = strings.Join(nss, ","), bed.prom.URL()
	startOperator(t, opts)
	for i, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			s.run(t, bed, nss[i])
		})
	}
}

// gatewayCanary is analysisCanary routed with the Gateway API.
func gatewayCanary(ns string, stepWeight, maxWeight int32, metrics ...meshv1.CanaryMetric) *meshv1.Canary {
	c := analysisCanary(ns, stepWeight, maxWeight, metrics...)
	c.Spec.Routing = &meshv1.CanaryRouting{Provider: meshv1.RoutingGatewayAPI}
	return c
}

func gatewayWeighted(t *testing.T, b *analysisBed, ns string) {
	deployReviews(t, gatewayCanary(ns, 20, 60, successRate(99)))
	expectHTTPRouteOnly(t, ns)
	weights := watchRouteWeights(t, ns, "reviews")
	before := canaryWorkloadRequests(b.sim.Stats(), ns)
	newRevision(t, ns, "bookinfo/reviews:v2", healthy)
	c := waitPhase(t, ns, "reviews", meshv1.PhaseSucceeded)

	if got, want := weights.values(), []int32{0, 20, 40, 60, 0}; !slices.Equal(got, want) {
		t.Errorf("the HTTPRoute's canary weights went %v, want %v", got, want)
	}
	if n := canaryWorkloadRequests(b.sim.Stats(), ns) - before; n == 0 {
		t.Errorf("the canary workload answered no request during the rollout: the HTTPRoute's weights did not reach the mesh")
	} else {
		t.Logf("the canary workload answered %d requests during the rollout", n)
	}
	if ch := findCheck(c, "request-success-rate"); ch == nil || ch.Outcome != meshv1.OutcomePass {
		t.Errorf("request-success-rate: %+v, want a pass measured on the mesh's traffic", ch)
	}
	if cond := meta.FindStatusCondition(c.Status.Conditions, meshv1.ConditionRouting); cond != nil {
		t.Errorf("Routing condition %s/%s %q: nothing of this Canary is beyond the Gateway API", cond.Status, cond.Reason, cond.Message)
	}
	// Promoted: the HTTPRoute sends everything to the primary again, and the mesh follows.
	mark := canaryWorkloadRequests(b.sim.Stats(), ns)
	ticks := b.sim.Stats().Ticks
	testenv.Eventually(t, time.Minute, func() error {
		st := b.sim.Stats()
		if st.Ticks < ticks+3 {
			return fmt.Errorf("%d simulator ticks since the promotion, waiting for 3", st.Ticks-ticks)
		}
		if n := canaryWorkloadRequests(st, ns); n != mark {
			mark, ticks = n, st.Ticks
			return fmt.Errorf("the canary workload still answers after the promotion (%d requests)", n)
		}
		return nil
	})
}

func gatewayAB(t *testing.T, b *analysisBed, ns string) {
	abRollout(t, b, gatewayCanary(ns, 0, 50, successRate(99)), watchRouteWeights)
	expectHTTPRouteOnly(t, ns)
}

func gatewayRollback(t *testing.T, b *analysisBed, ns string) {
	c := gatewayCanary(ns, 10, 50, successRate(99))
	c.Spec.Analysis.Threshold = 2
	deployReviews(t, c)
	expectHTTPRouteOnly(t, ns)
	waitQuiet(t, b.prom.URL(), ns)
	weights := watchRouteWeights(t, ns, "reviews")
	newRevision(t, ns, "bookinfo/reviews:v2", map[string]string{meshsim.AnnotationErrorRate: "0.2"})
	c = waitPhase(t, ns, "reviews", meshv1.PhaseFailed)

	if got, want := weights.values(), []int32{0, 10, 0}; !slices.Equal(got, want) {
		t.Errorf("the HTTPRoute's canary weights went %v, want %v", got, want)
	}
	ch := findCheck(c, "request-success-rate")
	if ch == nil || ch.Outcome != meshv1.OutcomeFail {
		t.Fatalf("request-success-rate: %+v, want the failure the mesh's traffic showed", ch)
	}
	t.Logf("rolled back on request-success-rate %s", ch.Value)
	expectRouteRolledBack(t, ns)
}

// expectRouteRolledBack checks that the Canary's HTTPRoute sends everything to the
// primary.
func expectRouteRolledBack(t *testing.T, ns string) {
	t.Helper()
	hr := &gwapiv1.HTTPRoute{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews"}, hr); err != nil {
		t.Fatal(err)
	}
	if p, w, ok := render.ObservedHTTPRouteWeights(hr, "reviews"); !ok || p != 100 || w != 0 {
		t.Errorf("after the rollback the HTTPRoute splits %d/%d, want 100/0", p, w)
	}
}

// expectHTTPRouteOnly checks that the Canary routes with its HTTPRoute alone: no
// VirtualService or DestinationRule of canopy's in the namespace, and the HTTPRoute's
// parent is the apex Service.
func expectHTTPRouteOnly(t *testing.T, ns string) {
	t.Helper()
	hr := &gwapiv1.HTTPRoute{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews"}, hr); err != nil {
		t.Fatalf("the Canary's HTTPRoute: %v", err)
	}
	if refs := hr.Spec.ParentRefs; len(refs) != 1 || ptr.Deref(refs[0].Kind, "") != "Service" || refs[0].Name != "reviews" {
		t.Errorf("HTTPRoute parents %+v, want the apex Service reviews", refs)
	}
	vss := &istionetv1.VirtualServiceList{}
	drs := &istionetv1.DestinationRuleList{}
	for _, l := range []client.ObjectList{vss, drs} {
		if err := env.Client.List(t.Context(), l, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
	}
	if len(vss.Items) != 0 || len(drs.Items) != 0 {
		t.Errorf("%d VirtualServices and %d DestinationRules in %s, want none with routing.provider gatewayapi", len(vss.Items), len(drs.Items), ns)
	}
}

// canaryWorkloadRequests counts the requests of ns's streams the canary workload answered,
// mirrored copies left out.
func canaryWorkloadRequests(s meshsim.Stats, ns string) int64 {
	tagged, untagged := abTraffic(s, ns)
	return tagged + untagged
}

// watchRouteWeights records every split the Canary's HTTPRoute had, as watchWeights does
// for a VirtualService.
func watchRouteWeights(t *testing.T, ns, name string) *weightLog {
	return watchSplit(t, ns, &gwapiv1.HTTPRouteList{}, func(o client.Object) (int32, bool) {
		hr, ok := o.(*gwapiv1.HTTPRoute)
		if !ok || hr.Name != name {
			return 0, false
		}
		_, c, ok := render.ObservedHTTPRouteWeights(hr, name)
		return c, ok
	})
}
