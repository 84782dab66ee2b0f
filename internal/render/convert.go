package render

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// duration converts a canopy Duration into the protobuf Duration Istio expects. Istio
// rejects durations under 1ms and, in its webhook, sub-millisecond precision: both are
// errors here, naming the field, rather than a rejected apply later.
func duration(e *errs, path string, d meshv1.Duration) *durationpb.Duration {
	if d == "" {
		return nil
	}
	v, err := time.ParseDuration(string(d))
	if err != nil {
		e.invalid(path, "%q is not a duration: %v", d, err)
		return nil
	}
	if v < time.Millisecond {
		e.invalid(path, "%q must be at least 1ms", d)
		return nil
	}
	if v%time.Millisecond != 0 {
		e.invalid(path, "%q must be a whole number of milliseconds", d)
		return nil
	}
	return durationpb.New(v)
}

// stringMatch converts a StringMatch into Istio's oneof.
func stringMatch(e *errs, path string, m *meshv1.StringMatch) *networking.StringMatch {
	if m == nil {
		return nil
	}
	set := 0
	out := &networking.StringMatch{}
	if m.Exact != nil {
		set++
		out.MatchType = &networking.StringMatch_Exact{Exact: *m.Exact}
	}
	if m.Prefix != nil {
		set++
		out.MatchType = &networking.StringMatch_Prefix{Prefix: *m.Prefix}
	}
	if m.Regex != nil {
		set++
		if _, err := regexp.Compile(*m.Regex); err != nil {
			e.invalid(path+".regex", "%q is not a valid regular expression: %v", *m.Regex, err)
		}
		out.MatchType = &networking.StringMatch_Regex{Regex: *m.Regex}
	}
	if set != 1 {
		e.invalid(path, "exactly one of exact, prefix or regex must be set")
		return nil
	}
	return out
}

// headerName is an HTTP header name (an RFC 9110 token).
var headerName = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

func checkHeaderName(e *errs, path, name string, lower bool) bool {
	if !headerName.MatchString(name) {
		e.invalid(path, "%q is not an HTTP header name", name)
		return false
	}
	if lower && strings.ToLower(name) != name {
		e.invalid(path, "%q must be lower case: the proxy compares lower-cased names", name)
		return false
	}
	return true
}

// checkHeaderValue refuses control characters other than a tab in a header value (RFC
// 9110 field-value): a CR or LF would end the header and start another one.
func checkHeaderValue(e *errs, path, value string) {
	if i := strings.IndexFunc(value, func(r rune) bool { return (r < 0x20 && r != '\t') || r == 0x7f }); i >= 0 {
		e.invalid(path, "the value has the control character %U at byte %d: a header value cannot hold CR, LF or other control characters", value[i], i)
	}
}

func stringMatchMap(e *errs, path string, in map[string]meshv1.StringMatch, headerKeys bool) map[string]*networking.StringMatch {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]*networking.StringMatch, len(in))
	for _, k := range sortedKeys(in) {
		m := in[k]
		if headerKeys && !checkHeaderName(e, fmt.Sprintf("%s[%s]", path, k), k, true) {
			continue
		}
		if k == "" {
			e.invalid(fmt.Sprintf("%s[%s]", path, k), "the name is empty")
			continue
		}
		if sm := stringMatch(e, fmt.Sprintf("%s[%s]", path, k), &m); sm != nil {
			out[k] = sm
		}
	}
	return out
}

func httpMatch(e *errs, path string, m *meshv1.HTTPMatch) *networking.HTTPMatchRequest {
	if m == nil {
		return nil
	}
	return &networking.HTTPMatchRequest{
		Uri:         stringMatch(e, path+".uri", m.URI),
		Method:      stringMatch(e, path+".method", m.Method),
		Headers:     stringMatchMap(e, path+".headers", m.Headers, true),
		QueryParams: stringMatchMap(e, path+".queryParams", m.QueryParams, false),
	}
}

// matchList is a list of converted matches with where each came from, so that a
// conflict found when two lists are combined names both sides.
type matchList struct {
	src  []matchSrc
	reqs []*networking.HTTPMatchRequest
}

type matchSrc struct {
	e    *errs
	path string
}

func httpMatches(e *errs, path string, in []meshv1.HTTPMatch) matchList {
	var out matchList
	for i := range in {
		p := fmt.Sprintf("%s[%d]", path, i)
		out.src = append(out.src, matchSrc{e, p})
		out.reqs = append(out.reqs, httpMatch(e, p, &in[i]))
	}
	return out
}

func singleMatch(e *errs, path string, m *meshv1.HTTPMatch) matchList {
	if m == nil {
		return matchList{}
	}
	return matchList{src: []matchSrc{{e, path}}, reqs: []*networking.HTTPMatchRequest{httpMatch(e, path, m)}}
}

// and combines two match lists so that a request matches the result when it matches
// both. Istio ORs the entries of a list and ANDs the conditions of one entry, so the
// result is the cross product with each pair's conditions merged. A pair that sets the
// same condition differently cannot be expressed as one entry: that is an error on a's
// field, a being the list layered on top of b.
func (a matchList) and(b matchList) matchList {
	if len(a.reqs) == 0 {
		return b
	}
	if len(b.reqs) == 0 {
		return a
	}
	var out matchList
	for i, x := range a.reqs {
		for j, y := range b.reqs {
			m, conflict := mergeMatch(x, y)
			if conflict != "" {
				as, bs := a.src[i], b.src[j]
				as.e.inconsistent(as.path+"."+conflict, "conflicts with %s: one route cannot require both", bs.e.describe(bs.path+"."+conflict))
				continue
			}
			out.src = append(out.src, a.src[i])
			out.reqs = append(out.reqs, m)
		}
	}
	return out
}

func mergeMatch(a, b *networking.HTTPMatchRequest) (*networking.HTTPMatchRequest, string) {
	if a == nil {
		a = &networking.HTTPMatchRequest{}
	}
	if b == nil {
		b = &networking.HTTPMatchRequest{}
	}
	out := &networking.HTTPMatchRequest{}
	var ok bool
	if out.Uri, ok = mergeStringMatch(a.Uri, b.Uri); !ok {
		return nil, "uri"
	}
	if out.Method, ok = mergeStringMatch(a.Method, b.Method); !ok {
		return nil, "method"
	}
	var key string
	if out.Headers, key = mergeStringMatchMap(a.Headers, b.Headers); key != "" {
		return nil, "headers[" + key + "]"
	}
	if out.QueryParams, key = mergeStringMatchMap(a.QueryParams, b.QueryParams); key != "" {
		return nil, "queryParams[" + key + "]"
	}
	return out, ""
}

func mergeStringMatch(a, b *networking.StringMatch) (*networking.StringMatch, bool) {
	switch {
	case a == nil:
		return b, true
	case b == nil:
		return a, true
	case stringMatchEqual(a, b):
		return a, true
	default:
		return nil, false
	}
}

func stringMatchEqual(a, b *networking.StringMatch) bool {
	return a.GetExact() == b.GetExact() && a.GetPrefix() == b.GetPrefix() && a.GetRegex() == b.GetRegex() &&
		fmt.Sprintf("%T", a.GetMatchType()) == fmt.Sprintf("%T", b.GetMatchType())
}

func mergeStringMatchMap(a, b map[string]*networking.StringMatch) (map[string]*networking.StringMatch, string) {
	if len(a) == 0 && len(b) == 0 {
		return nil, ""
	}
	out := make(map[string]*networking.StringMatch, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for _, k := range sortedKeys(b) {
		if x, ok := out[k]; ok && !stringMatchEqual(x, b[k]) {
			return nil, k
		}
		out[k] = b[k]
	}
	return out, ""
}

func retries(e *errs, path string, r *meshv1.HTTPRetry) *networking.HTTPRetry {
	if r == nil {
		return nil
	}
	if r.Attempts < 0 || r.Attempts > 100 {
		e.invalid(path+".attempts", "%d is not between 0 and 100", r.Attempts)
	}
	// Attempts 0 disappears from the JSON like any proto3 zero; an empty retries
	// object is what disables Istio's default retries, which is what attempts 0 means.
	return &networking.HTTPRetry{
		Attempts:      r.Attempts,
		PerTryTimeout: duration(e, path+".perTryTimeout", r.PerTryTimeout),
		RetryOn:       r.RetryOn,
	}
}

func headerOps(e *errs, path string, in *meshv1.HeaderOperations) *networking.Headers_HeaderOperations {
	if in == nil {
		return nil
	}
	for _, k := range sortedKeys(in.Set) {
		if checkHeaderName(e, path+".set["+k+"]", k, false) {
			checkHeaderValue(e, path+".set["+k+"]", in.Set[k])
		}
	}
	for _, k := range sortedKeys(in.Add) {
		if checkHeaderName(e, path+".add["+k+"]", k, false) {
			checkHeaderValue(e, path+".add["+k+"]", in.Add[k])
		}
	}
	for i, k := range in.Remove {
		checkHeaderName(e, fmt.Sprintf("%s.remove[%d]", path, i), k, false)
	}
	return &networking.Headers_HeaderOperations{
		Set:    copyMap(in.Set),
		Add:    copyMap(in.Add),
		Remove: slices.Clone(in.Remove),
	}
}

func headers(e *errs, path string, in *meshv1.Headers) *networking.Headers {
	if in == nil || (in.Request == nil && in.Response == nil) {
		return nil
	}
	return &networking.Headers{Request: headerOps(e, path+".request", in.Request), Response: headerOps(e, path+".response", in.Response)}
}

// mergeHeaders layers over on top of base: set and add entries of over win per header,
// removals are the union.
func mergeHeaders(base, over *networking.Headers) *networking.Headers {
	if base == nil {
		return over
	}
	if over == nil {
		return base
	}
	return &networking.Headers{
		Request:  mergeHeaderOps(base.Request, over.Request),
		Response: mergeHeaderOps(base.Response, over.Response),
	}
}

func mergeHeaderOps(base, over *networking.Headers_HeaderOperations) *networking.Headers_HeaderOperations {
	if base == nil {
		return over
	}
	if over == nil {
		return base
	}
	out := &networking.Headers_HeaderOperations{
		Set:    mergeMaps(base.Set, over.Set),
		Add:    mergeMaps(base.Add, over.Add),
		Remove: slices.Clone(base.Remove),
	}
	for _, r := range over.Remove {
		if !slices.Contains(out.Remove, r) {
			out.Remove = append(out.Remove, r)
		}
	}
	return out
}

func cors(e *errs, path string, c *meshv1.CorsPolicy) *networking.CorsPolicy {
	if c == nil {
		return nil
	}
	out := &networking.CorsPolicy{
		AllowMethods:  slices.Clone(c.AllowMethods),
		AllowHeaders:  slices.Clone(c.AllowHeaders),
		ExposeHeaders: slices.Clone(c.ExposeHeaders),
		MaxAge:        duration(e, path+".maxAge", c.MaxAge),
	}
	for i := range c.AllowOrigins {
		if m := stringMatch(e, fmt.Sprintf("%s.allowOrigins[%d]", path, i), &c.AllowOrigins[i]); m != nil {
			out.AllowOrigins = append(out.AllowOrigins, m)
		}
	}
	if c.AllowCredentials != nil {
		out.AllowCredentials = wrapperspb.Bool(*c.AllowCredentials)
	}
	return out
}

func percent(v float64) *networking.Percent { return &networking.Percent{Value: v} }

func fault(e *errs, path string, f *meshv1.Fault) *networking.HTTPFaultInjection {
	if f == nil {
		return nil
	}
	if f.Delay == nil && f.Abort == nil {
		e.invalid(path, "set delay, abort or both")
		return nil
	}
	out := &networking.HTTPFaultInjection{}
	if d := f.Delay; d != nil {
		checkPercentage(e, path+".delay.percentage", d.Percentage)
		fixed := duration(e, path+".delay.fixedDelay", d.FixedDelay)
		if d.FixedDelay == "" {
			e.invalid(path+".delay.fixedDelay", "is required")
		}
		out.Delay = &networking.HTTPFaultInjection_Delay{
			Percentage:    percent(d.Percentage),
			HttpDelayType: &networking.HTTPFaultInjection_Delay_FixedDelay{FixedDelay: fixed},
		}
	}
	if a := f.Abort; a != nil {
		checkPercentage(e, path+".abort.percentage", a.Percentage)
		if a.HTTPStatus < 200 || a.HTTPStatus > 599 {
			e.invalid(path+".abort.httpStatus", "%d is not an HTTP status between 200 and 599", a.HTTPStatus)
		}
		out.Abort = &networking.HTTPFaultInjection_Abort{
			Percentage: percent(a.Percentage),
			ErrorType:  &networking.HTTPFaultInjection_Abort_HttpStatus{HttpStatus: a.HTTPStatus},
		}
	}
	return out
}

func checkPercentage(e *errs, path string, v float64) {
	if !(v >= 0 && v <= 100) { // also rejects NaN
		e.invalid(path, "%v is not between 0 and 100", v)
	}
}

func rewrite(r *meshv1.Rewrite) *networking.HTTPRewrite {
	if r == nil || (r.URI == "" && r.Authority == "") {
		return nil
	}
	return &networking.HTTPRewrite{Uri: r.URI, Authority: r.Authority}
}

var simpleLB = map[meshv1.LoadBalancer]networking.LoadBalancerSettings_SimpleLB{
	"ROUND_ROBIN":   networking.LoadBalancerSettings_ROUND_ROBIN,
	"LEAST_REQUEST": networking.LoadBalancerSettings_LEAST_REQUEST,
	"RANDOM":        networking.LoadBalancerSettings_RANDOM,
	"PASSTHROUGH":   networking.LoadBalancerSettings_PASSTHROUGH,
}

func loadBalancer(e *errs, path string, lb meshv1.LoadBalancer) *networking.LoadBalancerSettings {
	if lb == "" {
		return nil
	}
	v, ok := simpleLB[lb]
	if !ok {
		e.invalid(path, "unknown load balancer %q", lb)
		return nil
	}
	return &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: v}}
}

func connectionPool(e *errs, path string, c *meshv1.ConnectionPool) *networking.ConnectionPoolSettings {
	if c == nil {
		return nil
	}
	out := &networking.ConnectionPoolSettings{}
	if t := c.TCP; t != nil {
		out.Tcp = &networking.ConnectionPoolSettings_TCPSettings{
			MaxConnections: positive(e, path+".tcp.maxConnections", t.MaxConnections),
			ConnectTimeout: duration(e, path+".tcp.connectTimeout", t.ConnectTimeout),
		}
	}
	if h := c.HTTP; h != nil {
		out.Http = &networking.ConnectionPoolSettings_HTTPSettings{
			Http1MaxPendingRequests:  positive(e, path+".http.http1MaxPendingRequests", h.HTTP1MaxPendingRequests),
			Http2MaxRequests:         positive(e, path+".http.http2MaxRequests", h.HTTP2MaxRequests),
			MaxRequestsPerConnection: positive(e, path+".http.maxRequestsPerConnection", h.MaxRequestsPerConnection),
			IdleTimeout:              duration(e, path+".http.idleTimeout", h.IdleTimeout),
		}
		if h.MaxRetries != nil {
			if *h.MaxRetries < 0 {
				e.invalid(path+".http.maxRetries", "%d is negative", *h.MaxRetries)
			}
			out.Http.MaxRetries = *h.MaxRetries
		}
	}
	return out
}

func positive(e *errs, path string, v *int32) int32 {
	if v == nil {
		return 0
	}
	if *v < 1 {
		e.invalid(path, "%d must be at least 1", *v)
	}
	return *v
}

func outlierDetection(e *errs, path string, c *meshv1.CircuitBreaker) *networking.OutlierDetection {
	if c == nil {
		return nil
	}
	out := &networking.OutlierDetection{
		Interval:         duration(e, path+".interval", c.Interval),
		BaseEjectionTime: duration(e, path+".baseEjectionTime", c.BaseEjectionTime),
	}
	if c.Consecutive5xxErrors != nil {
		out.Consecutive_5XxErrors = wrapperspb.UInt32(uint32(positive(e, path+".consecutive5xxErrors", c.Consecutive5xxErrors)))
	}
	if c.ConsecutiveGatewayErrors != nil {
		out.ConsecutiveGatewayErrors = wrapperspb.UInt32(uint32(positive(e, path+".consecutiveGatewayErrors", c.ConsecutiveGatewayErrors)))
	}
	if c.MaxEjectionPercent != nil {
		if *c.MaxEjectionPercent < 0 || *c.MaxEjectionPercent > 100 {
			e.invalid(path+".maxEjectionPercent", "%d is not between 0 and 100", *c.MaxEjectionPercent)
		}
		out.MaxEjectionPercent = *c.MaxEjectionPercent
	}
	return out
}

var clientTLSModes = map[meshv1.TLSMode]networking.ClientTLSSettings_TLSmode{
	"DISABLE":      networking.ClientTLSSettings_DISABLE,
	"SIMPLE":       networking.ClientTLSSettings_SIMPLE,
	"MUTUAL":       networking.ClientTLSSettings_MUTUAL,
	"ISTIO_MUTUAL": networking.ClientTLSSettings_ISTIO_MUTUAL,
}

func clientTLS(e *errs, path string, m meshv1.TLSMode) *networking.ClientTLSSettings {
	if m == "" {
		return nil
	}
	v, ok := clientTLSModes[m]
	if !ok {
		e.invalid(path, "unknown TLS mode %q", m)
		return nil
	}
	// DISABLE is the enum's zero and vanishes from the JSON, leaving "tls: {}", which
	// Istio reads as DISABLE all the same.
	return &networking.ClientTLSSettings{Mode: v}
}

// tlsForMTLS is the client TLS that matches a server-side mTLS mode.
func tlsForMTLS(m meshv1.MTLSMode) *networking.ClientTLSSettings {
	switch m {
	case meshv1.MTLSStrict, meshv1.MTLSPermissive:
		return &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_ISTIO_MUTUAL}
	case meshv1.MTLSDisable:
		return &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_DISABLE}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func mergeMaps(base, over map[string]string) map[string]string {
	if len(base) == 0 && len(over) == 0 {
		return nil
	}
	out := copyMap(base)
	if out == nil {
		out = map[string]string{}
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

// appendHosts adds VirtualService hosts of namespace ns to a copy of list, leaving out those
// that name a host already there: Istio reads a short name as <name>.<ns>.svc.cluster.local,
// and one VirtualService listing both forms defines the host twice (istioctl analyze:
// IST0109). Of the two forms the spelled-out one is kept.
func appendHosts(ns string, list []string, hosts ...string) []string {
	list = slices.Clone(list)
	for _, h := range hosts {
		if h == "" {
			continue
		}
		switch i := slices.IndexFunc(list, func(l string) bool { return fqdn(ns, l) == fqdn(ns, h) }); {
		case i < 0:
			list = append(list, h)
		case list[i] != h && h == fqdn(ns, h):
			// The same name spelled out (a Service's own name served on a gateway): Istio
			// reads both alike, but a Gateway's hosts and istioctl analyze (IST0132) match
			// the spelled-out one only.
			list[i] = h
		}
	}
	return list
}

// fqdn is the host Istio reads a VirtualService host of namespace ns as.
func fqdn(ns, host string) string {
	if strings.Contains(host, ".") || host == "*" {
		return host
	}
	return host + "." + ns + ".svc." + clusterDomain
}

// appendUnique appends the values not already in list, keeping the first occurrence.
func appendUnique(list []string, values ...string) []string {
	for _, v := range values {
		if v != "" && !slices.Contains(list, v) {
			list = append(list, v)
		}
	}
	return list
}
