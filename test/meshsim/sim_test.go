package meshsim

import (
	"math"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// The world of these tests: namespace shop, a reviews primary and canary as canopy
// generates them (reviewsWorld), at 50 requests per second per host, routed by
// hand-built Envoy configuration shaped as istiod sends it (envoy_test.go).

func newTestEngine(opts Options) (*engine, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	return newEngine(opts, reg), reg
}

// run simulates seconds of traffic in one-second ticks.
func run(e *engine, w *World, px proxies, seconds int) {
	for range seconds {
		e.simulate(w, px, time.Second)
	}
}

func fixed(cfg *envoyConfig) *fixedProxies { return &fixedProxies{cfg: cfg} }

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
	px := fixed(reviewsConfig(named(split(cluster("reviews-primary", ""), 90, cluster("reviews-canary", ""), 10), "primary", "shop", "reviews")))
	w := reviewsWorld(nil)
	run(e, w, px, 10)

	s := e.snapshot()
	if got := s.Requests(nil); got != 500 {
		t.Fatalf("%d requests in 10s at 50 rps, want 500", got)
	}
	if p, c := s.Requests(toWorkload("reviews-primary")), s.Requests(toWorkload("reviews")); p != 450 || c != 50 {
		t.Fatalf("primary %d, canary %d; want 450 and 50", p, c)
	}
	if got := s.Requests(func(k RouteKey) bool {
		return k.Route == "primary" && k.RouteFrom == "shop/reviews" && k.Cluster == cluster("reviews-canary", "") &&
			k.DestinationHost == "reviews-canary.shop.svc.cluster.local" && k.Code == 200 && k.Flags == "-"
	}); got != 50 {
		t.Fatalf("%d canary requests with the route's name, origin and cluster, want 50\n%+v", got, s.Routes)
	}
	// The sidecar of the client in shop asked for the route configuration of port 9080.
	if len(px.asked) != 1 {
		t.Fatalf("proxies %v, want one", px.asked)
	}
	for id, routes := range px.asked {
		n := px.nodes[id]
		if n.Type != "sidecar" || n.Namespace != "shop" || n.Labels["app"] != "meshsim-client" || len(routes) != 1 || routes[0] != "9080" {
			t.Fatalf("proxy %s %+v asked for %v", id, n, routes)
		}
	}
	run(e, w, px, 2)
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

func TestOneClusterAndEndpointsByPod(t *testing.T) {
	// The apex Service's cluster has the primary's two pods; a third pod of the primary
	// and one of the canary join its endpoints: requests follow the pods.
	e, _ := newTestEngine(Options{})
	cfg := reviewsConfig(routeTo(cluster("reviews", "")))
	run(e, reviewsWorld(nil), fixed(cfg), 4)
	if p := e.snapshot().Requests(toWorkload("reviews-primary")); p != 200 {
		t.Fatalf("primary %d, want all 200", p)
	}

	w := reviewsWorld(nil)
	w.deployment("shop", "reviews-primary", map[string]string{"app": "reviews-primary"}, nil, "10.0.0.5")
	cfg = config([]*routev3.RouteConfiguration{cfg.Routes["9080"]}, map[string][]string{cluster("reviews", ""): {"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"}})
	e, _ = newTestEngine(Options{})
	run(e, w, fixed(cfg), 4)
	s := e.snapshot()
	if p, c := s.Requests(toWorkload("reviews-primary")), s.Requests(toWorkload("reviews")); p != 150 || c != 50 {
		t.Fatalf("3 primary pods and 1 canary pod got %d and %d, want 150 and 50", p, c)
	}
}

func TestFractionalRatesCarry(t *testing.T) {
	e, _ := newTestEngine(Options{RequestsPerSecond: 7})
	px := fixed(reviewsConfig(split(cluster("reviews-primary", ""), 67, cluster("reviews-canary", ""), 33)))
	w := reviewsWorld(nil)
	for range 30 {
		e.simulate(w, px, 300*time.Millisecond) // 2.1 requests a tick
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
	byHeader := named(routeTo(cluster("reviews-canary", "")), "canary", "shop", "reviews")
	byHeader.Match.Headers = []*routev3.HeaderMatcher{headerExact("x-canary", "insider")}
	byCookie := named(routeTo(cluster("reviews-canary", "")), "canary", "shop", "reviews")
	byCookie.Match.Headers = []*routev3.HeaderMatcher{headerRegex("cookie", `^(.*?;)?( ?user=nobody)(;.*)?$`)}
	primary := named(routeTo(cluster("reviews-primary", "")), "primary", "shop", "reviews")
	run(e, reviewsWorld(nil), fixed(reviewsConfig(byHeader, byCookie, primary)), 10)

	s := e.snapshot()
	canary := s.Requests(toWorkload("reviews"))
	taggedToCanary := s.Requests(func(k RouteKey) bool { return k.Workload == "reviews" && k.Tagged && k.Route == "canary" })
	untaggedToPrimary := s.Requests(func(k RouteKey) bool { return k.Workload == "reviews-primary" && !k.Tagged && k.Route == "primary" })
	if canary != 100 || taggedToCanary != 100 || untaggedToPrimary != 400 {
		t.Fatalf("canary %d (tagged %d), untagged to primary %d; want 100, 100, 400\n%+v", canary, taggedToCanary, untaggedToPrimary, s.Routes)
	}
}

func TestRouteMatches(t *testing.T) {
	req := request{Authority: "reviews", Scheme: "http", Method: "GET", Path: "/api/v1?user=test", Headers: map[string]string{"cookie": "session=1; user=test"}}
	never := func(float64) bool { return false }
	prefix := func(p string) *routev3.RouteMatch {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
	}
	for name, tt := range map[string]struct {
		m    *routev3.RouteMatch
		want bool
	}{
		"prefix":             {prefix("/api"), true},
		"other prefix":       {prefix("/web"), false},
		"path ignores query": {&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/api/v1"}}, true},
		"case-insensitive":   {&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/API/V1"}, CaseSensitive: wrapperspb.Bool(false)}, true},
		"case-sensitive":     {&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/API/V1"}}, false},
		"method header":      {&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{headerExact(":method", "GET")}}, true},
		"absent header":      {&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{headerExact("x-canary", "insider")}}, false},
		"absent header, inverted": {&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{
			{Name: "x-canary", InvertMatch: true, HeaderMatchSpecifier: headerExact("", "insider").HeaderMatchSpecifier},
		}}, false},
		"header absent as asked": {&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{
			{Name: "x-canary", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: false}},
		}}, true},
		"cookie regex": {&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{headerRegex("cookie", `^(.*?;)?( ?user=test)(;.*)?$`)}}, true},
		"query": {&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, QueryParameters: []*routev3.QueryParameterMatcher{{
			Name: "user", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: headerExact("", "test").GetStringMatch()},
		}}}, true},
		"other query": {&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, QueryParameters: []*routev3.QueryParameterMatcher{{
			Name: "user", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: headerExact("", "nobody").GetStringMatch()},
		}}}, false},
		"regex path": {&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: headerRegex("", "/api/v[0-9]+").GetStringMatch().GetSafeRegex()}}, true},
	} {
		if got := routeMatches(tt.m, req, never); got != tt.want {
			t.Errorf("%s: matches = %v, want %v", name, got, tt.want)
		}
	}
}

func TestVirtualHostDomains(t *testing.T) {
	rc := &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{
		{Name: "any", Domains: []string{"*"}},
		{Name: "suffix", Domains: []string{"*.example.com"}},
		{Name: "longer suffix", Domains: []string{"*.shop.example.com"}},
		{Name: "prefix", Domains: []string{"reviews.*"}},
		{Name: "exact", Domains: []string{"reviews.example.com", "reviews.example.com:80"}},
	}}
	for authority, want := range map[string]string{
		"reviews.example.com":      "exact",
		"Reviews.Example.com:80":   "exact",
		"ratings.example.com":      "suffix",
		"ratings.shop.example.com": "longer suffix",
		"reviews.other":            "prefix",
		"ratings":                  "any",
	} {
		if got := virtualHost(rc, authority); got.GetName() != want {
			t.Errorf("%s: virtual host %q, want %q", authority, got.GetName(), want)
		}
	}
}

func TestMirror(t *testing.T) {
	e, reg := newTestEngine(Options{})
	r := routeTo(cluster("reviews-primary", ""))
	action(r).RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{
		Cluster: cluster("reviews-canary", ""), RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: percent(50)},
	}}
	run(e, reviewsWorld(map[string]string{AnnotationErrorRate: "1"}), fixed(reviewsConfig(r)), 10)

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

func TestErrorRateAndCode(t *testing.T) {
	e, reg := newTestEngine(Options{})
	w := reviewsWorld(map[string]string{AnnotationErrorRate: "0.2", AnnotationErrorCode: "500"})
	run(e, w, fixed(reviewsConfig(split(cluster("reviews-primary", ""), 50, cluster("reviews-canary", ""), 50))), 10)
	canary := map[string]string{"reporter": "destination", "destination_workload": "reviews"}
	total := metricSum(t, reg, "istio_requests_total", canary)
	canary["response_code"] = "500"
	errors := metricSum(t, reg, "istio_requests_total", canary)
	if total != 250 || errors != 50 {
		t.Fatalf("canary answered %v requests with %v errors, want 250 with 50", total, errors)
	}
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"destination_workload": "reviews-primary", "response_code": "500"}); got != 0 {
		t.Fatalf("the primary answered %v errors", got)
	}
}

func TestRetries(t *testing.T) {
	// Istio's default policy: 2 retries of a 503. Every other answer of the canary is a
	// 503 (the first is a 200), and each is retried on the canary's one pod, which then
	// answers 200: 499 of the 500 requests take two attempts.
	r := routeTo(cluster("reviews-canary", ""))
	action(r).RetryPolicy = &routev3.RetryPolicy{
		RetryOn: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", NumRetries: wrapperspb.UInt32(2),
		RetriableStatusCodes: []uint32{503},
	}
	e, reg := newTestEngine(Options{})
	run(e, reviewsWorld(map[string]string{AnnotationErrorRate: "0.5", AnnotationErrorCode: "503"}), fixed(reviewsConfig(r)), 10)
	dst := map[string]string{"reporter": "destination", "destination_workload": "reviews"}
	if got := metricSum(t, reg, "istio_requests_total", dst); got != 999 {
		t.Errorf("the canary answered %v attempts, want 999", got)
	}
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"reporter": "destination", "response_code": "503"}); got != 499 {
		t.Errorf("the canary answered %v attempts with 503, want 499", got)
	}
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"reporter": "source", "response_code": "503"}); got != 0 {
		t.Errorf("the client saw %v 503s, want none", got)
	}

	// A 500 is not retried by that policy; "5xx" retries it until the retries run out.
	e, reg = newTestEngine(Options{})
	run(e, reviewsWorld(map[string]string{AnnotationErrorRate: "1"}), fixed(reviewsConfig(r)), 2)
	if got := metricSum(t, reg, "istio_requests_total", dst); got != 100 {
		t.Errorf("the canary answered %v attempts, want 100", got)
	}
	action(r).RetryPolicy.RetryOn = "5xx"
	e, reg = newTestEngine(Options{})
	run(e, reviewsWorld(map[string]string{AnnotationErrorRate: "1"}), fixed(reviewsConfig(r)), 2)
	if got := metricSum(t, reg, "istio_requests_total", dst); got != 300 {
		t.Errorf("the canary answered %v attempts, want 300", got)
	}
	if got := e.snapshot().Requests(func(k RouteKey) bool { return k.Code == 500 && k.Flags == "URX" }); got != 100 {
		t.Errorf("%d requests ran out of retries, want 100", got)
	}
}

func TestTimeouts(t *testing.T) {
	r := routeTo(cluster("reviews-canary", ""))
	action(r).Timeout = durationpb.New(50 * time.Millisecond)
	e, reg := newTestEngine(Options{})
	run(e, reviewsWorld(map[string]string{AnnotationLatency: "100"}), fixed(reviewsConfig(r)), 2)
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"reporter": "source", "response_code": "504", "response_flags": "UT"}); got != 100 {
		t.Errorf("the client saw %v timeouts, want 100", got)
	}
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"reporter": "destination", "response_code": "200"}); got != 100 {
		t.Errorf("the canary reported %v answers, want 100", got)
	}

	// A timeout of 0 is none (istiod's default).
	action(r).Timeout = durationpb.New(0)
	e, reg = newTestEngine(Options{})
	run(e, reviewsWorld(map[string]string{AnnotationLatency: "100"}), fixed(reviewsConfig(r)), 2)
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"reporter": "source", "response_code": "200"}); got != 100 {
		t.Errorf("the client saw %v answers, want 100", got)
	}
}

func TestFaults(t *testing.T) {
	r := withFault(named(routeTo(cluster("reviews-canary", "")), "faulty", "shop", "reviews"), abortFault(418, 20))
	e, reg := newTestEngine(Options{})
	run(e, reviewsWorld(nil), fixed(reviewsConfig(r)), 10)
	if got := e.snapshot().Requests(func(k RouteKey) bool { return k.Code == 418 && k.Flags == "FI" && k.Workload == "" }); got != 100 {
		t.Errorf("%d requests aborted, want 100 of 500", got)
	}
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"reporter": "destination"}); got != 400 {
		t.Errorf("%v requests reached the canary, want 400", got)
	}
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"reporter": "source", "response_code": "418", "response_flags": "FI",
		"destination_service": "reviews-canary.shop.svc.cluster.local", "destination_workload": "unknown"}); got != 100 {
		t.Errorf("the client saw %v injected 418s, want 100", got)
	}

	r = withFault(routeTo(cluster("reviews-canary", "")), delayFault(time.Second, 100))
	e, reg = newTestEngine(Options{})
	run(e, reviewsWorld(map[string]string{AnnotationLatency: "10"}), fixed(reviewsConfig(r)), 2)
	// The delay is the client's: its requests took 1010 ms, the canary's 10.
	if got := metricSum(t, reg, "istio_request_duration_milliseconds", map[string]string{"reporter": "source", "response_flags": "DI"}); got != 100 {
		t.Errorf("%v delayed requests, want 100", got)
	}
	if got := bucketCount(t, reg, map[string]string{"reporter": "source"}, 1000); got != 0 {
		t.Errorf("%v client requests within 1 s, want 0", got)
	}
	if got := bucketCount(t, reg, map[string]string{"reporter": "destination"}, 10); got != 100 {
		t.Errorf("%v canary answers within 10 ms, want 100", got)
	}
}

// bucketCount is the cumulative count of the duration histogram's bucket le.
func bucketCount(t *testing.T, reg *prometheus.Registry, want map[string]string, le float64) uint64 {
	t.Helper()
	mfs, _ := reg.Gather()
	var n uint64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "istio_request_duration_milliseconds" && hasLabels(m, want) {
				for _, b := range m.GetHistogram().GetBucket() {
					if b.GetUpperBound() == le {
						n += b.GetCumulativeCount()
					}
				}
			}
		}
	}
	return n
}

func TestLatencyHistogram(t *testing.T) {
	e, reg := newTestEngine(Options{})
	run(e, reviewsWorld(map[string]string{AnnotationLatency: "p50=25,p99=1000"}), fixed(reviewsConfig(routeTo(cluster("reviews-canary", "")))), 100) // 5000 requests
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
	// istiod's clusters for subsets v1 and v2 of reviews; a route to a subset that has no
	// cluster (no DestinationRule defines it) is answered 503 NC by the client's proxy.
	w := &World{
		VirtualServices: []*networkingv1.VirtualService{virtualService("shop", "reviews", "reviews.shop.svc.cluster.local")},
		Services:        []*corev1.Service{service("shop", "reviews", 9080)},
	}
	w.deployment("shop", "reviews-v1", map[string]string{"app": "reviews", "version": "v1"}, nil, "10.0.0.2")
	w.deployment("shop", "reviews-v2", map[string]string{"app": "reviews", "version": "v2"}, nil, "10.0.0.3")
	r := split(cluster("reviews", "v1"), 80, cluster("reviews", "v2"), 20)
	cfg := config([]*routev3.RouteConfiguration{{Name: "9080", VirtualHosts: []*routev3.VirtualHost{reviewsVirtualHost(r)}}},
		map[string][]string{cluster("reviews", "v1"): {"10.0.0.2"}, cluster("reviews", "v2"): {"10.0.0.3"}})
	e, _ := newTestEngine(Options{})
	run(e, w, fixed(cfg), 10)
	s := e.snapshot()
	if a, b := s.Requests(toWorkload("reviews-v1")), s.Requests(toWorkload("reviews-v2")); a != 400 || b != 100 {
		t.Fatalf("v1 %d, v2 %d; want 400 and 100", a, b)
	}
	if got := s.Requests(func(k RouteKey) bool {
		return k.Subset == "v2" && k.DestinationHost == "reviews.shop.svc.cluster.local"
	}); got != 100 {
		t.Fatalf("%d requests to subset v2 of reviews, want 100", got)
	}

	delete(cfg.Clusters, cluster("reviews", "v2"))
	e, reg := newTestEngine(Options{})
	run(e, w, fixed(cfg), 10)
	s = e.snapshot()
	if got := s.Requests(func(k RouteKey) bool { return k.Subset == "v2" && k.Code == 503 && k.Flags == "NC" && k.Workload == "" }); got != 100 {
		t.Fatalf("requests to the missing subset: %d failed, want 100\n%+v", got, s.Routes)
	}
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"reporter": "source", "response_code": "503", "response_flags": "NC"}); got != 100 {
		t.Fatalf("the client saw %v 503 NC, want 100", got)
	}
}

func TestNoRouteNoEndpointsNoPod(t *testing.T) {
	only := routeTo(cluster("reviews-primary", ""))
	only.Match.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/api"}
	e, reg := newTestEngine(Options{})
	run(e, reviewsWorld(nil), fixed(reviewsConfig(only)), 2)
	if got := e.snapshot().Requests(func(k RouteKey) bool { return k.Code == 404 && k.Flags == "NR" && k.Route == "" }); got != 100 {
		t.Fatalf("%d requests got 404 NR, want 100", got)
	}
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"reporter": "destination"}); got != 0 {
		t.Fatalf("%v requests reached a workload", got)
	}

	// No virtual host for the authority: 404 NR too.
	e, _ = newTestEngine(Options{})
	run(e, reviewsWorld(nil), fixed(config([]*routev3.RouteConfiguration{{Name: "9080"}}, nil)), 2)
	if got := e.snapshot().Requests(func(k RouteKey) bool { return k.Code == 404 && k.Flags == "NR" }); got != 100 {
		t.Fatalf("%d requests got 404 NR without a virtual host, want 100", got)
	}

	// A cluster without endpoints: 503 UH.
	cfg := reviewsConfig(routeTo(cluster("reviews-canary", "")))
	cfg.Endpoints[cluster("reviews-canary", "")].Endpoints = nil
	e, reg = newTestEngine(Options{})
	run(e, reviewsWorld(nil), fixed(cfg), 2)
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"reporter": "source", "response_code": "503", "response_flags": "UH"}); got != 100 {
		t.Fatalf("source saw %v 503 UH, want 100", got)
	}

	// An endpoint no running Pod has (EDS is behind a deletion): 503 UF.
	w := reviewsWorld(nil)
	w.Pods[2].Status.Phase = corev1.PodFailed
	e, _ = newTestEngine(Options{})
	run(e, w, fixed(reviewsConfig(routeTo(cluster("reviews-canary", "")))), 2)
	if got := e.snapshot().Requests(func(k RouteKey) bool { return k.Code == 503 && k.Flags == "UF" }); got != 100 {
		t.Fatalf("%d requests to a gone pod got 503 UF, want 100", got)
	}
}

func TestNoConfigSendsNothing(t *testing.T) {
	e, _ := newTestEngine(Options{})
	run(e, reviewsWorld(nil), fixed(nil), 2)
	if got := e.snapshot().Requests(nil); got != 0 {
		t.Fatalf("%d requests sent by a proxy without configuration", got)
	}
}

func TestStreamsAndGateways(t *testing.T) {
	older := virtualService("shop", "b-older", "reviews.shop.svc.cluster.local", "*.example.com", "reviews.example.com")
	older.CreationTimestamp = metav1.NewTime(time.Unix(100, 0))
	newer := virtualService("shop", "a-newer", "reviews")
	newer.CreationTimestamp = metav1.NewTime(time.Unix(200, 0))
	gw := virtualService("shop", "ingress", "reviews.example.com")
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

	// Without the Gateway nobody sends the gateway's stream.
	cfg := reviewsConfig(routeTo(cluster("reviews-primary", "")))
	gwRoutes := &routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{{
		Name: "reviews.example.com:80", Domains: []string{"reviews.example.com"}, Routes: []*routev3.Route{routeTo(cluster("reviews-canary", ""))},
	}}}
	cfg.Routes["http.8080"] = gwRoutes
	cfg.Listeners["0.0.0.0_8080"] = httpListener(8080, "http.8080")
	px := fixed(cfg)
	e, reg := newTestEngine(Options{})
	run(e, w, px, 2)
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"source_workload": "istio-ingressgateway"}); got != 0 {
		t.Fatalf("%v requests from a gateway that does not exist", got)
	}

	w.Gateways = []*networkingv1.Gateway{{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "public"}}}
	w.Gateways[0].Spec.Selector = map[string]string{"istio": "ingressgateway", "app": "istio-ingressgateway"}
	e, reg = newTestEngine(Options{})
	px = fixed(cfg)
	run(e, w, px, 2)
	if got := metricSum(t, reg, "istio_requests_total", map[string]string{"reporter": "destination", "source_workload": "istio-ingressgateway", "source_workload_namespace": "istio-system", "destination_workload": "reviews"}); got != 100 {
		t.Fatalf("gateway traffic to the canary = %v, want 100", got)
	}
	var routers int
	for id, n := range px.nodes {
		if n.Type == "router" {
			routers++
			if n.Namespace != "istio-system" || n.Labels["istio"] != "ingressgateway" || !contains(px.asked[id], "http.8080") {
				t.Errorf("router %s %+v asked for %v", id, n, px.asked[id])
			}
		}
	}
	if routers != 1 {
		t.Errorf("%d routers, want 1: %v", routers, px.nodes)
	}
	// The mesh's stream of reviews.example.com is no Service: its sidecar asks for port 80.
	for id, n := range px.nodes {
		if n.Type == "sidecar" && !contains(px.asked[id], "80") {
			t.Errorf("sidecar %s asked for %v, want 80 among them", id, px.asked[id])
		}
	}
}

func TestLowTrafficKeepsItsErrorRate(t *testing.T) {
	// 1% of 50 rps: the canary gets a request every other tick, and must still fail one
	// in five of them.
	e, reg := newTestEngine(Options{})
	w := reviewsWorld(map[string]string{AnnotationErrorRate: "0.2"})
	run(e, w, fixed(reviewsConfig(split(cluster("reviews-primary", ""), 99, cluster("reviews-canary", ""), 1))), 100)
	canary := map[string]string{"reporter": "destination", "destination_workload": "reviews"}
	total := metricSum(t, reg, "istio_requests_total", canary)
	canary["response_code"] = "500"
	if errors := metricSum(t, reg, "istio_requests_total", canary); total != 50 || errors != 10 {
		t.Fatalf("canary answered %v requests with %v errors, want 50 with 10", total, errors)
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

// A Service an HTTPRoute has as its parent (GAMMA) is called by sidecars; a Gateway parent
// adds no mesh stream, and a host a VirtualService already streams is not sent to twice.
func TestStreamsOfHTTPRoutes(t *testing.T) {
	svc := gwapiv1.Kind("Service")
	core := gwapiv1.Group("")
	other := gwapiv1.Namespace("books")
	hr := &gwapiv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "reviews", CreationTimestamp: metav1.NewTime(time.Unix(100, 0))}}
	hr.Spec.ParentRefs = []gwapiv1.ParentReference{
		{Group: &core, Kind: &svc, Name: "reviews"},
		{Group: &core, Kind: &svc, Namespace: &other, Name: "ratings"},
		{Name: "public"}, // a Gateway
	}
	vs := virtualService("shop", "older", "reviews")
	vs.CreationTimestamp = metav1.NewTime(time.Unix(50, 0))
	w := reviewsWorld(nil)
	w.HTTPRoutes = []*gwapiv1.HTTPRoute{hr}
	var got []string
	for _, s := range w.streams() {
		got = append(got, s.VS.Name+" "+s.Host+" "+s.Gateway)
	}
	if want := []string{"reviews reviews mesh", "reviews ratings.books mesh"}; !slices.Equal(got, want) {
		t.Fatalf("streams %q, want %q", got, want)
	}
	w.VirtualServices = []*networkingv1.VirtualService{vs}
	got = got[:0]
	for _, s := range w.streams() {
		got = append(got, s.VS.Name+" "+s.Host+" "+s.Gateway)
	}
	if want := []string{"older reviews mesh", "reviews ratings.books mesh"}; !slices.Equal(got, want) {
		t.Fatalf("streams with an older VirtualService for reviews %q, want %q", got, want)
	}
}

// An HTTPRoute whose parent is a Gateway API Gateway of class istio sends the hostnames
// that Gateway's HTTP listeners accept through the proxy of the Deployment istiod made for
// it, at IngressShare of the rate; a Gateway of another class, an HTTPS listener and a
// hostname no listener accepts send nothing.
func TestStreamsOfGatewayAPIGateways(t *testing.T) {
	wildcard := gwapiv1.Hostname("*.example.com")
	public := &gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "public"}}
	public.Spec.GatewayClassName = istioGatewayClass
	public.Spec.Listeners = []gwapiv1.Listener{
		{Name: "http", Port: 80, Protocol: gwapiv1.HTTPProtocolType, Hostname: &wildcard},
		{Name: "https", Port: 443, Protocol: gwapiv1.HTTPSProtocolType},
	}
	other := public.DeepCopy()
	other.Name, other.Spec.GatewayClassName = "other", "envoy"
	hr := &gwapiv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "reviews"}}
	hr.Spec.Hostnames = []gwapiv1.Hostname{"reviews.example.com", "reviews.example.org"}
	hr.Spec.ParentRefs = []gwapiv1.ParentReference{{Name: "public"}, {Name: "other"}}
	w := reviewsWorld(nil)
	w.VirtualServices = nil
	w.HTTPRoutes = []*gwapiv1.HTTPRoute{hr}
	w.KubeGateways = []*gwapiv1.Gateway{public, other}
	gwLabels := map[string]string{"gateway.networking.k8s.io/gateway-name": "public", "service.istio.io/canonical-name": "public-istio"}
	w.deployment("shop", "public-istio", gwLabels, nil, "10.0.0.9").Spec.Template.Spec.ServiceAccountName = "public-istio"

	e, _ := newTestEngine(Options{IngressShare: 0.5})
	streams := w.streams()
	if len(streams) != 1 || streams[0].Host != "reviews.example.com" || streams[0].KubeGateway != public || streams[0].VS.Name != "reviews" {
		t.Fatalf("streams %+v, want reviews.example.com through shop/public", streams)
	}
	if _, ok := e.source(w, streams[0]); ok {
		t.Fatalf("a proxy sends through a Gateway whose Service istiod has not made yet")
	}
	svc := service("shop", "public-istio", 80)
	svc.Spec.Selector = map[string]string{"gateway.networking.k8s.io/gateway-name": "public"}
	w.Services = append(w.Services, svc)
	src, ok := e.source(w, streams[0])
	if !ok {
		t.Fatal("no proxy for the Gateway")
	}
	if n := src.node; n.Type != "router" || n.Namespace != "shop" || n.Labels["gateway.networking.k8s.io/gateway-name"] != "public" || n.ServiceAccount != "public-istio" {
		t.Errorf("proxy %+v, want a router of shop labelled as istiod's deployment labels its pods", n)
	}
	if p := src.peer; p.Workload != "public-istio" || p.CanonicalService != "public-istio" || p.Principal != "spiffe://cluster.local/ns/shop/sa/public-istio" {
		t.Errorf("source peer %+v, want the deployment public-istio", p)
	}

	// A manual deployment: the Service is the one a Hostname address names.
	manual := public.DeepCopy()
	manual.Spec.Addresses = []gwapiv1.GatewaySpecAddress{{Type: ptr.To(gwapiv1.HostnameAddressType), Value: "edge.shop.svc.cluster.local"}}
	if got := kubeGatewayService(manual); got != "edge" {
		t.Errorf("the Service of a manually deployed Gateway: %q, want edge", got)
	}
	if got := kubeGatewayService(public); got != "public-istio" {
		t.Errorf("the Service of a deployed Gateway: %q, want public-istio", got)
	}

	// istiod's configuration for it: listener 80 naming route configuration http.80.
	rc := &routev3.RouteConfiguration{Name: "http.80", VirtualHosts: []*routev3.VirtualHost{{
		Name: "reviews.example.com:80", Domains: []string{"reviews.example.com", "reviews.example.com:*"},
		Routes: []*routev3.Route{split(cluster("reviews-primary", ""), 80, cluster("reviews-canary", ""), 20)},
	}}}
	cfg := reviewsConfig()
	cfg.Routes = map[string]*routev3.RouteConfiguration{"http.80": rc}
	cfg.Listeners = map[string]*listenerv3.Listener{"0.0.0.0_80": httpListener(80, "http.80")}
	run(e, w, fixed(cfg), 10)
	s := e.snapshot()
	atIngress := func(workload string) func(RouteKey) bool {
		return func(k RouteKey) bool {
			return k.Host == "reviews.example.com" && k.Workload == workload && k.Code == 200
		}
	}
	if p, c := s.Requests(atIngress("reviews-primary")), s.Requests(atIngress("reviews")); p != 200 || c != 50 {
		t.Fatalf("ingress requests: primary %d, canary %d; want 200 and 50 (half of 50/s for 10s, split 80/20)\n%+v", p, c, s.Routes)
	}
}
