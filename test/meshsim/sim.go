package meshsim

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	apinetworkingv1 "istio.io/api/networking/v1"
)

// Options configure a simulator.
type Options struct {
	// RequestsPerSecond is the synthetic traffic sent to every VirtualService host
	// (default 50).
	RequestsPerSecond float64
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
	// Method and Path of the synthetic requests (default GET /).
	Method, Path string
	// SourceWorkload names the synthetic client in the source_* labels (default
	// "meshsim-client"); it runs in SourceNamespace, by default the VirtualService's.
	SourceWorkload, SourceNamespace string
	// Namespaces restricts what Start watches (default: all).
	Namespaces []string
	// Addr is where /metrics is served (default 127.0.0.1:0, a free port).
	Addr string
	// Logger reports annotations the simulator cannot read; discarded when unset.
	Logger logr.Logger
}

func (o Options) withDefaults() Options {
	if o.RequestsPerSecond <= 0 {
		o.RequestsPerSecond = 50
	}
	if o.TickInterval == 0 {
		o.TickInterval = time.Second
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
	// Namespace, VirtualService and Host are the stream the requests were sent to.
	Namespace, VirtualService, Host string
	// Route is the HTTP route taken: its name, else "http[i]"; empty when none matched.
	Route string
	// Tagged requests carried Options.Headers.
	Tagged bool
	// Mirror requests were copies made by a mirror policy; their answers were discarded.
	Mirror bool
	// DestinationHost and Subset are the route destination chosen.
	DestinationHost, Subset string
	// WorkloadNamespace and Workload answered; empty when nothing did (no route, no
	// endpoints).
	WorkloadNamespace, Workload string
	// Code is the response code.
	Code int
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
	}
}

const forgetAfter = 600

// batch gathers a tick's observations, so each label set is written once.
type batch map[observation][]float64

// simulate sends d's worth of traffic through the world.
func (e *engine) simulate(w *World, d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b := batch{}
	behaviors := map[string]Behavior{}
	for _, st := range w.streams() {
		skey := st.Gateway + "|" + fqdn(st.Host, st.VS.Namespace)
		n := e.count(skey, e.opts.RequestsPerSecond*d.Seconds())
		src := e.sourcePeer(st)
		for range n {
			tagged := len(e.opts.Headers) > 0 && e.bernoulli(skey+"|tagged", e.opts.HeaderFraction)
			e.route(w, st, skey, tagged, src, b, behaviors)
		}
	}
	for o, latencies := range b {
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

func (e *engine) request(st stream, tagged bool, src peer) request {
	headers := map[string]string{}
	if tagged {
		for k, v := range e.opts.Headers {
			headers[strings.ToLower(k)] = v
		}
	}
	return request{
		Authority:       st.Host,
		Scheme:          "http",
		Method:          e.opts.Method,
		Path:            e.opts.Path,
		Headers:         headers,
		Gateway:         st.Gateway,
		SourceNamespace: src.Namespace,
		SourceLabels:    map[string]string{"app": src.App},
	}
}

// route sends one request of a stream the way the VirtualService says.
func (e *engine) route(w *World, st stream, skey string, tagged bool, src peer, b batch, behaviors map[string]Behavior) {
	vs := st.VS
	key := RouteKey{Namespace: vs.Namespace, VirtualService: vs.Name, Host: st.Host, Tagged: tagged}
	idx := matchRoute(vs.Spec.Http, e.request(st, tagged, src))
	if idx < 0 {
		e.answerLocally(key, 404, "NR", src, b)
		return
	}
	r := vs.Spec.Http[idx]
	key.Route = r.Name
	if key.Route == "" {
		key.Route = "http[" + strconv.Itoa(idx) + "]"
	}
	switch {
	case r.DirectResponse != nil:
		e.answerLocally(key, int(r.DirectResponse.Status), "DR", src, b)
		return
	case r.Redirect != nil:
		code := int(r.Redirect.RedirectCode)
		if code == 0 {
			code = 301
		}
		e.answerLocally(key, code, "-", src, b)
		return
	case len(r.Route) == 0:
		e.answerLocally(key, 404, "NR", src, b) // delegation is not modelled
		return
	}

	rkey := skey + "|" + strconv.FormatBool(tagged) + "|" + strconv.Itoa(idx)
	weights := make([]int64, len(r.Route))
	for i, d := range r.Route {
		weights[i] = int64(d.Weight)
	}
	if len(weights) == 1 {
		weights[0] = 1 // a lone destination takes everything, whatever its weight
	}
	di := e.pick(rkey, weights)
	if di < 0 {
		e.answerLocally(key, 503, "UH", src, b)
	} else {
		e.deliver(w, vs.Namespace, r.Route[di].Destination, key, false, src, b, behaviors)
	}
	for mi, m := range mirrors(r) {
		if e.bernoulli(rkey+"|mirror"+strconv.Itoa(mi), m.Percent/100) {
			e.deliver(w, vs.Namespace, m.Destination, key, true, src, b, behaviors)
		}
	}
}

// answerLocally is a request the source's proxy answered itself.
func (e *engine) answerLocally(key RouteKey, code int, flags string, src peer, b batch) {
	key.Code = code
	e.stats[key]++
	o := observation{Reporter: "source", Source: src, Destination: unknownPeer(), Code: code, Flags: flags}
	b[o] = append(b[o], 0)
}

// deliver sends a request (or a mirrored copy) to a route destination.
func (e *engine) deliver(w *World, ns string, dest *apinetworkingv1.Destination, key RouteKey, mirrored bool, src peer, b batch, behaviors map[string]Behavior) {
	if dest == nil {
		return
	}
	key.DestinationHost, key.Subset, key.Mirror = dest.Host, dest.Subset, mirrored
	noUpstream := func(flags string) {
		key.Code = 503
		e.stats[key]++
		if !mirrored { // a mirror's failure is nobody's answer
			o := observation{Reporter: "source", Source: src, Destination: unknownPeer(), Code: 503, Flags: flags}
			b[o] = append(b[o], 0)
		}
	}
	ref, isService := resolveHost(dest.Host, ns)
	var subset map[string]string
	if dest.Subset != "" {
		labels, ok := w.subsetLabels(ref, dest.Subset, ns)
		if !isService || !ok {
			noUpstream("NR")
			return
		}
		subset = labels
	}
	var eps []endpoint
	if isService {
		eps = w.endpoints(w.service(ref), subset)
	}
	if len(eps) == 0 {
		noUpstream("UH")
		return
	}
	replicas := make([]int64, len(eps))
	for i, ep := range eps {
		replicas[i] = int64(ep.Replicas)
	}
	pickKey := "ep|" + ref.FQDN() + "|" + dest.Subset
	dep := eps[e.pick(pickKey, replicas)].Deployment
	wkey := dep.Namespace + "/" + dep.Name
	beh, ok := behaviors[wkey]
	if !ok {
		var err error
		beh, err = ParseBehavior(dep.Spec.Template.Annotations)
		if err != nil && !e.warned[wkey+err.Error()] {
			e.warned[wkey+err.Error()] = true
			e.opts.Logger.Error(err, "Ignoring the behaviour annotations of a Deployment", "deployment", wkey)
		}
		behaviors[wkey] = beh
	}
	code := 200
	if e.bernoulli(wkey+"|error", beh.ErrorRate) {
		code = beh.ErrorCode
	}
	latency := beh.Latency(e.nextPhase(wkey))

	key.WorkloadNamespace, key.Workload, key.Code = dep.Namespace, dep.Name, code
	e.stats[key]++
	dst := workloadPeer(dep)
	o := observation{Reporter: "destination", Source: src, Destination: dst, Service: ref, Code: code, Flags: "-"}
	b[o] = append(b[o], latency)
	if !mirrored { // the source's proxy never sees the mirror's answer
		o.Reporter = "source"
		b[o] = append(b[o], latency)
	}
}

func (e *engine) sourcePeer(st stream) peer {
	if st.Gateway != "mesh" {
		return peer{
			Workload: "istio-ingressgateway", Namespace: "istio-system", App: "istio-ingressgateway", Version: "unknown",
			CanonicalService: "istio-ingressgateway", CanonicalRevision: "latest",
			Principal: "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
		}
	}
	ns := e.opts.SourceNamespace
	if ns == "" {
		ns = st.VS.Namespace
	}
	name := e.opts.SourceWorkload
	return peer{
		Workload: name, Namespace: ns, App: name, Version: "unknown",
		CanonicalService: name, CanonicalRevision: "latest",
		Principal: "spiffe://cluster.local/ns/" + ns + "/sa/default",
	}
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
	as := []string{a.Namespace, a.VirtualService, a.Host, a.Route, strconv.FormatBool(a.Tagged), strconv.FormatBool(a.Mirror), a.DestinationHost, a.Subset, a.WorkloadNamespace, a.Workload}
	bs := []string{b.Namespace, b.VirtualService, b.Host, b.Route, strconv.FormatBool(b.Tagged), strconv.FormatBool(b.Mirror), b.DestinationHost, b.Subset, b.WorkloadNamespace, b.Workload}
	for i := range as {
		if as[i] != bs[i] {
			return as[i] < bs[i]
		}
	}
	return a.Code < b.Code
}
