package meshsim

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	apinetworkingv1 "istio.io/api/networking/v1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"canopy.dev/canopy/test/testenv"
)

var env *testenv.Env

// The unit tests need no cluster; with -short they run alone. The others run on a local
// cluster with istiod, whose Pods (kwok's, with fake IPs) are the endpoints istiod sends.
func TestMain(m *testing.M) { testenv.Main(m, testenv.Options{LocalCluster: true, Istio: true}, &env) }

// createReviews creates, in ns, what canopy generates for a Canary of reviews: a primary
// and a canary Deployment, a Service for each, the apex Service reviews (selecting the
// primary's pods), and a VirtualService for the apex host splitting
// primaryWeight/canaryWeight.
func createReviews(t *testing.T, ns string, primaryWeight, canaryWeight int32) *networkingv1.VirtualService {
	t.Helper()
	ctx := t.Context()
	// Deployment name -> the Service selecting its pods.
	for name, svc := range map[string]string{"reviews-primary": "reviews-primary", "reviews": "reviews-canary"} {
		labels := map[string]string{"app": name}
		objs := []client.Object{
			&appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: appsv1.DeploymentSpec{
					Replicas: ptr.To[int32](1),
					Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels},
						Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "reviews", Image: "reviews:v1"}}},
					},
				},
			},
			&corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: svc},
				Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}},
			},
		}
		for _, o := range objs {
			if err := env.Client.Create(ctx, o); err != nil {
				t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
			}
		}
	}
	apex := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "reviews-primary"}, Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}},
	}
	if err := env.Client.Create(ctx, apex); err != nil {
		t.Fatalf("creating the apex Service: %v", err)
	}
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"}}
	vs.Spec.Hosts = []string{"reviews"}
	vs.Spec.Http = []*apinetworkingv1.HTTPRoute{{Name: "primary", Route: []*apinetworkingv1.HTTPRouteDestination{
		{Destination: &apinetworkingv1.Destination{Host: "reviews-primary"}, Weight: primaryWeight},
		{Destination: &apinetworkingv1.Destination{Host: "reviews-canary"}, Weight: canaryWeight},
	}}}
	if err := env.Client.Create(ctx, vs); err != nil {
		t.Fatalf("creating the VirtualService: %v", err)
	}
	return vs
}

func startSim(t *testing.T, opts Options) *Sim {
	t.Helper()
	if opts.XDSAddress == "" {
		opts.XDSAddress = env.Istio.XDSAddress
	}
	ctx, cancel := context.WithCancel(context.Background())
	sim, err := Start(ctx, env.Config, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		<-sim.Done()
	})
	return sim
}

// proxyConfig is what istiod has sent the simulated proxy of a type ("sidecar",
// "router") in ns (nil before it connected).
func (s *Sim) proxyConfig(typ, ns string) *envoyConfig {
	s.xds.mu.Lock()
	defer s.xds.mu.Unlock()
	for _, c := range s.xds.clients {
		if c.node.Type == typ && c.node.Namespace == ns {
			cfg, _ := c.config()
			return cfg
		}
	}
	return nil
}

// waitForIstiod ticks the simulator (sending nothing) until check accepts what istiod
// has sent the client's sidecar in ns, and the world the simulator sees.
func waitForIstiod(t *testing.T, sim *Sim, ns string, check func(w *World, cfg *envoyConfig) error) {
	t.Helper()
	waitForProxy(t, sim, "sidecar", ns, check)
}

func waitForProxy(t *testing.T, sim *Sim, typ, ns string, check func(w *World, cfg *envoyConfig) error) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() error {
		if err := sim.Tick(t.Context(), 0); err != nil {
			return err
		}
		cfg := sim.proxyConfig(typ, ns)
		if cfg == nil {
			return fmt.Errorf("the %s in %s has no configuration yet", typ, ns)
		}
		w, err := listWorld(t.Context(), sim.reader, sim.httpRoutes)
		if err != nil {
			return err
		}
		return check(w, cfg)
	})
}

// weightsAndEndpoints accepts a configuration whose route for host on port 9080 splits
// between the clusters of Services of ns by the given weights ("reviews-primary", 90,
// ...), each cluster's endpoints being exactly the Running Pods of the Deployment
// behind it, every one carrying annotation (when set).
func weightsAndEndpoints(ns, host string, annotation string, servicesAndWeights ...any) func(w *World, cfg *envoyConfig) error {
	return func(w *World, cfg *envoyConfig) error {
		rc := cfg.Routes["9080"]
		if rc == nil {
			return fmt.Errorf("no route configuration 9080")
		}
		vh := virtualHost(rc, host)
		if vh == nil || len(vh.Routes) == 0 {
			return fmt.Errorf("no virtual host for %s", host)
		}
		got := map[string]uint32{}
		switch a := vh.Routes[0].GetRoute(); {
		case a.GetCluster() != "":
			got[a.GetCluster()] = 100
		default:
			for _, c := range a.GetWeightedClusters().GetClusters() {
				got[c.GetName()] = c.GetWeight().GetValue()
			}
		}
		for i := 0; i < len(servicesAndWeights); i += 2 {
			name := "outbound|9080||" + servicesAndWeights[i].(string) + "." + ns + ".svc.cluster.local"
			want := uint32(servicesAndWeights[i+1].(int))
			if got[name] != want {
				return fmt.Errorf("route of %s: weights %v, want %s at %d", host, got, name, want)
			}
			eps, _ := cfg.clusterEndpoints(name)
			if len(eps) != 1 {
				return fmt.Errorf("%s has endpoints %v, want the one Pod", name, eps)
			}
			wl, ok := w.at(eps[0].IP)
			if !ok {
				return fmt.Errorf("%s: no running Pod has the endpoint %s", name, eps[0].IP)
			}
			if _, ok := wl.Pod.Annotations[annotation]; annotation != "" && !ok {
				return fmt.Errorf("%s: the endpoint's Pod %s is of an older template", name, wl.Pod.Name)
			}
		}
		return nil
	}
}

// TestFollowsTheCluster drives the simulator by hand against a local cluster and a real
// istiod: it routes what istiod sends for the VirtualService, and follows an edit of the
// weights and of a Deployment's behaviour.
func TestFollowsTheCluster(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	vs := createReviews(t, ns, 90, 10)
	sim := startSim(t, Options{TickInterval: -1, Namespaces: []string{ns}})
	ctx := t.Context()
	waitForIstiod(t, sim, ns, weightsAndEndpoints(ns, "reviews", "", "reviews-primary", 90, "reviews-canary", 10))

	if err := sim.Tick(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s := sim.Stats()
	if p, c := s.Requests(toWorkload("reviews-primary")), s.Requests(toWorkload("reviews")); p != 450 || c != 50 {
		t.Fatalf("primary %d, canary %d; want 450 and 50\n%+v", p, c, s.Routes)
	}
	if got := s.Requests(func(k RouteKey) bool {
		return k.Route == "primary" && k.RouteFrom == ns+"/reviews" && k.Cluster == "outbound|9080||reviews-canary."+ns+".svc.cluster.local" && k.Code == 200
	}); got != 50 {
		t.Fatalf("%d canary requests by istiod's route %q from %s/reviews, want 50\n%+v", got, "primary", ns, s.Routes)
	}

	// Shift to 50/50 and make the canary fail half its requests.
	vs.Spec.Http[0].Route[0].Weight, vs.Spec.Http[0].Route[1].Weight = 50, 50
	if err := env.Client.Update(ctx, vs); err != nil {
		t.Fatal(err)
	}
	dep := &appsv1.Deployment{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reviews"}, dep); err != nil {
		t.Fatal(err)
	}
	dep.Spec.Template.Annotations = map[string]string{AnnotationErrorRate: "0.5"}
	if err := env.Client.Update(ctx, dep); err != nil {
		t.Fatal(err)
	}
	// istiod pushes the new route, and the new Pod's endpoint once the rollout is done.
	waitForIstiod(t, sim, ns, weightsAndEndpoints(ns, "reviews", "", "reviews-primary", 50))
	waitForIstiod(t, sim, ns, weightsAndEndpoints(ns, "reviews", AnnotationErrorRate, "reviews-canary", 50))
	before := sim.Stats()
	if err := sim.Tick(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s = sim.Stats()
	if c := s.Requests(toWorkload("reviews")) - before.Requests(toWorkload("reviews")); c != 250 {
		t.Fatalf("canary %d after the shift, want 250", c)
	}
	canaryErrors := func(k RouteKey) bool { return k.Workload == "reviews" && k.Code == 500 }
	if e := s.Requests(canaryErrors) - before.Requests(canaryErrors); e != 125 {
		t.Fatalf("canary errors %d, want 125", e)
	}

	// The same, as Prometheus would scrape it.
	resp, err := http.Get("http://" + sim.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`destination_service="reviews-canary.` + ns + `.svc.cluster.local"`,
		`destination_workload="reviews"`,
		`destination_workload_namespace="` + ns + `"`,
		`reporter="destination"`,
		`response_code="500"`,
		`istio_request_duration_milliseconds_bucket{`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestIstiodMergesVirtualServicesOfAGateway is a configuration istiod resolves
// differently from a naive reading of the VirtualServices: two VirtualServices for one
// host on one gateway. Read alone, the older one (routing /api to the canary, nothing
// else) would leave a request for / without a route, a 404; istiod merges the routes of
// both, in creation order, and the newer one's catch-all sends it to the primary.
func TestIstiodMergesVirtualServicesOfAGateway(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	ctx := t.Context()
	createReviews(t, ns, 100, 0)
	gw := &networkingv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "public"}}
	gw.Spec.Selector = map[string]string{"istio": "ingressgateway"}
	gw.Spec.Servers = []*apinetworkingv1.Server{{
		Port:  &apinetworkingv1.Port{Number: 8080, Name: "http", Protocol: "HTTP"},
		Hosts: []string{"reviews.example.com"},
	}}
	if err := env.Client.Create(ctx, gw); err != nil {
		t.Fatal(err)
	}
	api := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"}}
	api.Spec.Hosts, api.Spec.Gateways = []string{"reviews.example.com"}, []string{"public"}
	api.Spec.Http = []*apinetworkingv1.HTTPRoute{{
		Name:  "api",
		Match: []*apinetworkingv1.HTTPMatchRequest{{Uri: &apinetworkingv1.StringMatch{MatchType: &apinetworkingv1.StringMatch_Prefix{Prefix: "/api"}}}},
		Route: []*apinetworkingv1.HTTPRouteDestination{{Destination: &apinetworkingv1.Destination{Host: "reviews-canary"}}},
	}}
	if err := env.Client.Create(ctx, api); err != nil {
		t.Fatal(err)
	}
	// Created within the same second, the two are ordered by name (as istiod orders
	// them, and the simulator's streams): api, then rest.
	rest := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rest"}}
	rest.Spec.Hosts, rest.Spec.Gateways = []string{"reviews.example.com"}, []string{"public"}
	rest.Spec.Http = []*apinetworkingv1.HTTPRoute{{
		Name:  "rest",
		Route: []*apinetworkingv1.HTTPRouteDestination{{Destination: &apinetworkingv1.Destination{Host: "reviews-primary"}}},
	}}
	if err := env.Client.Create(ctx, rest); err != nil {
		t.Fatal(err)
	}

	sim := startSim(t, Options{TickInterval: -1, Namespaces: []string{ns}})
	waitForProxy(t, sim, "router", ns, func(w *World, cfg *envoyConfig) error {
		for _, names := range cfg.httpRouteNames() {
			for _, name := range names {
				if vh := virtualHost(cfg.Routes[name], "reviews.example.com"); vh != nil && len(vh.Routes) == 2 {
					eps, _ := cfg.clusterEndpoints("outbound|9080||reviews-primary." + ns + ".svc.cluster.local")
					if len(eps) == 1 {
						return nil
					}
					return fmt.Errorf("the primary's endpoints: %v", eps)
				}
			}
		}
		return fmt.Errorf("no virtual host for reviews.example.com with both VirtualServices' routes: listeners %v", cfg.httpRouteNames())
	})
	before := sim.Stats()
	if err := sim.Tick(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s := sim.Stats()
	fromRest := func(k RouteKey) bool {
		return k.Host == "reviews.example.com" && k.Route == "rest" && k.RouteFrom == ns+"/rest" && k.Workload == "reviews-primary" && k.Code == 200
	}
	if got := s.Requests(fromRest) - before.Requests(fromRest); got != 500 {
		t.Fatalf("%d of 500 gateway requests for / answered by the primary through %s/rest, want all\n%+v", got, ns, s.Routes)
	}
	// The stream is named after the older VirtualService, which the simulator found
	// first; istiod's route says which one routed it.
	if got := s.Requests(func(k RouteKey) bool { return k.VirtualService == "api" && k.RouteFrom == ns+"/rest" }); got < 500 {
		t.Fatalf("%d requests of the stream of %s/api routed by %s/rest, want 500", got, ns, ns)
	}
}

// TestIstiodHonoursExportTo is another: a VirtualService exported only to its own
// namespace routes reviews to the canary, but a client in another namespace is not
// given it. Read naively, its requests would reach the canary; istiod's configuration
// for that client's sidecar has only the default route of the Service reviews, whose
// pods are the primary's.
func TestIstiodHonoursExportTo(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	clientNS := env.CreateNamespace(t)
	ctx := t.Context()
	vs := createReviews(t, ns, 0, 100)
	vs.Spec.ExportTo = []string{"."}
	if err := env.Client.Update(ctx, vs); err != nil {
		t.Fatal(err)
	}
	sim := startSim(t, Options{TickInterval: -1, Namespaces: []string{ns, clientNS}, SourceNamespace: clientNS})
	host := "reviews." + ns + ".svc.cluster.local"
	waitForIstiod(t, sim, clientNS, func(w *World, cfg *envoyConfig) error {
		vh := virtualHost(cfg.Routes["9080"], host)
		if vh == nil || len(vh.Routes) != 1 {
			return fmt.Errorf("no virtual host for %s with one route", host)
		}
		eps, _ := cfg.clusterEndpoints("outbound|9080||" + host)
		if len(eps) != 1 {
			return fmt.Errorf("endpoints of reviews: %v", eps)
		}
		if _, ok := w.at(eps[0].IP); !ok {
			return fmt.Errorf("no running Pod has the endpoint %s", eps[0].IP)
		}
		return nil
	})
	if err := sim.Tick(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s := sim.Stats()
	if got := s.Requests(func(k RouteKey) bool {
		return k.Host == "reviews" && k.RouteFrom == "" && k.Cluster == "outbound|9080||"+host && k.Workload == "reviews-primary" && k.Code == 200
	}); got != 500 {
		t.Fatalf("%d of 500 requests from %s by istiod's default route to the primary, want all\n%+v", got, clientNS, s.Routes)
	}
	if got := s.Requests(toWorkload("reviews")); got != 0 {
		t.Fatalf("%d requests reached the canary through a VirtualService not exported to %s", got, clientNS)
	}
}

// TestIstiodFaultAndMissingSubset reads a fault and a route to a subset no
// DestinationRule defines as istiod sends them: the fault filter's per-route
// configuration aborts a fifth of the requests with 418, and istiod still routes a tenth
// to the subset's cluster, which it does not send: those get 503 NC from the client's
// own proxy.
func TestIstiodFaultAndMissingSubset(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	ctx := t.Context()
	vs := createReviews(t, ns, 90, 10)
	env.ExpectIstioFindings(t, ns, "IST0101") // the undefined subset, on purpose
	vs.Spec.Http[0].Route[1].Destination.Subset = "v9"
	vs.Spec.Http[0].Fault = &apinetworkingv1.HTTPFaultInjection{Abort: &apinetworkingv1.HTTPFaultInjection_Abort{
		ErrorType:  &apinetworkingv1.HTTPFaultInjection_Abort_HttpStatus{HttpStatus: 418},
		Percentage: &apinetworkingv1.Percent{Value: 20},
	}}
	if err := env.Client.Update(ctx, vs); err != nil {
		t.Fatal(err)
	}
	sim := startSim(t, Options{TickInterval: -1, Namespaces: []string{ns}})
	subset := "outbound|9080|v9|reviews-canary." + ns + ".svc.cluster.local"
	waitForIstiod(t, sim, ns, func(w *World, cfg *envoyConfig) error {
		vh := virtualHost(cfg.Routes["9080"], "reviews")
		if vh == nil || len(vh.Routes) != 1 || faultOf(vh.Routes[0], vh) == nil {
			return fmt.Errorf("no faulty route for reviews yet")
		}
		if _, ok := cfg.Clusters[subset]; ok {
			return fmt.Errorf("istiod sent the cluster of an undefined subset")
		}
		if eps, _ := cfg.clusterEndpoints("outbound|9080||reviews-primary." + ns + ".svc.cluster.local"); len(eps) != 1 {
			return fmt.Errorf("the primary's endpoints: %v", eps)
		}
		return nil
	})
	if err := sim.Tick(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s := sim.Stats()
	if got := s.Requests(func(k RouteKey) bool { return k.Code == 418 && k.Flags == "FI" && k.Workload == "" }); got != 100 {
		t.Errorf("%d of 500 requests aborted with 418, want 100\n%+v", got, s.Routes)
	}
	toSubset := func(k RouteKey) bool { return k.Cluster == subset && k.Subset == "v9" }
	notInjected := func(k RouteKey) bool { return toSubset(k) && k.Flags != "FI" }
	if got := s.Requests(toSubset); got != 50 {
		t.Errorf("%d of 500 requests routed to subset v9, want 50", got)
	}
	if all, nc := s.Requests(notInjected), s.Requests(func(k RouteKey) bool { return notInjected(k) && k.Code == 503 && k.Flags == "NC" }); nc != all || nc == 0 {
		t.Errorf("%d of the %d requests to the missing subset got 503 NC, want all", nc, all)
	}
	if got := s.Requests(toWorkload("reviews")); got != 0 {
		t.Errorf("%d requests reached the canary", got)
	}
}

// TestGatewayAPIIngress routes ingress traffic through a Gateway API Gateway of class
// istio: istiod deploys its proxy (a Deployment and Service public-istio, whose pods kwok
// runs; the test plays the load balancer that gives the Service its address), and the
// simulator connects as a pod of that Deployment, labelled as istiod labels them. An HTTPRoute with the Gateway as parent splits reviews.example.com 70/30;
// istiod translates it into the gateway's listener on port 80, and the split holds at
// the ingress, then follows an edit of the weights.
func TestGatewayAPIIngress(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	ctx := t.Context()
	createReviews(t, ns, 100, 0)
	hostname := gwapiv1.Hostname("*.example.com")
	gw := &gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "public"}}
	gw.Spec.GatewayClassName = "istio"
	gw.Spec.Listeners = []gwapiv1.Listener{{Name: "http", Port: 80, Protocol: gwapiv1.HTTPProtocolType, Hostname: &hostname}}
	if err := env.Client.Create(ctx, gw); err != nil {
		t.Fatal(err)
	}
	backend := func(name string, weight int32) gwapiv1.HTTPBackendRef {
		return gwapiv1.HTTPBackendRef{BackendRef: gwapiv1.BackendRef{
			BackendObjectReference: gwapiv1.BackendObjectReference{Name: gwapiv1.ObjectName(name), Port: ptr.To(gwapiv1.PortNumber(9080))},
			Weight:                 ptr.To(weight),
		}}
	}
	hr := &gwapiv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews-ingress"}}
	hr.Spec.ParentRefs = []gwapiv1.ParentReference{{Name: "public"}}
	hr.Spec.Hostnames = []gwapiv1.Hostname{"reviews.example.com"}
	hr.Spec.Rules = []gwapiv1.HTTPRouteRule{{BackendRefs: []gwapiv1.HTTPBackendRef{backend("reviews-primary", 70), backend("reviews-canary", 30)}}}
	if err := env.Client.Create(ctx, hr); err != nil {
		t.Fatal(err)
	}

	// The cluster's load balancer gives istiod's Service an address: Programmed.
	if gw = env.ProvisionGatewayAddress(t, ns, "public"); len(gw.Status.Addresses) == 0 || gw.Status.Addresses[0].Value != testenv.LoadBalancerIP {
		t.Errorf("the Gateway's addresses %+v, want the load balancer's %s", gw.Status.Addresses, testenv.LoadBalancerIP)
	}

	sim := startSim(t, Options{TickInterval: -1, Namespaces: []string{ns}, IngressShare: 0.5})
	waitForProxy(t, sim, "router", ns, ingressSplit(ns, "reviews-primary", 70, "reviews-canary", 30))
	// The proxy is a pod of istiod's deployment for the Gateway.
	dep := &appsv1.Deployment{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "public-istio"}, dep); err != nil {
		t.Fatalf("istiod's deployment of the Gateway: %v", err)
	}
	if got := dep.Spec.Template.Labels["gateway.networking.k8s.io/gateway-name"]; got != "public" {
		t.Errorf("istiod labels the gateway pods gateway-name=%q, want public", got)
	}

	atIngress := func(workload string) func(RouteKey) bool {
		return func(k RouteKey) bool {
			return k.Host == "reviews.example.com" && k.VirtualService == "reviews-ingress" && k.Workload == workload && k.Code == 200
		}
	}
	if err := sim.Tick(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	s := sim.Stats()
	if p, c := s.Requests(atIngress("reviews-primary")), s.Requests(atIngress("reviews")); p != 350 || c != 150 {
		t.Fatalf("ingress: primary %d, canary %d; want 350 and 150 (half of 50/s for 20s, split 70/30)\n%+v", p, c, s.Routes)
	}
	if n := s.Requests(func(k RouteKey) bool { return k.Host == "reviews" }); n != 1000 {
		t.Errorf("%d mesh requests for reviews, want 1000: the ingress share is the ingress's alone", n)
	}

	// Shift to 20/80: istiod pushes the gateway's new route, and the ingress follows.
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(hr), hr); err != nil {
		t.Fatal(err)
	}
	hr.Spec.Rules[0].BackendRefs = []gwapiv1.HTTPBackendRef{backend("reviews-primary", 20), backend("reviews-canary", 80)}
	if err := env.Client.Update(ctx, hr); err != nil {
		t.Fatal(err)
	}
	waitForProxy(t, sim, "router", ns, ingressSplit(ns, "reviews-primary", 20, "reviews-canary", 80))
	before := sim.Stats()
	if err := sim.Tick(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	s = sim.Stats()
	if p, c := s.Requests(atIngress("reviews-primary"))-before.Requests(atIngress("reviews-primary")),
		s.Requests(atIngress("reviews"))-before.Requests(atIngress("reviews")); p != 100 || c != 400 {
		t.Fatalf("ingress after the shift: primary %d, canary %d; want 100 and 400\n%+v", p, c, s.Routes)
	}

	// Reported as the gateway's workload, for Prometheus.
	resp, err := http.Get("http://" + sim.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`source_workload="public-istio"`, `source_canonical_service="public-istio"`, `destination_service="reviews-canary.` + ns + `.svc.cluster.local"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// ingressSplit accepts a gateway configuration whose virtual host for reviews.example.com
// splits between the clusters of Services of ns by the given weights, each with one
// endpoint of a running Pod.
func ingressSplit(ns string, servicesAndWeights ...any) func(w *World, cfg *envoyConfig) error {
	return func(w *World, cfg *envoyConfig) error {
		for _, names := range cfg.httpRouteNames() {
			for _, name := range names {
				vh := virtualHost(cfg.Routes[name], "reviews.example.com")
				if vh == nil || len(vh.Routes) == 0 {
					continue
				}
				got := map[string]uint32{}
				for _, c := range vh.Routes[0].GetRoute().GetWeightedClusters().GetClusters() {
					got[c.GetName()] = c.GetWeight().GetValue()
				}
				for i := 0; i < len(servicesAndWeights); i += 2 {
					cluster := "outbound|9080||" + servicesAndWeights[i].(string) + "." + ns + ".svc.cluster.local"
					if want := uint32(servicesAndWeights[i+1].(int)); got[cluster] != want {
						return fmt.Errorf("the gateway's route splits %v, want %s at %d", got, cluster, want)
					}
					eps, _ := cfg.clusterEndpoints(cluster)
					if len(eps) != 1 {
						return fmt.Errorf("%s has endpoints %v, want the one Pod", cluster, eps)
					}
					if _, ok := w.at(eps[0].IP); !ok {
						return fmt.Errorf("%s: no running Pod has the endpoint %s", cluster, eps[0].IP)
					}
				}
				return nil
			}
		}
		return fmt.Errorf("no virtual host for reviews.example.com: listeners %v", cfg.httpRouteNames())
	}
}
