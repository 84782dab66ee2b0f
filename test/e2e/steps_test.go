package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/meshsim"
	"canopy.dev/canopy/test/testenv"
)

// A rollout spelled out in explicit steps on the local cluster, its VirtualServices judged by
// istiod's webhook: the canary scaled to one replica whatever the primary runs, a weight, a
// header route, a pause that holds until a resume request, a mirror route for matching
// requests, an analysis of three intervals, and a last weight before the promotion. The
// operator is restarted during the pause.
func TestExplicitStepsOnLocalCluster(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	op := startOperator(t, manager.Options{Analyzer: imageAnalyzer{env.Client}})
	// The mesh simulator sends /api requests, 30% with the insider header, routed by what
	// istiod makes of the VirtualServices.
	ctx, cancel := context.WithCancel(context.Background())
	sim, err := meshsim.Start(ctx, env.Config, meshsim.Options{
		XDSAddress: env.Istio.XDSAddress, RequestsPerSecond: 100, Path: "/api",
		Headers: map[string]string{insiderHeader: insiderValue}, HeaderFraction: insiderFraction, Namespaces: []string{ns},
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-sim.Done() })
	if err := env.Client.Create(t.Context(), newDeployment(ns, "reviews", "bookinfo/reviews:v1", 3)); err != nil {
		t.Fatal(err)
	}
	c := newCanary(ns, "reviews", 10, 50)
	c.Spec.Analysis.StepWeight = nil
	c.Spec.Analysis.Steps = []meshv1.CanaryStep{
		{SetCanaryScale: &meshv1.StepCanaryScale{Replicas: ptr.To[int32](1)}},
		{SetWeight: ptr.To[int32](20)},
		{SetHeaderRoute: &meshv1.StepHeaderRoute{Match: []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{"x-canary": {Exact: ptr.To("insider")}}}}}},
		{Pause: &meshv1.StepPause{}},
		{SetMirrorRoute: &meshv1.StepMirrorRoute{Percent: ptr.To[int32](50), Match: []meshv1.HTTPMatch{{URI: &meshv1.StringMatch{Prefix: ptr.To("/api")}}}}},
		{Analysis: &meshv1.StepAnalysis{Intervals: 3}},
		{SetWeight: ptr.To[int32](60)},
	}
	if err := env.Client.Create(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, ns, "reviews", meshv1.PhaseInitialized)
	routes := watchVirtualServices(t, ns, "reviews")
	setImage(t, ns, "reviews", "bookinfo/reviews:v2")

	// The pause without a duration holds the rollout at step 4.
	testenv.Eventually(t, 2*time.Minute, func() error {
		if st := getCanary(t, ns, "reviews").Status; st.StepIndex != 4 || !st.Paused {
			return fmt.Errorf("at step %d, paused %v; waiting for step 4, paused", st.StepIndex, st.Paused)
		}
		return nil
	})
	target := &appsv1.Deployment{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews"}, target); err != nil {
		t.Fatal(err)
	}
	if r := ptr.Deref(target.Spec.Replicas, 1); r != 1 {
		t.Fatalf("the canary runs %d replicas, want setCanaryScale's 1 (the primary runs 3)", r)
	}
	testenv.Eventually(t, time.Minute, func() error {
		if n := readyPods(t, ns, map[string]string{"app": "reviews"}, "bookinfo/reviews:v2"); n != 1 {
			return fmt.Errorf("%d canary pods Ready, want 1", n)
		}
		return nil
	})
	vs := &istionetv1.VirtualService{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews"}, vs); err != nil {
		t.Fatal(err)
	}
	if !headerRouted(vs) {
		t.Fatalf("no route sends x-canary: insider to the canary at step 4: %v", vs.Spec.Http)
	}
	if _, w, _ := render.ObservedWeights(vs, "reviews"); w != 20 {
		t.Fatalf("canary weight %d at step 4, want 20", w)
	}
	// While paused, the insiders' requests all reach the canary's pods, by istiod's routes:
	// over two simulator ticks, once the routes reached the simulator.
	tagged := func(s meshsim.Stats, workload string) int64 {
		return s.Requests(func(k meshsim.RouteKey) bool {
			return k.Namespace == ns && k.Workload == workload && k.Tagged && !k.Mirror
		})
	}
	from := sim.Stats()
	testenv.Eventually(t, time.Minute, func() error {
		to := sim.Stats()
		if to.Ticks < from.Ticks+2 {
			return fmt.Errorf("%d simulator ticks, waiting for 2", to.Ticks-from.Ticks)
		}
		onPrimary, onCanary := tagged(to, "reviews-primary")-tagged(from, "reviews-primary"), tagged(to, "reviews")-tagged(from, "reviews")
		from = to
		if onPrimary != 0 || onCanary == 0 {
			return fmt.Errorf("insiders' requests while paused: %d on the primary, %d on the canary; want all on the canary", onPrimary, onCanary)
		}
		return nil
	})
	st := getCanary(t, ns, "reviews").Status
	if st.StepIndex != 4 || st.Phase != meshv1.PhaseProgressing {
		t.Fatalf("the pause did not hold: %s at step %d", st.Phase, st.StepIndex)
	}
	if r := condition(t, getCanary(t, ns, "reviews"), meshv1.ConditionReady); r.Reason != meshv1.ReasonPaused {
		t.Fatalf("Ready %s: %s, want reason Paused", r.Reason, r.Message)
	}

	// An operator restarted during the pause finds it in the status: it still holds.
	op.stop(t)
	startOperator(t, manager.Options{Analyzer: imageAnalyzer{env.Client}})
	time.Sleep(2 * time.Second)
	if st := getCanary(t, ns, "reviews").Status; st.StepIndex != 4 || !st.Paused {
		t.Fatalf("after a restart: step %d, paused %v; want step 4, paused", st.StepIndex, st.Paused)
	}

	askCanary(t, ns, "reviews", "resume")
	c = waitPhase(t, ns, "reviews", meshv1.PhaseSucceeded)
	if got, want := routes.weights(), []int32{0, 20, 60, 0}; !slices.Equal(got, want) {
		t.Fatalf("canary weights went %v, want %v", got, want)
	}
	if !routes.any(func(vs *istionetv1.VirtualService) bool { return mirrorsAPI(vs, 50) }) {
		t.Fatal("no VirtualService mirrored 50% of the /api requests to the canary")
	}
	mirrored := sim.Stats().Requests(func(k meshsim.RouteKey) bool { return k.Namespace == ns && k.Mirror && k.Workload == "reviews" })
	t.Logf("the canary's pods got %d mirrored /api requests", mirrored)
	if mirrored == 0 {
		t.Error("no mirrored request reached the canary's pods")
	}
	if c.Status.LastPromotedRevision != c.Status.CurrentRevision {
		t.Fatalf("last promoted %q, current %q", c.Status.LastPromotedRevision, c.Status.CurrentRevision)
	}
	final := routes.last()
	if headerRouted(final) || final.Spec.Http[len(final.Spec.Http)-1].Mirror != nil || len(final.Spec.Http) != 1 {
		t.Fatalf("the steps' routes outlived the rollout: %v", final.Spec.Http)
	}
}

// A gradual promotion on the local cluster: after the analysis, the primary runs the new
// revision, then traffic moves to it by stepWeightPromotion each interval, seen in the
// VirtualService and in the status (phase Promoting with the weight).
func TestGradualPromotionOnLocalCluster(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	startOperator(t, manager.Options{Analyzer: imageAnalyzer{env.Client}})
	if err := env.Client.Create(t.Context(), newDeployment(ns, "ratings", "bookinfo/ratings:v1", 2)); err != nil {
		t.Fatal(err)
	}
	c := newCanary(ns, "ratings", 25, 50)
	c.Spec.Analysis.StepWeightPromotion = ptr.To[int32](20)
	if err := env.Client.Create(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, ns, "ratings", meshv1.PhaseInitialized)
	weights := watchWeights(t, ns, "ratings")
	promoting := watchSplit(t, ns, &meshv1.CanaryList{}, func(o client.Object) (int32, bool) {
		c, ok := o.(*meshv1.Canary)
		if !ok || c.Status.Phase != meshv1.PhasePromoting {
			return 0, false
		}
		return c.Status.CanaryWeight, true
	})
	setImage(t, ns, "ratings", "bookinfo/ratings:v2")
	waitPhase(t, ns, "ratings", meshv1.PhaseSucceeded)
	if got, want := weights.values(), []int32{0, 25, 50, 30, 10, 0}; !slices.Equal(got, want) {
		t.Fatalf("canary weights went %v, want %v", got, want)
	}
	if got, want := promoting.values(), []int32{50, 30, 10}; !slices.Equal(got, want) {
		t.Fatalf("status while Promoting went %v, want %v", got, want)
	}
	testenv.Eventually(t, time.Minute, func() error {
		if n := readyPods(t, ns, map[string]string{"app": "ratings-primary"}, "bookinfo/ratings:v2"); n != 2 {
			return fmt.Errorf("%d primary pods Ready on v2, want 2", n)
		}
		if n := readyPods(t, ns, map[string]string{"app": "ratings"}, "bookinfo/ratings:v2"); n != 0 {
			return fmt.Errorf("%d canary pods still running after the promotion", n)
		}
		return nil
	})
}

// askCanary sets the Canary's request annotation, as kubectl canopy does.
func askCanary(t *testing.T, ns, name, action string) {
	t.Helper()
	patch := []byte(`{"metadata":{"annotations":{"` + meshv1.AnnotationRequest + `":"` + action + `:` + time.Now().Format(time.RFC3339Nano) + `"}}}`)
	if err := env.Client.Patch(t.Context(), &meshv1.Canary{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
}

func headerRouted(vs *istionetv1.VirtualService) bool {
	for _, rt := range vs.Spec.Http {
		for _, m := range rt.Match {
			if m.Headers["x-canary"].GetExact() == "insider" && len(rt.Route) == 1 && rt.Route[0].Destination.Host == render.CanaryName("reviews") {
				return true
			}
		}
	}
	return false
}

func mirrorsAPI(vs *istionetv1.VirtualService, percent float64) bool {
	for _, rt := range vs.Spec.Http {
		if len(rt.Match) == 1 && rt.Match[0].Uri.GetPrefix() == "/api" && rt.Mirror.GetHost() == render.CanaryName("reviews") &&
			rt.MirrorPercentage.GetValue() == percent {
			return true
		}
	}
	return false
}

// vsLog records every version of a VirtualService, from a watch.
type vsLog struct {
	mu   sync.Mutex
	name string
	log  []*istionetv1.VirtualService
}

func watchVirtualServices(t *testing.T, ns, name string) *vsLog {
	t.Helper()
	l := &vsLog{name: name}
	watchEach(t, ns, &istionetv1.VirtualServiceList{}, func(o client.Object) {
		if vs, ok := o.(*istionetv1.VirtualService); ok && vs.Name == name {
			l.mu.Lock()
			l.log = append(l.log, vs.DeepCopy())
			l.mu.Unlock()
		}
	})
	return l
}

// weights is the canary weight of each version, repeats dropped.
func (l *vsLog) weights() []int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int32
	for _, vs := range l.log {
		if _, c, ok := render.ObservedWeights(vs, l.name); ok && (len(out) == 0 || out[len(out)-1] != c) {
			out = append(out, c)
		}
	}
	return out
}

func (l *vsLog) any(f func(*istionetv1.VirtualService) bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.log, f)
}

func (l *vsLog) last() *istionetv1.VirtualService {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.log) == 0 {
		return &istionetv1.VirtualService{Spec: networking.VirtualService{}}
	}
	return l.log[len(l.log)-1]
}
