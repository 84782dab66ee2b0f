package meshsim

import (
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/wrapperspb"
	apinetworkingv1 "istio.io/api/networking/v1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// The world of these tests: namespace shop, a reviews primary and canary as canopy
// generates them (an apex Service, and -primary/-canary Services selecting the two
// Deployments), at 50 requests per second per host.

func service(ns, name string, selector map[string]string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Selector: selector}}
}

func deployment(ns, name string, replicas int32, labels, annotations map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations}},
		},
	}
}

func virtualService(ns, name string, hosts []string, routes ...*apinetworkingv1.HTTPRoute) *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	vs.Spec.Hosts = hosts
	vs.Spec.Http = routes
	return vs
}

func dest(host string, weight int32) *apinetworkingv1.HTTPRouteDestination {
	return &apinetworkingv1.HTTPRouteDestination{Destination: &apinetworkingv1.Destination{Host: host}, Weight: weight}
}

func httpRoute(dests ...*apinetworkingv1.HTTPRouteDestination) *apinetworkingv1.HTTPRoute {
	return &apinetworkingv1.HTTPRoute{Route: dests}
}

func exact(s string) *apinetworkingv1.StringMatch {
	return &apinetworkingv1.StringMatch{MatchType: &apinetworkingv1.StringMatch_Exact{Exact: s}}
}

func regex(s string) *apinetworkingv1.StringMatch {
	return &apinetworkingv1.StringMatch{MatchType: &apinetworkingv1.StringMatch_Regex{Regex: s}}
}

func reviewsWorld(canaryAnnotations map[string]string, routes ...*apinetworkingv1.HTTPRoute) *World {
	return &World{
		VirtualServices: []*networkingv1.VirtualService{virtualService("shop", "reviews", []string{"reviews"}, routes...)},
		Services: []*corev1.Service{
			service("shop", "reviews", map[string]string{"app": "reviews-primary"}),
			service("shop", "reviews-primary", map[string]string{"app": "reviews-primary"}),
			service("shop", "reviews-canary", map[string]string{"app": "reviews"}),
		},
		Deployments: []*appsv1.Deployment{
			deployment("shop", "reviews-primary", 2, map[string]string{"app": "reviews-primary", "version": "v1"}, nil),
			deployment("shop", "reviews", 1, map[string]string{"app": "reviews", "version": "v2"}, canaryAnnotations),
		},
	}
}

func newTestEngine(opts Options) (*engine, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	return newEngine(opts, reg), reg
}

// run simulates seconds of traffic in one-second ticks.
func run(e *engine, w *World, seconds int) {
	for range seconds {
		e.simulate(w, time.Second)
	}
}

func toWorkload(name string) func(RouteKey) bool {
	return func(k RouteKey) bool { return k.Workload == name }
}

// metricSum adds up a family's samples (counter values, or histogram counts) whose labels
// include want.
func metricSum(t *testing.T, reg *prometheus.Registry, family string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, want) {
				switch {
				case m.GetCounter() != nil:
					sum += m.GetCounter().GetValue()
				case m.GetHistogram() != nil:
					sum += float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, lp := range m.GetLabel() {
		got[lp.GetName()] = lp.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func TestWeightedSplit(t *testing.T) {
	e, reg := newTestEngine(Options{})
	w := reviewsWorld(nil, httpRoute(dest("reviews-primary", 90), dest("reviews-canary", 10)))
	run(e, w, 10)

	s := e.snapshot()
	if got := s.Requests(nil); got != 500 {
		t.Fatalf("%d requests in 10s at 50 rps, want 500", got)
	}
	if p, c := s.Requests(toWorkload("reviews-primary")), s.Requests(toWorkload("reviews")); p != 450 || c != 50 {
		t.Fatalf("primary %d, canary %d; want 450 and 50", p, c)
	}
	run(e, w, 2)
	if c := e.snapshot().Requests(toWorkload("reviews")); c != 60 {
		t.Fatalf("canary %d after 12 s, want 60", c)
	}

	dst := map[string]string{"reporter": "destination", "destination_workload": "reviews", "destination_workload_namespace": "shop"}
	if got := metricSum(t, reg, "istio_requests_total", dst); got != 60 {
		t.Errorf("istio_requests_total for the canary = %v, want 60", got)
	}
	if got := metricSum(t, reg, "istio_request_duration_milliseconds", dst); got != 60 {
		t.Errorf("istio_request_duration_milliseconds count for the canary = %v, want 60", got)
	}
	labels := map[string]string{
		"reporter": "destination", "destination_workload": "reviews", "destination_service": "reviews-canary.shop.svc.cluster.local",
		"destination_service_name": "reviews-canary", "destination_service_namespace": "shop", "destination_app": "reviews",
		"destination_version": "v2", "source_workload": "meshsim-client", "source_workload_namespace": "shop",
		"response_code": "200", "request_protocol": "http", "connection_security_policy": "mutual_tls",
	}
	if got := metricSum(t, reg, "istio_requests_total", labels); got != 60 {
		t.Errorf("istio_requests_total with Istio's labels = %v, want 60", got)
	}
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"reporter": "source", "destination_workload": "reviews"}); got != 60 {
		t.Errorf("source-reported canary requests = %v, want 60", got)
	}
}

func TestLoneDestinationTakesAll(t *testing.T) {
	// canopy writes 100/0 with the 0 omitted; Istio's JSON omits a zero weight anyway.
	for name, routes := range map[string][]*apinetworkingv1.HTTPRouteDestination{
		"weight omitted":    {dest("reviews-primary", 0)},
		"100 and 0":         {dest("reviews-primary", 100), dest("reviews-canary", 0)},
		"weight 100 of one": {dest("reviews-primary", 100)},
	} {
		e, _ := newTestEngine(Options{})
		run(e, reviewsWorld(nil, httpRoute(routes...)), 4)
		s := e.snapshot()
		if p, c := s.Requests(toWorkload("reviews-primary")), s.Requests(toWorkload("reviews")); p != 200 || c != 0 {
			t.Errorf("%s: primary %d, canary %d; want 200 and 0", name, p, c)
		}
	}
}

func TestFractionalRatesCarry(t *testing.T) {
	e, _ := newTestEngine(Options{RequestsPerSecond: 7})
	w := reviewsWorld(nil, httpRoute(dest("reviews-primary", 67), dest("reviews-canary", 33)))
	for range 30 {
		e.simulate(w, 300*time.Millisecond) // 2.1 requests a tick
	}
	s := e.snapshot()
	if got := s.Requests(nil); got != 63 {
		t.Fatalf("%d requests in 9 s at 7 rps, want 63", got)
	}
	if c := s.Requests(toWorkload("reviews")); c < 20 || c > 21 {
		t.Fatalf("canary %d of 63 at 33%%, want 20 or 21", c)
	}
}

func TestHeaderMatch(t *testing.T) {
	e, _ := newTestEngine(Options{Headers: map[string]string{"X-Canary": "insider", "cookie": "session=1; user=test"}, HeaderFraction: 0.2})
	ab := httpRoute(dest("reviews-canary", 0))
	ab.Name = "canary"
	ab.Match = []*apinetworkingv1.HTTPMatchRequest{
		{Headers: map[string]*apinetworkingv1.StringMatch{"x-canary": exact("insider")}},
		{Headers: map[string]*apinetworkingv1.StringMatch{"cookie": regex(`^(.*?;)?( ?user=nobody)(;.*)?$`)}},
	}
	primary := httpRoute(dest("reviews-primary", 0))
	primary.Name = "primary"
	run(e, reviewsWorld(nil, ab, primary), 10)

	s := e.snapshot()
	canary := s.Requests(toWorkload("reviews"))
	taggedToCanary := s.Requests(func(k RouteKey) bool { return k.Workload == "reviews" && k.Tagged && k.Route == "canary" })
	untaggedToPrimary := s.Requests(func(k RouteKey) bool { return k.Workload == "reviews-primary" && !k.Tagged && k.Route == "primary" })
	if canary != 100 || taggedToCanary != 100 || untaggedToPrimary != 400 {
		t.Fatalf("canary %d (tagged %d), untagged to primary %d; want 100, 100, 400\n%+v", canary, taggedToCanary, untaggedToPrimary, s.Routes)
	}
}

func TestCookieRegexMatch(t *testing.T) {
	e, _ := newTestEngine(Options{Headers: map[string]string{"cookie": "session=1; user=test"}, HeaderFraction: 1})
	ab := httpRoute(dest("reviews-canary", 0))
	ab.Match = []*apinetworkingv1.HTTPMatchRequest{{Headers: map[string]*apinetworkingv1.StringMatch{"cookie": regex(`^(.*?;)?( ?user=test)(;.*)?$`)}}}
	run(e, reviewsWorld(nil, ab, httpRoute(dest("reviews-primary", 0))), 2)
	if c := e.snapshot().Requests(toWorkload("reviews")); c != 100 {
		t.Fatalf("canary %d, want all 100", c)
	}
}

func TestMirror(t *testing.T) {
	e, reg := newTestEngine(Options{})
	r := httpRoute(dest("reviews-primary", 100))
	r.Mirror = &apinetworkingv1.Destination{Host: "reviews-canary"}
	r.MirrorPercentage = &apinetworkingv1.Percent{Value: 50}
	run(e, reviewsWorld(map[string]string{AnnotationErrorRate: "1"}, r), 10)

	s := e.snapshot()
	primary := s.Requests(func(k RouteKey) bool { return k.Workload == "reviews-primary" && !k.Mirror })
	mirrored := s.Requests(func(k RouteKey) bool { return k.Workload == "reviews" && k.Mirror })
	if primary != 500 || mirrored != 250 || s.Requests(func(k RouteKey) bool { return k.Workload == "reviews" && !k.Mirror }) != 0 {
		t.Fatalf("primary %d, mirrored %d; want 500 and 250", primary, mirrored)
	}
	// The mirror's pods report what they received; the client never sees their (failed)
	// answers.
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"reporter": "destination", "destination_workload": "reviews", "response_code": "500"}); got != 250 {
		t.Errorf("destination-reported mirrored requests = %v, want 250", got)
	}
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"reporter": "source", "destination_workload": "reviews"}); got != 0 {
		t.Errorf("source-reported mirrored requests = %v, want 0", got)
	}
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"reporter": "source", "response_code": "500"}); got != 0 {
		t.Errorf("the client saw %v errors from the mirror", got)
	}
}

func TestMirrorsListAndDeprecatedPercent(t *testing.T) {
	e, _ := newTestEngine(Options{})
	r := httpRoute(dest("reviews-primary", 100))
	r.Mirror = &apinetworkingv1.Destination{Host: "reviews-canary"}
	r.MirrorPercent = wrapperspb.UInt32(20) //nolint:staticcheck // the deprecated field Istio still honours
	r.Mirrors = []*apinetworkingv1.HTTPMirrorPolicy{{Destination: &apinetworkingv1.Destination{Host: "reviews-canary"}}}
	run(e, reviewsWorld(nil, r), 10)
	if m := e.snapshot().Requests(func(k RouteKey) bool { return k.Mirror }); m != 100+500 {
		t.Fatalf("%d mirrored, want 100 (20%%) + 500 (100%%)", m)
	}
}

func TestErrorRateAndCode(t *testing.T) {
	e, reg := newTestEngine(Options{})
	w := reviewsWorld(map[string]string{AnnotationErrorRate: "0.2", AnnotationErrorCode: "503"},
		httpRoute(dest("reviews-primary", 50), dest("reviews-canary", 50)))
	run(e, w, 10)
	canary := map[string]string{"reporter": "destination", "destination_workload": "reviews"}
	total := metricSum(t, reg, "istio_requests_total", canary)
	canary["response_code"] = "503"
	errors := metricSum(t, reg, "istio_requests_total", canary)
	if total != 250 || errors != 50 {
		t.Fatalf("canary answered %v requests with %v errors, want 250 with 50", total, errors)
	}
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"destination_workload": "reviews-primary", "response_code": "503"}); got != 0 {
		t.Fatalf("the primary answered %v errors", got)
	}
}

func TestLatencyHistogram(t *testing.T) {
	e, reg := newTestEngine(Options{})
	w := reviewsWorld(map[string]string{AnnotationLatency: "p50=25,p99=1000"}, httpRoute(dest("reviews-canary", 0)))
	run(e, w, 100) // 5000 requests
	mfs, _ := reg.Gather()
	var h *dto.Histogram
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "istio_request_duration_milliseconds" && hasLabels(m, map[string]string{"reporter": "destination"}) {
				h = m.GetHistogram()
			}
		}
	}
	if h == nil || h.GetSampleCount() != 5000 {
		t.Fatalf("histogram = %v", h)
	}
	var bounds []float64
	below := map[float64]uint64{}
	for _, b := range h.GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
		below[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	if want := istioDurationBuckets; len(bounds) != len(want) {
		t.Fatalf("buckets %v, want Istio's %v", bounds, want)
	}
	// p50 and p99 sit on bucket bounds: half the requests within 25 ms, 1% above 1000 ms.
	if frac := float64(below[25]) / 5000; math.Abs(frac-0.5) > 0.002 {
		t.Errorf("%.4f of requests within 25 ms, want 0.5", frac)
	}
	if frac := 1 - float64(below[1000])/5000; math.Abs(frac-0.01) > 0.002 {
		t.Errorf("%.4f of requests above 1000 ms, want 0.01", frac)
	}
}

func TestSubsets(t *testing.T) {
	w := &World{
		VirtualServices: []*networkingv1.VirtualService{virtualService("shop", "reviews", []string{"reviews.shop.svc.cluster.local"},
			httpRoute(
				&apinetworkingv1.HTTPRouteDestination{Destination: &apinetworkingv1.Destination{Host: "reviews", Subset: "v1"}, Weight: 80},
				&apinetworkingv1.HTTPRouteDestination{Destination: &apinetworkingv1.Destination{Host: "reviews", Subset: "v2"}, Weight: 20},
			))},
		DestinationRules: []*networkingv1.DestinationRule{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "reviews"},
			Spec: apinetworkingv1.DestinationRule{Host: "reviews.shop.svc.cluster.local", Subsets: []*apinetworkingv1.Subset{
				{Name: "v1", Labels: map[string]string{"version": "v1"}},
				{Name: "v2", Labels: map[string]string{"version": "v2"}},
			}},
		}},
		Services: []*corev1.Service{service("shop", "reviews", map[string]string{"app": "reviews"})},
		Deployments: []*appsv1.Deployment{
			deployment("shop", "reviews-v1", 1, map[string]string{"app": "reviews", "version": "v1"}, nil),
			deployment("shop", "reviews-v2", 1, map[string]string{"app": "reviews", "version": "v2"}, nil),
		},
	}
	e, _ := newTestEngine(Options{})
	run(e, w, 10)
	s := e.snapshot()
	if a, b := s.Requests(toWorkload("reviews-v1")), s.Requests(toWorkload("reviews-v2")); a != 400 || b != 100 {
		t.Fatalf("v1 %d, v2 %d; want 400 and 100", a, b)
	}

	// An unknown subset is a missing cluster: 503, and nobody behind it sees a request.
	w.DestinationRules[0].Spec.Subsets = w.DestinationRules[0].Spec.Subsets[:1]
	e, _ = newTestEngine(Options{})
	run(e, w, 10)
	s = e.snapshot()
	if got := s.Requests(func(k RouteKey) bool { return k.Subset == "v2" && k.Code == 503 && k.Workload == "" }); got != 100 {
		t.Fatalf("requests to the missing subset: %d failed, want 100\n%+v", got, s.Routes)
	}
}

func TestReplicasBalance(t *testing.T) {
	w := reviewsWorld(nil, httpRoute(dest("reviews", 0)))
	w.Services[0].Spec.Selector = map[string]string{"tier": "reviews"}
	w.Deployments[0].Spec.Template.Labels["tier"] = "reviews"
	w.Deployments[0].Spec.Replicas = ptr.To[int32](3)
	w.Deployments[1].Spec.Template.Labels["tier"] = "reviews"
	run1 := func() (int64, int64) {
		e, _ := newTestEngine(Options{})
		run(e, w, 4)
		s := e.snapshot()
		return s.Requests(toWorkload("reviews-primary")), s.Requests(toWorkload("reviews"))
	}
	if p, c := run1(); p != 150 || c != 50 {
		t.Fatalf("3 and 1 replicas got %d and %d, want 150 and 50", p, c)
	}
	w.Deployments[1].Spec.Replicas = ptr.To[int32](0)
	if p, c := run1(); p != 200 || c != 0 {
		t.Fatalf("3 and 0 replicas got %d and %d, want 200 and 0", p, c)
	}
}

func TestNoRouteAndNoEndpoints(t *testing.T) {
	only := httpRoute(dest("reviews-primary", 0))
	only.Match = []*apinetworkingv1.HTTPMatchRequest{{Uri: &apinetworkingv1.StringMatch{MatchType: &apinetworkingv1.StringMatch_Prefix{Prefix: "/api"}}}}
	e, reg := newTestEngine(Options{})
	run(e, reviewsWorld(nil, only), 2)
	if got := e.snapshot().Requests(func(k RouteKey) bool { return k.Code == 404 && k.Route == "" }); got != 100 {
		t.Fatalf("%d requests got 404, want 100", got)
	}
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"reporter": "destination"}); got != 0 {
		t.Fatalf("%v requests reached a workload", got)
	}

	e, reg = newTestEngine(Options{})
	run(e, reviewsWorld(nil, httpRoute(dest("ratings", 0))), 2)
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"reporter": "source", "response_code": "503", "response_flags": "UH"}); got != 100 {
		t.Fatalf("source saw %v 503 UH, want 100", got)
	}
}

func TestStreams(t *testing.T) {
	older := virtualService("shop", "b-older", []string{"reviews.shop.svc.cluster.local", "*.example.com", "reviews.example.com"}, httpRoute(dest("reviews-primary", 0)))
	older.CreationTimestamp = metav1.NewTime(time.Unix(100, 0))
	newer := virtualService("shop", "a-newer", []string{"reviews"}, httpRoute(dest("reviews-canary", 0)))
	newer.CreationTimestamp = metav1.NewTime(time.Unix(200, 0))
	gw := virtualService("shop", "ingress", []string{"reviews.example.com"}, httpRoute(dest("reviews-canary", 0)))
	gw.Spec.Gateways = []string{"istio-system/public"}
	gw.CreationTimestamp = metav1.NewTime(time.Unix(300, 0))
	w := reviewsWorld(nil)
	w.VirtualServices = []*networkingv1.VirtualService{newer, gw, older}

	var got []string
	for _, s := range w.streams() {
		got = append(got, s.VS.Name+" "+s.Host+" "+s.Gateway)
	}
	want := []string{"b-older reviews.shop.svc.cluster.local mesh", "b-older reviews.example.com mesh", "ingress reviews.example.com istio-system/public"}
	if len(got) != len(want) {
		t.Fatalf("streams %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("streams %q, want %q", got, want)
		}
	}

	e, reg := newTestEngine(Options{})
	run(e, w, 2)
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"reporter": "destination", "source_workload": "istio-ingressgateway", "destination_workload": "reviews"}); got != 100 {
		t.Fatalf("gateway traffic to the canary = %v, want 100", got)
	}
}

func TestResolveHost(t *testing.T) {
	for host, want := range map[string]string{
		"reviews":                          "reviews.shop.svc.cluster.local",
		"reviews.other":                    "reviews.other.svc.cluster.local",
		"reviews.other.svc":                "reviews.other.svc.cluster.local",
		"Reviews.Other.svc.cluster.local.": "reviews.other.svc.cluster.local",
		"reviews.example.com":              "reviews.example.com",
	} {
		if got := fqdn(host, "shop"); got != want {
			t.Errorf("fqdn(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestParseBehavior(t *testing.T) {
	tests := []struct {
		annotations map[string]string
		want        Behavior
		wantErr     bool
	}{
		{nil, DefaultBehavior, false},
		{map[string]string{AnnotationErrorRate: "0.2"}, Behavior{ErrorRate: 0.2, ErrorCode: 500, P50: 10, Q: 25, Z: zScore[99]}, false},
		{map[string]string{AnnotationLatency: "p50=20, p99=80"}, Behavior{ErrorCode: 500, P50: 20, Q: 80, Z: zScore[99]}, false},
		{map[string]string{AnnotationLatency: "p50=20,p90=40,p99=80"}, Behavior{ErrorCode: 500, P50: 20, Q: 80, Z: zScore[99]}, false},
		{map[string]string{AnnotationLatency: "p50=20,p95=40"}, Behavior{ErrorCode: 500, P50: 20, Q: 40, Z: zScore[95]}, false},
		{map[string]string{AnnotationLatency: "35"}, Behavior{ErrorCode: 500, P50: 35, Q: 35}, false},
		{map[string]string{AnnotationErrorRate: "1.5"}, DefaultBehavior, true},
		{map[string]string{AnnotationErrorCode: "abc"}, DefaultBehavior, true},
		{map[string]string{AnnotationLatency: "p99=80"}, DefaultBehavior, true},
		{map[string]string{AnnotationLatency: "p50=80,p99=20"}, DefaultBehavior, true},
		{map[string]string{AnnotationLatency: "p50=20,p75=30"}, DefaultBehavior, true},
	}
	for _, tt := range tests {
		got, err := ParseBehavior(tt.annotations)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseBehavior(%v) = %+v, %v; want %+v, error %v", tt.annotations, got, err, tt.want, tt.wantErr)
		}
	}
	b, _ := ParseBehavior(map[string]string{AnnotationLatency: "p50=20,p99=80"})
	if got := b.Latency(0.5); math.Abs(got-20) > 1e-9 {
		t.Errorf("Latency(0.5) = %v, want 20", got)
	}
	if got := b.Latency(0.99); math.Abs(got-80) > 1e-6 {
		t.Errorf("Latency(0.99) = %v, want 80", got)
	}
}

func TestLowTrafficKeepsItsErrorRate(t *testing.T) {
	// 1% of 50 rps: the canary gets a request every other tick, and must still fail one
	// in five of them.
	e, reg := newTestEngine(Options{})
	w := reviewsWorld(map[string]string{AnnotationErrorRate: "0.2"}, httpRoute(dest("reviews-primary", 99), dest("reviews-canary", 1)))
	run(e, w, 100)
	canary := map[string]string{"reporter": "destination", "destination_workload": "reviews"}
	total := metricSum(t, reg, "istio_requests_total", canary)
	canary["response_code"] = "500"
	if errors := metricSum(t, reg, "istio_requests_total", canary); total != 50 || errors != 10 {
		t.Fatalf("canary answered %v requests with %v errors, want 50 with 10", total, errors)
	}
}
