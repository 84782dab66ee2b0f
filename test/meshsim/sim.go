package meshsim

import (
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Options configure a simulator.
type Options struct {
	// RequestsPerSecond is the synthetic traffic sent to every VirtualService host
	// (default 50).
	RequestsPerSecond float64
	// IngressShare is the share of RequestsPerSecond that each ingress host of a Gateway
	// API Gateway (of class istio, an HTTPRoute's parent) gets through that Gateway's
	// proxy (default 1, as much as any host; negative sends none).
	IngressShare float64
	// TickInterval is how often Start's simulator generates traffic (default 1s); each
	// tick generates the traffic of the wall time elapsed since the last one. Negative
	// turns the background ticker off: the caller then drives it with Tick.
	TickInterval time.Duration
	// Headers are carried by HeaderFraction of the synthetic requests, e.g.
	// {"x-canary": "insider"} or {"cookie": "user=test"}, to exercise header matches.
	Headers map[string]string
	// HeaderFraction is the fraction of requests carrying Headers (default 0.5 when
	// Headers are set).
	HeaderFraction float64
	// Method and Path of the synthetic requests (default GET /); Path may carry a query
	// string.
	Method, Path string
	// SourceWorkload names the synthetic client (default "meshsim-client"): its sidecar
	// connects to istiod with the label app=SourceWorkload, in SourceNamespace (by
	// default the VirtualService's), and it names the source_* labels of the metrics.
	SourceWorkload, SourceNamespace string
	// XDSAddress is istiod's plaintext xDS address ("127.0.0.1:15010"): every source of
	// traffic connects there as its own proxy, and requests are routed by what istiod
	// sends it. Required by Start.
	XDSAddress string
	// Namespaces restricts what Start watches (default: all): VirtualServices (whose
	// hosts get traffic), Services, and the Pods that answer at endpoint addresses (an
	// endpoint in another namespace answers 503 UF). Gateways are watched everywhere.
	Namespaces []string
	// Addr is where /metrics is served (default 127.0.0.1:0, a free port).
	Addr string
	// InboundSidecars connects the sidecar of every running Pod to istiod too, and
	// applies what its inbound HTTP filters do before the workload answers: the local rate
	// limit (token buckets on the simulated clock, refilled once a tick, so that all of a
	// tick's requests arrive at its end; descriptors of header_value_match and generic_key
	// actions; per-route configuration). A request over the limit is answered by the
	// destination's sidecar with the filter's status (429 by default), which the
	// destination reports with response flag RL. Off by default: one more proxy per Pod.
	InboundSidecars bool
	// Logger reports annotations the simulator cannot read; discarded when unset.
	Logger logr.Logger
	// Authorization evaluates the dry-run AuthorizationPolicies (istio.io/dry-run) of the
	// workloads that answer, as their sidecars' RBAC shadow rules: the simulator then
	// connects to istiod as each answering Pod's sidecar too, and labels the requests the
	// destination reports with dry_run_result, request_method and request_path (see
	// rbac.go). Off, no such label is set.
	Authorization bool
	// Plaintext makes the synthetic client's sidecar send plaintext (as with a
	// DestinationRule of tls.mode DISABLE): the destination then reports
	// connection_security_policy "none" and source_principal "unknown", and no principal
	// is authenticated for authorization.
	Plaintext bool
}

func (o Options) withDefaults() Options {
	if o.RequestsPerSecond <= 0 {
		o.RequestsPerSecond = 50
	}
	if o.TickInterval == 0 {
		o.TickInterval = time.Second
	}
	switch {
	case o.IngressShare == 0:
		o.IngressShare = 1
	case o.IngressShare < 0:
		o.IngressShare = 0
	}
	if len(o.Headers) > 0 && o.HeaderFraction <= 0 {
		o.HeaderFraction = 0.5
	}
	o.HeaderFraction = min(o.HeaderFraction, 1)
	if o.Method == "" {
		o.Method = "GET"
	}
	if o.Path == "" {
		o.Path = "/"
	}
	if o.SourceWorkload == "" {
		o.SourceWorkload = "meshsim-client"
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	return o
}

// RouteKey identifies a group of requests that took the same way.
type RouteKey struct {
	// Namespace, VirtualService and Host are the stream the requests were sent to: a
	// host of a VirtualService (the oldest one that names it, for one gateway), as the
	// simulator found it in the apiserver. Whether that VirtualService routed them is
	// RouteFrom's to say.
	Namespace, VirtualService, Host string
	// Route is the name of the Envoy route istiod sent that took the requests (Istio
	// names it after the HTTP route, plus "."+the match's name when it has one; empty
	// when unnamed); empty, with Code 404 and Flags "NR", when none matched.
	Route string
	// RouteFrom is the VirtualService istiod built that route from, "namespace/name"
	// (read from the route's istio.config metadata); empty for istiod's own default
	// routes.
	RouteFrom string
	// Tagged requests carried Options.Headers.
	Tagged bool
	// Mirror requests were copies made by a mirror policy; their answers were discarded.
	Mirror bool
	// Cluster is the Envoy cluster the route chose, e.g.
	// "outbound|9080|v1|reviews.shop.svc.cluster.local"; DestinationHost and Subset are
	// read from its name (the host fully qualified).
	Cluster, DestinationHost, Subset string
	// WorkloadNamespace and Workload answered (the Deployment owning the Pod at the
	// endpoint address; the Pod's name when no Deployment owns it); empty when nothing
	// did (no route, no cluster, no endpoints, an injected fault).
	WorkloadNamespace, Workload string
	// Code is the response code the client saw (for a mirror: the mirror's answer).
	Code int
	// Flags are Envoy's response flags: NR (no route), NC (no cluster), UH (no healthy
	// upstream), UF (the endpoint is no running Pod), FI and DI (fault injection), UT
	// (timeout), URX (retries exhausted); "-" for none.
	Flags string
}

// RouteStat counts the requests of one RouteKey since the simulator started.
type RouteStat struct {
	RouteKey
	Requests int64
}

// Stats is what the simulator has sent so far.
type Stats struct {
	// Ticks counts the traffic generations.
	Ticks int64
	// Routes are sorted by their key.
	Routes []RouteStat
}

// Requests sums the requests whose key satisfies match (all when match is nil).
func (s Stats) Requests(match func(RouteKey) bool) int64 {
	var n int64
	for _, r := range s.Routes {
		if match == nil || match(r.RouteKey) {
			n += r.Requests
		}
	}
	return n
}

// engine turns a World and a span of time into requests. It is deterministic: counts,
// splits, errors and mirrors follow the configured proportions exactly over time (each
// decision carries its remainder to the next request), and latencies walk the
// distribution's quantiles in a low-discrepancy sequence.
type engine struct {
	opts    Options
	metrics *istioMetrics

	mu    sync.Mutex
	acc   map[string]float64 // fractional accumulators: request counts and percentages
	wrr   map[string][]int64 // smooth weighted round robin state
	phase map[string]float64 // latency quantile sequence per workload
	// touched is the tick each piece of state was last used in. State unused for
	// forgetAfter ticks is dropped; sooner would lose the remainders of a workload that
	// gets a request only every few ticks (a 1% canary), and with them its error rate.
	touched map[string]int64
	warned  map[string]bool
	stats   map[RouteKey]int64
	ticks   int64
	// clock is the simulated time, the sum of the ticks' durations; buckets are the
	// inbound sidecars' local rate limit token buckets on it.
	clock   time.Duration
	buckets map[string]*bucket
}

func newEngine(opts Options, reg prometheus.Registerer) *engine {
	return &engine{
		opts:    opts.withDefaults(),
		metrics: newIstioMetrics(reg),
		acc:     map[string]float64{},
		wrr:     map[string][]int64{},
		phase:   map[string]float64{},
		touched: map[string]int64{},
		warned:  map[string]bool{},
		stats:   map[RouteKey]int64{},
		buckets: map[string]*bucket{},
	}
}

const forgetAfter = 600

// batch gathers a tick's observations, so each label set is written once.
type batch map[observation][]float64

// proxies gives the configuration istiod has sent each simulated proxy.
type proxies interface {
	// config is what istiod has sent n so far, having been asked (also) for the named
	// route configurations; nil while the proxy has none yet.
	config(n node, routes []string) *envoyConfig
}

// subscribe asks each proxy that sends a stream for the configuration the stream needs.
func (e *engine) subscribe(w *World, px proxies) {
	for _, st := range w.streams() {
		if src, ok := e.source(w, st); ok {
			e.routeConfig(w, px, st, src)
		}
	}
	if e.opts.InboundSidecars {
		for _, p := range w.Pods {
			if wl, ok := w.at(p.Status.PodIP); ok && wl.Pod == p {
				px.config(podNode(p), nil)
			}
		}
	}
}

// source is where a stream's requests leave from: a proxy and how metrics name it.
type source struct {
	node node
	peer peer
}

// simulate sends d's worth of traffic through the world, each request routed by the
// configuration istiod sent its source's proxy.
func (e *engine) simulate(w *World, px proxies, d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := &tick{w: w, px: px, b: batch{}, behaviors: map[string]Behavior{}}
	// The tick's requests all arrive at its end: token buckets are refilled once a tick.
	e.clock += d
	for _, st := range w.streams() {
		src, ok := e.source(w, st)
		if !ok {
			continue // no such gateway: nobody sends these requests
		}
		cfg, rc, authority := e.routeConfig(w, px, st, src)
		if rc == nil {
			continue // the proxy has no configuration yet: not ready, sends nothing
		}
		t.cfg = cfg
		skey := src.node.ID() + "|" + authority
		rate := e.opts.RequestsPerSecond
		if st.KubeGateway != nil {
			rate *= e.opts.IngressShare
		}
		n := e.count(skey, rate*d.Seconds())
		for range n {
			tagged := len(e.opts.Headers) > 0 && e.bernoulli(skey+"|tagged", e.opts.HeaderFraction)
			key := RouteKey{Namespace: st.VS.Namespace, VirtualService: st.VS.Name, Host: st.Host, Tagged: tagged}
			e.send(t, rc, src, skey+"|"+strconv.FormatBool(tagged), key, e.request(authority, tagged))
		}
	}
	for o, latencies := range t.b {
		e.metrics.record(o, latencies)
	}
	e.ticks++
	for k, last := range e.touched {
		if e.ticks-last > forgetAfter {
			delete(e.touched, k)
			delete(e.acc, k)
			delete(e.phase, k)
			delete(e.wrr, k)
		}
	}
}

// tick is one traffic generation's view of the world and its observations.
type tick struct {
	w         *World
	px        proxies
	cfg       *envoyConfig
	b         batch
	behaviors map[string]Behavior
}

func (e *engine) request(authority string, tagged bool) request {
	headers := map[string]string{}
	if tagged {
		for k, v := range e.opts.Headers {
			headers[strings.ToLower(k)] = v
		}
	}
	return request{Authority: authority, Scheme: "http", Method: e.opts.Method, Path: e.opts.Path, Headers: headers}
}

// source is the proxy a stream's requests leave by: the client's sidecar in the source
// namespace, or for a VirtualService bound to a gateway, that gateway's proxy (a router
// labelled as its Gateway selects, in the Gateway's namespace).
func (e *engine) source(w *World, st stream) (source, bool) {
	if st.KubeGateway != nil {
		return kubeGatewaySource(w, st.KubeGateway)
	}
	if st.Gateway != "mesh" {
		gw := w.gateway(st.Gateway, st.VS.Namespace)
		if gw == nil {
			return source{}, false
		}
		name := gw.Spec.Selector["app"]
		if name == "" {
			name = "istio-ingressgateway"
		}
		sa := name + "-service-account"
		n := node{Type: "router", Namespace: gw.Namespace, Name: name + "-meshsim", Labels: gw.Spec.Selector, ServiceAccount: sa}
		n.IP = testNetIP(n.Namespace + "/" + n.Name)
		return source{node: n, peer: peer{
			Workload: name, Namespace: gw.Namespace, App: name, Version: "unknown",
			CanonicalService: name, CanonicalRevision: "latest",
			Principal: "spiffe://cluster.local/ns/" + gw.Namespace + "/sa/" + sa,
		}}, true
	}
	ns := e.opts.SourceNamespace
	if ns == "" {
		ns = st.VS.Namespace
	}
	name := e.opts.SourceWorkload
	n := node{Type: "sidecar", Namespace: ns, Name: name + "-meshsim", Labels: map[string]string{"app": name}}
	n.IP = testNetIP(n.Namespace + "/" + n.Name)
	return source{node: n, peer: peer{
		Workload: name, Namespace: ns, App: name, Version: "unknown",
		CanonicalService: name, CanonicalRevision: "latest",
		Principal: "spiffe://cluster.local/ns/" + ns + "/sa/default",
	}}, true
}

// kubeGatewaySource is the proxy of a Gateway API Gateway of class istio: a pod of the
// Deployment behind the Service istiod binds the Gateway to (see kubeGatewayService), as
// istiod's deployment controller makes it (labelled
// gateway.networking.k8s.io/gateway-name, the Service's selector) or the user deploys it
// for a manual one. istiod finds the Service from the proxy's namespace and labels, and
// sends it the Gateway's listeners. Without that Service no proxy runs the Gateway yet,
// and nobody sends its requests.
func kubeGatewaySource(w *World, gw *gwapiv1.Gateway) (source, bool) {
	svc := w.service(serviceRef{Namespace: gw.Namespace, Name: kubeGatewayService(gw)})
	if svc == nil || len(svc.Spec.Selector) == 0 {
		return source{}, false
	}
	name, labels, sa := svc.Name, svc.Spec.Selector, ""
	if d := w.deploymentBehind(svc); d != nil {
		name, labels, sa = d.Name, d.Spec.Template.Labels, d.Spec.Template.Spec.ServiceAccountName
	}
	n := node{Type: "router", Namespace: gw.Namespace, Name: name + "-meshsim", Labels: labels, ServiceAccount: sa}
	n.IP = testNetIP(n.Namespace + "/" + n.Name)
	return source{node: n, peer: workloadPeer(name, gw.Namespace, labels, sa)}, true
}

// testNetIP is a stable address in TEST-NET-1 (192.0.2.0/24, never routed) for a
// simulated proxy.
func testNetIP(key string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return "192.0.2." + strconv.Itoa(int(h.Sum32()%254)+1)
}

// routeConfig finds the route configuration a stream's requests meet, and the authority
// they carry. A sidecar's requests go to the Service's port, whose outbound HTTP
// listener names route configuration "PORT" (port 80, where istiod puts the
// VirtualServices of hosts that are no Service, for other hosts); a gateway's meet the
// route configurations of its listeners, the first (by port) with a virtual host for
// the authority.
func (e *engine) routeConfig(w *World, px proxies, st stream, src source) (*envoyConfig, *routev3.RouteConfiguration, string) {
	authority := strings.ToLower(st.Host)
	if src.node.Type == "router" {
		cfg := px.config(src.node, nil)
		if cfg == nil {
			return nil, nil, authority
		}
		byPort := cfg.httpRouteNames()
		var ports []uint32
		var names []string
		for p := range byPort {
			ports = append(ports, p)
		}
		sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
		for _, p := range ports {
			names = append(names, byPort[p]...)
		}
		if cfg = px.config(src.node, names); cfg == nil {
			return nil, nil, authority
		}
		var first *routev3.RouteConfiguration
		for _, name := range names {
			rc := cfg.Routes[name]
			if rc == nil {
				continue
			}
			if first == nil {
				first = rc
			}
			if virtualHost(rc, authority) != nil {
				return cfg, rc, authority
			}
		}
		if first == nil {
			first = &routev3.RouteConfiguration{} // no HTTP listener: every request is 404 NR
		}
		return cfg, first, authority
	}
	port := 80
	if ref, ok := resolveHost(st.Host, st.VS.Namespace); ok {
		if svc := w.service(ref); svc != nil {
			if p := httpPort(svc); p > 0 {
				port = p
			}
			if ref.Namespace != src.node.Namespace {
				authority = ref.FQDN() // a short name is another namespace's Service
			}
		}
	}
	name := strconv.Itoa(port)
	cfg := px.config(src.node, []string{name})
	if cfg == nil {
		return nil, nil, authority
	}
	rc := cfg.Routes[name]
	if rc == nil {
		rc = &routev3.RouteConfiguration{Name: name}
	}
	return cfg, rc, authority
}

// send routes one request the way the source's proxy is configured to.
func (e *engine) send(t *tick, rc *routev3.RouteConfiguration, src source, skey string, key RouteKey, req request) {
	vh := virtualHost(rc, req.Authority)
	if vh == nil {
		e.answerLocally(t, key, src, 404, "NR", 0)
		return
	}
	rkey := skey + "|" + rc.GetName() + "|" + vh.GetName()
	r, idx := matchRoute(vh, req, func(i int, p float64) bool {
		return e.bernoulli(rkey+"|match"+strconv.Itoa(i), p)
	})
	if r == nil {
		e.answerLocally(t, key, src, 404, "NR", 0)
		return
	}
	key.Route, key.RouteFrom = r.GetName(), routeFrom(r)
	rkey += "|" + strconv.Itoa(idx)
	var action *routev3.RouteAction
	switch a := r.GetAction().(type) {
	case *routev3.Route_DirectResponse:
		e.answerLocally(t, key, src, int(a.DirectResponse.GetStatus()), "-", 0)
		return
	case *routev3.Route_Redirect:
		e.answerLocally(t, key, src, redirectCode(a.Redirect), "-", 0)
		return
	case *routev3.Route_Route:
		action = a.Route
	default:
		e.answerLocally(t, key, src, 404, "NR", 0)
		return
	}

	// The cluster is chosen with the route, before any filter runs.
	switch c := action.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		key.Cluster = c.Cluster
	case *routev3.RouteAction_WeightedClusters:
		cs := c.WeightedClusters.GetClusters()
		weights := make([]int64, len(cs))
		for i, cw := range cs {
			weights[i] = int64(cw.GetWeight().GetValue())
		}
		if i := e.pick(rkey, weights); i >= 0 {
			key.Cluster = cs[i].GetName()
		}
	}
	key.DestinationHost, key.Subset = clusterHost(key.Cluster)
	svc, _ := resolveHost(key.DestinationHost, "")

	// The fault filter comes before the router: a delay holds the request, an abort
	// answers it (and nothing is mirrored).
	var delay float64
	flags := []string{}
	if f := faultOf(r, vh); f != nil {
		if d := f.GetDelay(); d != nil && d.GetFixedDelay() != nil && e.bernoulli(rkey+"|delay", fractionOf(d.GetPercentage())) {
			delay = float64(d.GetFixedDelay().AsDuration()) / float64(time.Millisecond)
			flags = append(flags, "DI")
		}
		if a := f.GetAbort(); a != nil && a.GetHttpStatus() != 0 && e.bernoulli(rkey+"|abort", fractionOf(a.GetPercentage())) {
			key.Code, key.Flags = int(a.GetHttpStatus()), strings.Join(append(flags, "FI"), ",")
			e.stats[key]++
			o := observation{Reporter: "source", Source: src.peer, Destination: unknownPeer(), Service: svc, Code: key.Code, Flags: key.Flags}
			t.b[o] = append(t.b[o], delay)
			return
		}
	}

	// The router filter: an unknown cluster is answered at once, nothing mirrored.
	if _, ok := t.cfg.Clusters[key.Cluster]; !ok {
		flags = append(flags, "NC")
		e.answerLocally(t, key, src, clusterNotFoundCode(action), strings.Join(flags, ","), delay)
		return
	}

	for i, m := range action.GetRequestMirrorPolicies() {
		frac := 1.0
		if rf := m.GetRuntimeFraction(); rf != nil {
			frac = fractionOf(rf.GetDefaultValue())
		}
		if e.bernoulli(rkey+"|mirror"+strconv.Itoa(i), frac) {
			mk := key
			mk.Mirror, mk.Cluster = true, m.GetCluster()
			mk.DestinationHost, mk.Subset = clusterHost(mk.Cluster)
			e.upstream(t, src, mk, req, retryPolicy{}, 0, 0)
		}
	}

	timeout := 15 * time.Second // Envoy's default; istiod sets 0 (none) unless told
	if action.GetTimeout() != nil {
		timeout = action.GetTimeout().AsDuration()
	}
	if len(flags) > 0 {
		key.Flags = strings.Join(flags, ",")
	}
	e.upstream(t, src, key, req, retryOf(action, vh), timeout, delay)
}

// answerLocally is a request the source's proxy answered itself.
func (e *engine) answerLocally(t *tick, key RouteKey, src source, code int, flags string, latency float64) {
	key.Code, key.Flags = code, flags
	e.stats[key]++
	svc, _ := resolveHost(key.DestinationHost, "")
	o := observation{Reporter: "source", Source: src.peer, Destination: unknownPeer(), Service: svc, Code: code, Flags: flags}
	t.b[o] = append(t.b[o], latency)
}

// upstream sends a request (or a mirrored copy) to key.Cluster's endpoints, retrying as
// the policy says; each attempt is reported by the workload that answered it, the
// outcome by the source (never for a mirror).
func (e *engine) upstream(t *tick, src source, key RouteKey, req request, retry retryPolicy, timeout time.Duration, elapsed float64) {
	svc, _ := resolveHost(key.DestinationHost, "")
	flags := []string{}
	if key.Flags != "" {
		flags = strings.Split(key.Flags, ",")
	}
	done := func(code int, flag string, dst peer) {
		if flag != "" {
			flags = append(flags, flag)
		}
		key.Code, key.Flags = code, strings.Join(flags, ",")
		if key.Flags == "" {
			key.Flags = "-"
		}
		e.stats[key]++
		if !key.Mirror { // the source's proxy never sees the mirror's answer
			o := observation{Reporter: "source", Source: src.peer, Destination: dst, Service: svc, Code: code, Flags: key.Flags}
			t.b[o] = append(t.b[o], elapsed)
		}
	}
	eps, ok := t.cfg.clusterEndpoints(key.Cluster)
	switch {
	case !ok:
		done(503, "NC", unknownPeer())
		return
	case len(eps) == 0:
		done(503, "UH", unknownPeer())
		return
	}
	weights := make([]int64, len(eps))
	for i, ep := range eps {
		weights[i] = ep.Weight
	}
	pickKey := "ep|" + key.Cluster + "|" + fmt.Sprint(eps)
	for attempt := 0; ; attempt++ {
		ep := eps[e.pick(pickKey, weights)]
		wl, found := t.w.at(ep.IP)
		code, latency, flag, dst := 503, 0.0, "UF", unknownPeer()
		if found {
			key.WorkloadNamespace, key.Workload = wl.Pod.Namespace, wl.name()
			dst = wl.peer()
			if rl, limited := e.inbound(t, wl, ep, req); limited {
				// The destination's sidecar answers: the workload never sees the request.
				code, latency, flag = rl, 0, ""
				o := observation{Reporter: "destination", Source: src.peer, Destination: dst, Service: svc, Code: code, Flags: "RL", Plaintext: e.opts.Plaintext}
				t.b[o] = append(t.b[o], latency)
			} else {
				beh := e.behavior(t, wl)
				code = 200
				if e.bernoulli("error|"+key.WorkloadNamespace+"/"+key.Workload, beh.ErrorRate) {
					code = beh.ErrorCode
				}
				latency, flag = beh.Latency(e.nextPhase(key.WorkloadNamespace+"/"+key.Workload)), ""
				o := observation{Reporter: "destination", Source: src.peer, Destination: dst, Service: svc, Code: code, Flags: "-", Plaintext: e.opts.Plaintext}
				if e.opts.Authorization {
					if o.DryRun = e.dryRun(t, wl, ep, src, req); o.DryRun != "" {
						o.Method, o.Path = req.Method, urlPath(req.Path)
					}
				}
				t.b[o] = append(t.b[o], latency)
			}
		} else {
			key.WorkloadNamespace, key.Workload = "", ""
		}
		perTryTimedOut := retry.PerTryTimeout > 0 && latency > ms(retry.PerTryTimeout)
		if perTryTimedOut {
			code, latency, flag = 504, ms(retry.PerTryTimeout), "UT"
		}
		elapsed += latency
		if timeout > 0 && elapsed > ms(timeout) {
			elapsed = ms(timeout)
			done(504, "UT", dst)
			return
		}
		retriable := retry.retriable(code, perTryTimedOut) || (!found && retry.On["connect-failure"])
		if !retriable {
			done(code, flag, dst)
			return
		}
		if attempt >= retry.Retries {
			if flag == "" {
				flag = "URX"
			}
			done(code, flag, dst)
			return
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// behavior is how a workload answers, read once a tick from its Deployment's pod
// template (or its Pod, when no Deployment owns it).
func (e *engine) behavior(t *tick, wl workload) Behavior {
	key := wl.Pod.Namespace + "/" + wl.name()
	if b, ok := t.behaviors[key]; ok {
		return b
	}
	annotations := wl.Pod.Annotations
	if wl.Deployment != nil {
		annotations = wl.Deployment.Spec.Template.Annotations
	}
	b, err := ParseBehavior(annotations)
	if err != nil && !e.warned[key+err.Error()] {
		e.warned[key+err.Error()] = true
		e.opts.Logger.Error(err, "Ignoring the behaviour annotations of a workload", "workload", key)
	}
	t.behaviors[key] = b
	return b
}

// count turns a fractional number of requests into whole ones, carrying the remainder.
func (e *engine) count(key string, x float64) int {
	e.touched[key] = e.ticks
	a := e.acc[key] + x
	n := math.Floor(a + 1e-9)
	e.acc[key] = a - n
	return int(n)
}

// bernoulli says yes to a fraction p of successive calls, evenly spread.
func (e *engine) bernoulli(key string, p float64) bool {
	if p <= 0 {
		return false
	}
	return e.count(key, p) > 0
}

// pick chooses among weights by smooth weighted round robin: over any run of sum(weights)
// calls each index is chosen exactly its weight's times. -1 when all weights are zero.
func (e *engine) pick(key string, weights []int64) int {
	var total int64
	for _, w := range weights {
		total += max(w, 0)
	}
	if total == 0 {
		return -1
	}
	// A change of weights is a new state, as Envoy starts over on a new route config.
	key = key + "|" + fmt.Sprint(weights)
	e.touched[key] = e.ticks
	cur := e.wrr[key]
	if len(cur) != len(weights) {
		cur = make([]int64, len(weights))
		e.wrr[key] = cur
	}
	best := -1
	for i, w := range weights {
		cur[i] += max(w, 0)
		if best < 0 || cur[i] > cur[best] {
			best = i
		}
	}
	cur[best] -= total
	return best
}

// goldenRatio spreads successive quantiles evenly over (0, 1).
const goldenRatio = 0.6180339887498949

func (e *engine) nextPhase(key string) float64 {
	key = "phase|" + key
	e.touched[key] = e.ticks
	p, ok := e.phase[key]
	if !ok {
		p = 0.5 * goldenRatio
	}
	p = math.Mod(p+goldenRatio, 1)
	e.phase[key] = p
	return p
}

func (e *engine) snapshot() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := Stats{Ticks: e.ticks}
	for k, n := range e.stats {
		s.Routes = append(s.Routes, RouteStat{RouteKey: k, Requests: n})
	}
	sort.Slice(s.Routes, func(i, j int) bool { return lessKey(s.Routes[i].RouteKey, s.Routes[j].RouteKey) })
	return s
}

func lessKey(a, b RouteKey) bool {
	as := []string{a.Namespace, a.VirtualService, a.Host, a.Route, a.RouteFrom, strconv.FormatBool(a.Tagged), strconv.FormatBool(a.Mirror), a.Cluster, a.WorkloadNamespace, a.Workload, a.Flags}
	bs := []string{b.Namespace, b.VirtualService, b.Host, b.Route, b.RouteFrom, strconv.FormatBool(b.Tagged), strconv.FormatBool(b.Mirror), b.Cluster, b.WorkloadNamespace, b.Workload, b.Flags}
	for i := range as {
		if as[i] != bs[i] {
			return as[i] < bs[i]
		}
	}
	return a.Code < b.Code
}
