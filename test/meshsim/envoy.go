package meshsim

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// This file reads the configuration istiod sent a proxy the way Envoy does, for the
// parts a synthetic request needs: which virtual host and route take it, which cluster,
// which endpoints, and what the route's fault, mirror, retry and timeout policies do.

// request is one class of synthetic requests: all requests of a class route alike.
type request struct {
	Authority string
	Scheme    string
	Method    string
	Path      string            // with its query string, if any
	Headers   map[string]string // lower-case names
}

// header is a request header as Envoy's matchers see it, pseudo-headers included.
func (r request) header(name string) (string, bool) {
	switch name = strings.ToLower(name); name {
	case ":authority", "host":
		return r.Authority, true
	case ":method":
		return r.Method, true
	case ":path":
		return r.Path, true
	case ":scheme":
		return r.Scheme, true
	}
	v, ok := r.Headers[name]
	return v, ok
}

// httpRouteNames are the route configurations the HTTP connection managers of the
// listeners name (RDS), by listener port: a gateway's "http.8080", a sidecar's "9080".
func (c *envoyConfig) httpRouteNames() map[uint32][]string {
	out := map[uint32][]string{}
	for _, l := range c.Listeners {
		port := l.GetAddress().GetSocketAddress().GetPortValue()
		chains := append([]*listenerv3.FilterChain(nil), l.GetFilterChains()...)
		if dc := l.GetDefaultFilterChain(); dc != nil {
			chains = append(chains, dc)
		}
		for _, fc := range chains {
			if name := chainHCM(fc).GetRds().GetRouteConfigName(); name != "" && !contains(out[port], name) {
				out[port] = append(out[port], name)
			}
		}
	}
	for p := range out {
		sort.Strings(out[p])
	}
	return out
}

// httpManager is a network filter's HTTP connection manager; nil for another filter.
func httpManager(f *listenerv3.Filter) *hcmv3.HttpConnectionManager {
	a := f.GetTypedConfig()
	if a == nil || !strings.HasSuffix(a.GetTypeUrl(), "http_connection_manager.v3.HttpConnectionManager") {
		return nil
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := a.UnmarshalTo(hcm); err != nil {
		return nil
	}
	return hcm
}

// virtualHost picks the virtual host of a route configuration for an authority as
// Envoy does: an exact domain first, then the longest suffix wildcard ("*.example.com"),
// then the longest prefix wildcard ("reviews.*"), then "*".
func virtualHost(rc *routev3.RouteConfiguration, authority string) *routev3.VirtualHost {
	host := strings.ToLower(authority)
	if rc.GetIgnorePortInHostMatching() {
		if h, _, ok := strings.Cut(host, ":"); ok {
			host = h
		}
	}
	var best *routev3.VirtualHost
	bestRank, bestLen := 4, -1
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			d = strings.ToLower(d)
			rank, n := 4, len(d)
			switch {
			case d == host:
				rank = 0
			case d == "*":
				rank = 3
			case strings.HasPrefix(d, "*") && strings.HasSuffix(host, d[1:]) && len(host) > len(d)-1:
				rank = 1
			case strings.HasSuffix(d, "*") && strings.HasPrefix(host, d[:len(d)-1]) && len(host) > len(d)-1:
				rank = 2
			}
			if rank < bestRank || (rank == bestRank && rank < 3 && n > bestLen) {
				best, bestRank, bestLen = vh, rank, n
			}
		}
	}
	return best
}

// matchRoute returns the first route of the virtual host that takes the request, as
// Envoy does; fraction decides runtime_fraction matches (see engine.bernoulli).
func matchRoute(vh *routev3.VirtualHost, req request, fraction func(i int, p float64) bool) (*routev3.Route, int) {
	for i, r := range vh.GetRoutes() {
		if routeMatches(r.GetMatch(), req, func(p float64) bool { return fraction(i, p) }) {
			return r, i
		}
	}
	return nil, -1
}

func routeMatches(m *routev3.RouteMatch, req request, fraction func(float64) bool) bool {
	if m == nil {
		return false
	}
	path, query, _ := strings.Cut(req.Path, "?")
	caseSensitive := m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()
	fold := func(s string) string {
		if caseSensitive {
			return s
		}
		return strings.ToLower(s)
	}
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		if !strings.HasPrefix(fold(path), fold(p.Prefix)) {
			return false
		}
	case *routev3.RouteMatch_Path:
		if fold(path) != fold(p.Path) {
			return false
		}
	case *routev3.RouteMatch_SafeRegex:
		if !fullMatch(p.SafeRegex.GetRegex(), path) {
			return false
		}
	case *routev3.RouteMatch_PathSeparatedPrefix:
		pre := fold(p.PathSeparatedPrefix)
		fp := fold(path)
		if fp != pre && !strings.HasPrefix(fp, pre+"/") {
			return false
		}
	default:
		return false // CONNECT and path match policies: synthetic requests are neither
	}
	if m.GetGrpc() != nil || len(m.GetDynamicMetadata()) > 0 || m.GetTlsContext() != nil {
		return false // synthetic requests are plain HTTP with no dynamic metadata
	}
	for _, h := range m.GetHeaders() {
		if !headerMatches(h, req) {
			return false
		}
	}
	if len(m.GetQueryParameters()) > 0 {
		params := map[string]string{}
		for _, kv := range strings.Split(query, "&") {
			if k, v, _ := strings.Cut(kv, "="); k != "" {
				params[k] = v
			}
		}
		for _, q := range m.GetQueryParameters() {
			v, ok := params[q.GetName()]
			switch {
			case q.GetPresentMatch():
				if !ok {
					return false
				}
			case !ok || !stringMatches(q.GetStringMatch(), v):
				return false
			}
		}
	}
	if rf := m.GetRuntimeFraction(); rf != nil && !fraction(fractionOf(rf.GetDefaultValue())) {
		return false
	}
	return true
}

// headerMatches applies a HeaderMatcher. An absent header matches only a present_match
// that asks for its absence (or, inverted, its presence), unless
// treat_missing_header_as_empty makes it "".
func headerMatches(h *routev3.HeaderMatcher, req request) bool {
	v, ok := req.header(h.GetName())
	_, isPresent := h.GetHeaderMatchSpecifier().(*routev3.HeaderMatcher_PresentMatch)
	if !ok && !h.GetTreatMissingHeaderAsEmpty() {
		return isPresent && h.GetPresentMatch() == h.GetInvertMatch()
	}
	var m bool
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_PresentMatch:
		m = ok == s.PresentMatch
	case *routev3.HeaderMatcher_StringMatch:
		m = stringMatches(s.StringMatch, v)
	// The deprecated specifiers, which older control planes still send.
	case *routev3.HeaderMatcher_ExactMatch:
		m = v == s.ExactMatch //nolint:staticcheck // deprecated, still valid
	case *routev3.HeaderMatcher_PrefixMatch:
		m = strings.HasPrefix(v, s.PrefixMatch) //nolint:staticcheck // deprecated, still valid
	case *routev3.HeaderMatcher_SuffixMatch:
		m = strings.HasSuffix(v, s.SuffixMatch) //nolint:staticcheck // deprecated, still valid
	case *routev3.HeaderMatcher_ContainsMatch:
		m = strings.Contains(v, s.ContainsMatch) //nolint:staticcheck // deprecated, still valid
	case *routev3.HeaderMatcher_SafeRegexMatch:
		m = fullMatch(s.SafeRegexMatch.GetRegex(), v) //nolint:staticcheck // deprecated, still valid
	case *routev3.HeaderMatcher_RangeMatch:
		n, err := strconv.ParseInt(v, 10, 64)
		m = err == nil && n >= s.RangeMatch.GetStart() && n < s.RangeMatch.GetEnd()
	default:
		m = ok // no specifier: presence
	}
	return m != h.GetInvertMatch()
}

// stringMatches applies a StringMatcher; a nil one matches anything.
func stringMatches(sm *matcherv3.StringMatcher, v string) bool {
	if sm == nil {
		return true
	}
	fold := func(s string) string {
		if sm.GetIgnoreCase() {
			return strings.ToLower(s)
		}
		return s
	}
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return fold(v) == fold(p.Exact)
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(fold(v), fold(p.Prefix))
	case *matcherv3.StringMatcher_Suffix:
		return strings.HasSuffix(fold(v), fold(p.Suffix))
	case *matcherv3.StringMatcher_Contains:
		return strings.Contains(fold(v), fold(p.Contains))
	case *matcherv3.StringMatcher_SafeRegex:
		return fullMatch(p.SafeRegex.GetRegex(), v)
	}
	return false
}

var regexCache = map[string]*regexp.Regexp{}

// fullMatch is Envoy's safe_regex (RE2, the whole value must match). The engine's lock
// guards the cache.
func fullMatch(re, v string) bool {
	r, ok := regexCache[re]
	if !ok {
		var err error
		r, err = regexp.Compile(`^(?:` + re + `)$`)
		if err != nil {
			r = nil
		}
		regexCache[re] = r
	}
	return r != nil && r.MatchString(v)
}

// fractionOf is a FractionalPercent as a fraction of 1.
func fractionOf(p *typev3.FractionalPercent) float64 {
	if p == nil {
		return 1
	}
	var d float64
	switch p.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		d = 100
	case typev3.FractionalPercent_TEN_THOUSAND:
		d = 10000
	case typev3.FractionalPercent_MILLION:
		d = 1000000
	default:
		return 0
	}
	return min(float64(p.GetNumerator())/d, 1)
}

// routeFrom is the Istio configuration istiod built a route from, "namespace/name", read
// from the route's metadata (filter_metadata istio.config,
// "/apis/networking.istio.io/v1/namespaces/NS/virtual-service/NAME"); "" for istiod's
// own routes.
func routeFrom(r *routev3.Route) string {
	cfg := r.GetMetadata().GetFilterMetadata()["istio"].GetFields()["config"].GetStringValue()
	parts := strings.Split(strings.Trim(cfg, "/"), "/")
	if len(parts) >= 3 {
		return parts[len(parts)-3] + "/" + parts[len(parts)-1]
	}
	return ""
}

// faultName is the key of the fault filter's per-route configuration.
const faultName = "envoy.filters.http.fault"

// faultOf is the fault injection configured for a route: its own per-filter
// configuration, else its virtual host's.
func faultOf(r *routev3.Route, vh *routev3.VirtualHost) *faultv3.HTTPFault {
	for _, m := range []map[string]*anypb.Any{r.GetTypedPerFilterConfig(), vh.GetTypedPerFilterConfig()} {
		a, ok := m[faultName]
		if !ok {
			continue
		}
		f := &faultv3.HTTPFault{}
		if err := a.UnmarshalTo(f); err == nil {
			return f
		}
		// Wrapped in a FilterConfig.
		fc := &routev3.FilterConfig{}
		if err := a.UnmarshalTo(fc); err == nil && fc.GetConfig().UnmarshalTo(f) == nil {
			return f
		}
	}
	return nil
}

// retryPolicy is the part of Envoy's retry policy a synthetic request can meet: it
// retries answers, never connections (none fail here).
type retryPolicy struct {
	Retries       int
	On            map[string]bool // retry_on conditions
	StatusCodes   map[int]bool    // retriable_status_codes
	PerTryTimeout time.Duration
}

func retryOf(a *routev3.RouteAction, vh *routev3.VirtualHost) retryPolicy {
	p := a.GetRetryPolicy()
	if p == nil {
		p = vh.GetRetryPolicy()
	}
	if p == nil {
		return retryPolicy{}
	}
	rp := retryPolicy{Retries: 1, On: map[string]bool{}, StatusCodes: map[int]bool{}, PerTryTimeout: p.GetPerTryTimeout().AsDuration()}
	if n := p.GetNumRetries(); n != nil {
		rp.Retries = int(n.GetValue())
	}
	for _, c := range strings.Split(p.GetRetryOn(), ",") {
		rp.On[strings.TrimSpace(c)] = true
	}
	for _, c := range p.GetRetriableStatusCodes() {
		rp.StatusCodes[int(c)] = true
	}
	return rp
}

// retriable says whether Envoy retries an answer with this code (504 for a per-try
// timeout).
func (p retryPolicy) retriable(code int, perTryTimedOut bool) bool {
	switch {
	case perTryTimedOut:
		return p.On["5xx"] || p.On["gateway-error"] || p.On["reset"]
	case p.On["5xx"] && code >= 500:
		return true
	case p.On["gateway-error"] && (code == 502 || code == 503 || code == 504):
		return true
	case p.On["retriable-4xx"] && code == 409:
		return true
	case p.On["retriable-status-codes"] && p.StatusCodes[code]:
		return true
	}
	return false
}

// lbEndpoint is one upstream host of a cluster, weighted as Envoy's load balancer
// weighs it (locality weight times endpoint weight).
type lbEndpoint struct {
	IP     string
	Port   uint32
	Weight int64
}

// clusterEndpoints are the healthy hosts of a cluster, from its EDS assignment (or its
// inline load assignment), in the highest priority that has any. ok is false when the
// proxy has no such cluster.
func (c *envoyConfig) clusterEndpoints(name string) (eps []lbEndpoint, ok bool) {
	cl, ok := c.Clusters[name]
	if !ok {
		return nil, false
	}
	cla := cl.GetLoadAssignment()
	if cl.GetType() == clusterv3.Cluster_EDS {
		sn := cl.GetEdsClusterConfig().GetServiceName()
		if sn == "" {
			sn = name
		}
		cla = c.Endpoints[sn]
	}
	return healthyEndpoints(cla), true
}

func healthyEndpoints(cla *endpointv3.ClusterLoadAssignment) []lbEndpoint {
	byPriority := map[uint32][]lbEndpoint{}
	for _, loc := range cla.GetEndpoints() {
		lw := int64(1)
		if w := loc.GetLoadBalancingWeight(); w != nil && w.GetValue() > 0 {
			lw = int64(w.GetValue())
		}
		for _, ep := range loc.GetLbEndpoints() {
			switch ep.GetHealthStatus() {
			case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY:
			default:
				continue
			}
			ip := ep.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
			if ip == "" {
				continue
			}
			w := int64(1)
			if x := ep.GetLoadBalancingWeight(); x != nil && x.GetValue() > 0 {
				w = int64(x.GetValue())
			}
			byPriority[loc.GetPriority()] = append(byPriority[loc.GetPriority()], lbEndpoint{IP: ip, Port: ep.GetEndpoint().GetAddress().GetSocketAddress().GetPortValue(), Weight: lw * w})
		}
	}
	prios := make([]uint32, 0, len(byPriority))
	for p := range byPriority {
		prios = append(prios, p)
	}
	if len(prios) == 0 {
		return nil
	}
	sort.Slice(prios, func(i, j int) bool { return prios[i] < prios[j] })
	eps := byPriority[prios[0]]
	sort.Slice(eps, func(i, j int) bool { return eps[i].IP < eps[j].IP })
	return eps
}

// clusterHost splits Istio's cluster name "outbound|9080|v1|reviews.shop.svc.cluster.local"
// into the destination host and subset; other names are their own host.
func clusterHost(name string) (host, subset string) {
	parts := strings.Split(name, "|")
	if len(parts) == 4 {
		return parts[3], parts[2]
	}
	return name, ""
}

// redirectCode is the status of a redirect action.
func redirectCode(r *routev3.RedirectAction) int {
	switch r.GetResponseCode() {
	case routev3.RedirectAction_MOVED_PERMANENTLY:
		return 301
	case routev3.RedirectAction_FOUND:
		return 302
	case routev3.RedirectAction_SEE_OTHER:
		return 303
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		return 307
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		return 308
	}
	return 301
}

// clusterNotFoundCode is what Envoy answers when a route's cluster is unknown.
func clusterNotFoundCode(a *routev3.RouteAction) int {
	switch a.GetClusterNotFoundResponseCode() {
	case routev3.RouteAction_SERVICE_UNAVAILABLE:
		return 503
	case routev3.RouteAction_NOT_FOUND:
		return 404
	case routev3.RouteAction_INTERNAL_SERVER_ERROR:
		return 500
	}
	return 503
}
