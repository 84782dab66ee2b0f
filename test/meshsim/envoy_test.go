package meshsim

import (
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Hand-built Envoy configuration, shaped as istiod sends it, for the interpreter's unit
// tests.

// cluster is an Istio outbound cluster name for a Service of namespace shop on 9080.
func cluster(svc, subset string) string {
	return "outbound|9080|" + subset + "|" + svc + ".shop.svc.cluster.local"
}

// routeTo is a route taking every request (prefix "/") to one cluster.
func routeTo(clusterName string) *routev3.Route {
	return &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: clusterName}}},
	}
}

// split is a route taking every request to clusters by weight: "name", weight, ...
func split(clustersAndWeights ...any) *routev3.Route {
	wc := &routev3.WeightedCluster{}
	for i := 0; i < len(clustersAndWeights); i += 2 {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
			Name: clustersAndWeights[i].(string), Weight: wrapperspb.UInt32(uint32(clustersAndWeights[i+1].(int))),
		})
	}
	return &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}}},
	}
}

func named(r *routev3.Route, name, vsNamespace, vsName string) *routev3.Route {
	r.Name = name
	if vsName != "" {
		md, _ := structpb.NewStruct(map[string]any{"config": "/apis/networking.istio.io/v1/namespaces/" + vsNamespace + "/virtual-service/" + vsName})
		r.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": md}}
	}
	return r
}

func action(r *routev3.Route) *routev3.RouteAction { return r.GetRoute() }

func headerExact(name, value string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value}},
	}}
}

func headerRegex(name, re string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}},
	}}
}

func percent(p uint32) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: p * 10000, Denominator: typev3.FractionalPercent_MILLION}
}

func withFault(r *routev3.Route, f *faultv3.HTTPFault) *routev3.Route {
	a, err := anypb.New(f)
	if err != nil {
		panic(err)
	}
	r.TypedPerFilterConfig = map[string]*anypb.Any{faultName: a}
	return r
}

func abortFault(status, pct uint32) *faultv3.HTTPFault {
	return &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: status}, Percentage: percent(pct)}}
}

func delayFault(d time.Duration, pct uint32) *faultv3.HTTPFault {
	return &faultv3.HTTPFault{Delay: &faultcommonv3.FaultDelay{
		FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(d)}, Percentage: percent(pct),
	}}
}

// reviewsVirtualHost is the virtual host istiod builds for reviews.shop on 9080, seen
// from a sidecar in shop.
func reviewsVirtualHost(routes ...*routev3.Route) *routev3.VirtualHost {
	return &routev3.VirtualHost{
		Name:    "reviews.shop.svc.cluster.local:9080",
		Domains: []string{"reviews.shop.svc.cluster.local", "reviews", "reviews.shop.svc", "reviews.shop", "10.96.0.10"},
		Routes:  routes,
	}
}

// edsCluster and its endpoints: the IPs, each of weight 1.
func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{ServiceName: name},
	}
}

func assignment(name string, ips ...string) *endpointv3.ClusterLoadAssignment {
	loc := &endpointv3.LocalityLbEndpoints{}
	for _, ip := range ips {
		loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{
			HealthStatus: corev3.HealthStatus_HEALTHY,
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 9080},
				}}},
			}},
		})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{loc}}
}

// config is a proxy's configuration: route configurations by name, and clusters with
// their endpoint IPs.
func config(routes []*routev3.RouteConfiguration, endpoints map[string][]string) *envoyConfig {
	c := &envoyConfig{
		Listeners: map[string]*listenerv3.Listener{}, Routes: map[string]*routev3.RouteConfiguration{},
		Clusters: map[string]*clusterv3.Cluster{}, Endpoints: map[string]*endpointv3.ClusterLoadAssignment{},
	}
	for _, rc := range routes {
		c.Routes[rc.Name] = rc
	}
	for name, ips := range endpoints {
		c.Clusters[name] = edsCluster(name)
		c.Endpoints[name] = assignment(name, ips...)
	}
	return c
}

// httpListener is a listener on port whose HTTP connection manager names a route
// configuration.
func httpListener(port uint32, routeName string) *listenerv3.Listener {
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{
		Rds: &hcmv3.Rds{RouteConfigName: routeName},
	}})
	if err != nil {
		panic(err)
	}
	return &listenerv3.Listener{
		Name: "0.0.0.0_" + strconv.Itoa(int(port)),
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
		}}}},
	}
}

// fixedProxies give every proxy the same configuration and remember who asked for what.
type fixedProxies struct {
	cfg   *envoyConfig
	asked map[string][]string // node id -> route configurations asked for
	nodes map[string]node
}

func (f *fixedProxies) config(n node, routes []string) *envoyConfig {
	if f.asked == nil {
		f.asked, f.nodes = map[string][]string{}, map[string]node{}
	}
	f.nodes[n.ID()] = n
	for _, r := range routes {
		if !contains(f.asked[n.ID()], r) {
			f.asked[n.ID()] = append(f.asked[n.ID()], r)
		}
	}
	return f.cfg
}

// The cluster objects behind the endpoints: Deployments, their ReplicaSets and Pods
// with the IPs EDS names.

func service(ns, name string, port int32) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: port}}},
	}
}

// deployment adds a Deployment to w with one running Pod per IP.
func (w *World) deployment(ns, name string, labels, annotations map[string]string, ips ...string) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(len(ips))),
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations}},
		},
	}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: name + "-5d4f8", OwnerReferences: []metav1.OwnerReference{{Kind: "Deployment", Name: name, Controller: ptr.To(true)}},
	}}
	w.Deployments = append(w.Deployments, d)
	w.ReplicaSets = append(w.ReplicaSets, rs)
	for i, ip := range ips {
		w.Pods = append(w.Pods, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: ns, Name: rs.Name + "-" + strconv.Itoa(i), Labels: labels,
				OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: rs.Name, Controller: ptr.To(true)}},
			},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip},
		})
	}
	return d
}

func virtualService(ns, name string, hosts ...string) *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	vs.Spec.Hosts = hosts
	return vs
}

// reviewsWorld is what canopy generates for a Canary of reviews in shop: the apex
// Service and VirtualService, a primary Deployment with two pods and a canary
// Deployment with one, each behind its own Service.
func reviewsWorld(canaryAnnotations map[string]string) *World {
	w := &World{
		VirtualServices: []*networkingv1.VirtualService{virtualService("shop", "reviews", "reviews")},
		Services:        []*corev1.Service{service("shop", "reviews", 9080), service("shop", "reviews-primary", 9080), service("shop", "reviews-canary", 9080)},
	}
	w.deployment("shop", "reviews-primary", map[string]string{"app": "reviews-primary", "version": "v1"}, nil, "10.0.0.2", "10.0.0.3")
	w.deployment("shop", "reviews", map[string]string{"app": "reviews", "version": "v2"}, canaryAnnotations, "10.0.0.4")
	return w
}

// reviewsConfig is a sidecar's configuration for reviewsWorld with the given routes.
func reviewsConfig(routes ...*routev3.Route) *envoyConfig {
	return config([]*routev3.RouteConfiguration{{Name: "9080", VirtualHosts: []*routev3.VirtualHost{reviewsVirtualHost(routes...)}}},
		map[string][]string{
			cluster("reviews-primary", ""): {"10.0.0.2", "10.0.0.3"},
			cluster("reviews-canary", ""):  {"10.0.0.4"},
			cluster("reviews", ""):         {"10.0.0.2", "10.0.0.3"},
		})
}

var _ = strings.ToLower
