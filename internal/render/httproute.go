package render

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilptr "k8s.io/utils/ptr"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
)

// GatewaySet is everything rendered for a Canary routed with the Gateway API.
type GatewaySet struct {
	// Services are the apex, primary and canary Services, as for Istio (CanarySet.Services).
	Services []*corev1.Service
	// HTTPRoute is "<name>": its parent is the apex Service (mesh routing, GAMMA) and the
	// Gateways spec.service.gateways names (ingress); its rules send to the primary and
	// canary Services by weight.
	HTTPRoute *gwapiv1.HTTPRoute
	// Warnings are settings that render but are overridden or probably unintended.
	Warnings []Warning
	// Unsupported are settings of the Canary or its MeshPolicy that the Gateway API (its
	// standard channel, as canopy writes it) cannot express: they are not in force.
	Unsupported []Warning
}

// CanaryGatewayObjects renders the Services and the HTTPRoute of a Canary routed with the
// Gateway API. The routes are composed exactly as for Istio (CanaryObjects: the Canary's
// match, the A/B route, the MeshPolicy's routes, headers and timeouts) and then written as
// HTTPRoute rules; what has no HTTPRoute equivalent is listed in GatewaySet.Unsupported.
// Errors are as CanaryObjects'.
func CanaryGatewayObjects(c *meshv1.Canary, target *appsv1.Deployment, w progress.Routing, policy *meshv1.MeshPolicy) (GatewaySet, error) {
	r, err := newCanaryRenderer(c, target, w, policy)
	if err != nil {
		return GatewaySet{}, err
	}
	e := r.e
	set := GatewaySet{Services: r.services()}
	vs := r.virtualService()
	u := newErrs()
	gw := gatewayRenderer{canaryRenderer: r, u: u}
	set.HTTPRoute = gw.httpRoute(vs.Spec.Http)
	gw.unsupported()
	if err := e.err(); err != nil {
		return GatewaySet{}, err
	}
	set.Warnings = e.warnings()
	set.Unsupported = u.warnings()
	return set, nil
}

type gatewayRenderer struct {
	*canaryRenderer
	u *errs // what the Gateway API cannot express
}

// serviceKind is the parentRef and backendRef kind of a Service: the core group, "".
const serviceKind = "Service"

func (g *gatewayRenderer) httpRoute(routes []*networking.HTTPRoute) *gwapiv1.HTTPRoute {
	port := gwapiv1.PortNumber(g.c.Spec.Service.Port)
	hr := &gwapiv1.HTTPRoute{
		TypeMeta:   metav1.TypeMeta{APIVersion: gwapiv1.GroupVersion.String(), Kind: "HTTPRoute"},
		ObjectMeta: metav1.ObjectMeta{Name: g.name, Namespace: g.c.Namespace, Labels: g.labels()},
	}
	// The apex Service as parent: every sidecar sending to it routes by these rules.
	hr.Spec.ParentRefs = []gwapiv1.ParentReference{{
		Group: utilptr.To(gwapiv1.Group("")), Kind: utilptr.To(gwapiv1.Kind(serviceKind)), Name: gwapiv1.ObjectName(g.name), Port: &port,
	}}
	for _, gwName := range g.c.Spec.Service.Gateways {
		ref := gwapiv1.ParentReference{Group: utilptr.To(gwapiv1.Group(gwapiv1.GroupName)), Kind: utilptr.To(gwapiv1.Kind("Gateway"))}
		if ns, name, ok := strings.Cut(gwName, "/"); ok {
			ref.Namespace, ref.Name = utilptr.To(gwapiv1.Namespace(ns)), gwapiv1.ObjectName(name)
		} else {
			ref.Name = gwapiv1.ObjectName(gwName)
		}
		hr.Spec.ParentRefs = append(hr.Spec.ParentRefs, ref)
	}
	// Hostnames only select requests arriving through a Gateway; the mesh parent routes
	// the apex Service's own traffic whatever its Host header.
	if len(g.c.Spec.Service.Gateways) > 0 {
		for _, h := range g.c.Spec.Service.Hosts {
			hr.Spec.Hostnames = append(hr.Spec.Hostnames, gwapiv1.Hostname(h))
		}
	}
	for i, rt := range routes {
		hr.Spec.Rules = append(hr.Spec.Rules, g.rule(i, rt))
	}
	return hr
}

// rule writes one composed route as an HTTPRoute rule. The Gateway API orders rules by how
// specific their matches are, not by their place in the list: the A/B rule, which adds
// matches to the default one, is chosen before it as in the VirtualService.
func (g *gatewayRenderer) rule(i int, rt *networking.HTTPRoute) gwapiv1.HTTPRouteRule {
	path := fmt.Sprintf("rules[%d]", i)
	var rule gwapiv1.HTTPRouteRule
	if rt.Name != "" {
		rule.Name = utilptr.To(gwapiv1.SectionName(rt.Name))
	}
	for _, m := range rt.Match {
		rule.Matches = append(rule.Matches, g.match(path, m))
	}
	for _, d := range rt.Route {
		ref := g.backend(d.GetDestination().GetHost())
		if p := d.GetDestination().GetPort().GetNumber(); p != 0 {
			ref.Port = utilptr.To(gwapiv1.PortNumber(p)) // a MeshPolicy route's destination
		}
		rule.BackendRefs = append(rule.BackendRefs, gwapiv1.HTTPBackendRef{BackendRef: gwapiv1.BackendRef{
			BackendObjectReference: ref,
			// Always explicit: an unset weight is 1, not 0.
			Weight: utilptr.To(d.Weight),
		}})
	}
	if rt.Timeout != nil {
		rule.Timeouts = &gwapiv1.HTTPRouteTimeouts{Request: utilptr.To(gatewayDuration(rt.Timeout.AsDuration()))}
	}
	if h := rt.Headers; h != nil {
		if f := headerFilter(h.Request); f != nil {
			rule.Filters = append(rule.Filters, gwapiv1.HTTPRouteFilter{Type: gwapiv1.HTTPRouteFilterRequestHeaderModifier, RequestHeaderModifier: f})
		}
		if f := headerFilter(h.Response); f != nil {
			rule.Filters = append(rule.Filters, gwapiv1.HTTPRouteFilter{Type: gwapiv1.HTTPRouteFilterResponseHeaderModifier, ResponseHeaderModifier: f})
		}
	}
	if a := rt.GetRewrite().GetAuthority(); a != "" {
		rule.Filters = append(rule.Filters, gwapiv1.HTTPRouteFilter{Type: gwapiv1.HTTPRouteFilterURLRewrite,
			URLRewrite: &gwapiv1.HTTPURLRewriteFilter{Hostname: utilptr.To(gwapiv1.PreciseHostname(a))}})
	}
	if c := rt.CorsPolicy; c != nil {
		rule.Filters = append(rule.Filters, gwapiv1.HTTPRouteFilter{Type: gwapiv1.HTTPRouteFilterCORS, CORS: corsFilter(c)})
	}
	if rd := rt.Redirect; rd != nil {
		rule.Filters = append(rule.Filters, gwapiv1.HTTPRouteFilter{Type: gwapiv1.HTTPRouteFilterRequestRedirect, RequestRedirect: redirectFilter(rd)})
	}
	if rt.Mirror != nil {
		mirror := &gwapiv1.HTTPRequestMirrorFilter{BackendRef: g.backend(rt.Mirror.Host)}
		if p := rt.MirrorPercentage; p != nil && p.Value < 100 {
			mirror.Percent = utilptr.To(int32(p.Value))
		}
		rule.Filters = append(rule.Filters, gwapiv1.HTTPRouteFilter{Type: gwapiv1.HTTPRouteFilterRequestMirror, RequestMirror: mirror})
	}
	return rule
}

// redirectFilter writes an Istio redirect as the Gateway API's RequestRedirect filter.
func redirectFilter(rd *networking.HTTPRedirect) *gwapiv1.HTTPRequestRedirectFilter {
	f := &gwapiv1.HTTPRequestRedirectFilter{StatusCode: utilptr.To(301)}
	if rd.RedirectCode != 0 {
		f.StatusCode = utilptr.To(int(rd.RedirectCode))
	}
	if rd.Scheme != "" {
		f.Scheme = utilptr.To(rd.Scheme)
	}
	if a := rd.Authority; a != "" {
		host, port, ok := strings.Cut(a, ":")
		f.Hostname = utilptr.To(gwapiv1.PreciseHostname(host))
		if n, err := strconv.Atoi(port); ok && err == nil {
			f.Port = utilptr.To(gwapiv1.PortNumber(n))
		}
	}
	if rd.Uri != "" {
		f.Path = &gwapiv1.HTTPPathModifier{Type: gwapiv1.FullPathHTTPPathModifier, ReplaceFullPath: utilptr.To(rd.Uri)}
	}
	return f
}

func (g *gatewayRenderer) backend(host string) gwapiv1.BackendObjectReference {
	return gwapiv1.BackendObjectReference{
		Group: utilptr.To(gwapiv1.Group("")), Kind: utilptr.To(gwapiv1.Kind(serviceKind)),
		Name: gwapiv1.ObjectName(host), Port: utilptr.To(gwapiv1.PortNumber(g.c.Spec.Service.Port)),
	}
}

// match writes an Istio match as an HTTPRoute match. Istio's prefixes are prefixes of the
// string, the Gateway API's PathPrefix one of path segments: a prefix other than "/" is
// written as the equivalent regular expression, which Istio supports.
func (g *gatewayRenderer) match(path string, m *networking.HTTPMatchRequest) gwapiv1.HTTPRouteMatch {
	var out gwapiv1.HTTPRouteMatch
	if u := m.GetUri(); u != nil {
		t, v := gatewayStringMatch(u)
		pt := gwapiv1.PathMatchType(t)
		if t == "Prefix" {
			pt = gwapiv1.PathMatchPathPrefix
		}
		out.Path = &gwapiv1.HTTPPathMatch{Type: &pt, Value: utilptr.To(v)}
	}
	if meth := m.GetMethod(); meth != nil {
		if ex := meth.GetExact(); ex != "" && validMethod(ex) {
			out.Method = utilptr.To(gwapiv1.HTTPMethod(ex))
		} else {
			g.u.warn(path+".method", "the Gateway API matches a method by its exact name (GET, POST, ...) only: this match is not in force")
		}
	}
	for _, k := range sortedKeys(m.GetHeaders()) {
		t, v := gatewayStringMatch(m.GetHeaders()[k])
		out.Headers = append(out.Headers, gwapiv1.HTTPHeaderMatch{Type: utilptr.To(gwapiv1.HeaderMatchType(t)), Name: gwapiv1.HTTPHeaderName(k), Value: v})
	}
	for _, k := range sortedKeys(m.GetQueryParams()) {
		t, v := gatewayStringMatch(m.GetQueryParams()[k])
		out.QueryParams = append(out.QueryParams, gwapiv1.HTTPQueryParamMatch{Type: utilptr.To(gwapiv1.QueryParamMatchType(t)), Name: gwapiv1.HTTPHeaderName(k), Value: v})
	}
	return out
}

// gatewayStringMatch returns the match type (Exact, RegularExpression, or Prefix for "/"
// only) and value of an Istio string match.
func gatewayStringMatch(m *networking.StringMatch) (string, string) {
	switch {
	case m.GetExact() != "":
		return "Exact", m.GetExact()
	case m.GetPrefix() == "/":
		return "Prefix", "/"
	case m.GetPrefix() != "":
		return "RegularExpression", regexp.QuoteMeta(m.GetPrefix()) + ".*"
	default:
		return "RegularExpression", m.GetRegex()
	}
}

// corsOrigin is an exact origin match as a Gateway API CORS origin, when it is written as
// the API's pattern wants it (nil: no exact match).
func corsOrigin(exact *string) (gwapiv1.CORSOrigin, bool) {
	if exact == nil || !corsOriginPattern.MatchString(*exact) {
		return "", false
	}
	return gwapiv1.CORSOrigin(*exact), true
}

// corsOriginPattern is the Gateway API's CORSOrigin schema.
var corsOriginPattern = regexp.MustCompile(`(^\*$)|(^(http(s)?):\/\/(((\*\.)?([a-zA-Z0-9\-]+\.)*[a-zA-Z0-9-]+|\*)(:([0-9]{1,5}))?)$)`)

// corsFilter writes an Istio CORS policy as the Gateway API's CORS filter, leaving out the
// origins and methods it cannot express (reported by unsupported).
func corsFilter(c *networking.CorsPolicy) *gwapiv1.HTTPCORSFilter {
	f := &gwapiv1.HTTPCORSFilter{}
	for _, o := range c.AllowOrigins {
		if e := o.GetExact(); e != "" {
			if origin, ok := corsOrigin(&e); ok {
				f.AllowOrigins = append(f.AllowOrigins, origin)
			}
		}
	}
	for _, m := range c.AllowMethods {
		if validMethod(m) || m == "*" {
			f.AllowMethods = append(f.AllowMethods, gwapiv1.HTTPMethodWithWildcard(m))
		}
	}
	for _, h := range c.AllowHeaders {
		f.AllowHeaders = append(f.AllowHeaders, gwapiv1.HTTPHeaderName(h))
	}
	for _, h := range c.ExposeHeaders {
		f.ExposeHeaders = append(f.ExposeHeaders, gwapiv1.HTTPHeaderName(h))
	}
	if c.MaxAge != nil {
		f.MaxAge = int32(c.MaxAge.AsDuration() / time.Second)
	}
	if c.AllowCredentials != nil {
		f.AllowCredentials = utilptr.To(c.AllowCredentials.GetValue())
	}
	return f
}

func validMethod(m string) bool {
	switch gwapiv1.HTTPMethod(m) {
	case gwapiv1.HTTPMethodGet, gwapiv1.HTTPMethodHead, gwapiv1.HTTPMethodPost, gwapiv1.HTTPMethodPut, gwapiv1.HTTPMethodDelete,
		gwapiv1.HTTPMethodConnect, gwapiv1.HTTPMethodOptions, gwapiv1.HTTPMethodTrace, gwapiv1.HTTPMethodPatch:
		return true
	}
	return false
}

func headerFilter(ops *networking.Headers_HeaderOperations) *gwapiv1.HTTPHeaderFilter {
	if ops == nil || (len(ops.Set) == 0 && len(ops.Add) == 0 && len(ops.Remove) == 0) {
		return nil
	}
	f := &gwapiv1.HTTPHeaderFilter{Remove: append([]string(nil), ops.Remove...)}
	for _, k := range sortedKeys(ops.Set) {
		f.Set = append(f.Set, gwapiv1.HTTPHeader{Name: gwapiv1.HTTPHeaderName(k), Value: ops.Set[k]})
	}
	for _, k := range sortedKeys(ops.Add) {
		f.Add = append(f.Add, gwapiv1.HTTPHeader{Name: gwapiv1.HTTPHeaderName(k), Value: ops.Add[k]})
	}
	return f
}

// gatewayDuration writes a duration in the Gateway API's format (GEP-2257): hours,
// minutes, seconds and milliseconds, each written only when not zero; finer parts are cut.
func gatewayDuration(d time.Duration) gwapiv1.Duration {
	var b strings.Builder
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}} {
		if n := d / u.unit; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.unit
		}
	}
	if b.Len() == 0 {
		return "0s"
	}
	return gwapiv1.Duration(b.String())
}

// corsUnsupported reports the parts of a CORS policy the Gateway API's CORS filter cannot
// express.
func corsUnsupported(u *errs, path string, c *meshv1.CorsPolicy) {
	if c == nil {
		return
	}
	for i, o := range c.AllowOrigins {
		if _, ok := corsOrigin(o.Exact); !ok || o.Prefix != nil || o.Regex != nil {
			u.warn(fmt.Sprintf("%s.allowOrigins[%d]", path, i),
				"the Gateway API allows an origin by its exact scheme://host[:port] (a \"*.\" host prefix or \"*\" at most), not by a prefix or a regular expression: not in force")
		}
	}
	for i, m := range c.AllowMethods {
		if !validMethod(m) && m != "*" {
			u.warn(fmt.Sprintf("%s.allowMethods[%d]", path, i), "%q is not a method the Gateway API's CORS filter allows: not in force", m)
		}
	}
}

// unsupported lists the settings the HTTPRoute does not carry: those an Istio
// VirtualService or DestinationRule would.
func (g *gatewayRenderer) unsupported() {
	s := g.c.Spec.Service
	const why = "has no equivalent in the Gateway API's standard channel: not in force with routing.provider gatewayapi"
	if s.Retries != nil {
		g.u.warn("spec.service.retries", "%s (HTTPRoute retries are experimental)", why)
	}
	corsUnsupported(g.u, "spec.service.corsPolicy", s.CorsPolicy)
	if g.c.Spec.Analysis.SessionAffinity != nil {
		g.u.warn("spec.analysis.sessionAffinity", "is not written: the cookie match it needs is a regular expression, whose support the Gateway API leaves to the implementation: not in force with routing.provider gatewayapi")
	}
	if s.TrafficPolicy != nil {
		g.u.warn("spec.service.trafficPolicy", "is an Istio DestinationRule setting, which routing.provider gatewayapi does not write: not in force")
	}
	if g.policy == nil {
		return
	}
	pu := g.u.about(KindMeshPolicy + "/" + g.policy.Name)
	p := g.policy.Spec
	for i, rt := range p.Routes {
		path := fmt.Sprintf("spec.routes[%d]", i)
		if rt.Retries != nil {
			pu.warn(path+".retries", "%s (HTTPRoute retries are experimental)", why)
		}
		if rt.Fault != nil {
			pu.warn(path+".fault", "%s (fault injection)", why)
		}
		corsUnsupported(pu, path+".corsPolicy", rt.CorsPolicy)
		if rt.DirectResponse != nil {
			pu.warn(path+".directResponse", "has no equivalent in the Gateway API: the rule has no backend, and is answered 500 instead")
		}
		for j, d := range rt.Destinations {
			if d.Subset != "" {
				pu.warn(fmt.Sprintf("%s.destinations[%d].subset", path, j), "is an Istio DestinationRule subset, which the Gateway API has not: the HTTPRoute sends to the whole Service %q", d.Host)
			}
		}
		if rt.Rewrite != nil && rt.Rewrite.URI != "" {
			pu.warn(path+".rewrite.uri", "is not written as an HTTPRoute URLRewrite filter (Istio replaces the matched prefix, "+
				"which the Gateway API does only for its own PathPrefix matches): not in force with routing.provider gatewayapi")
		}
	}
	if res := p.Resilience; res != nil {
		if res.Retries != nil {
			pu.warn("spec.resilience.retries", "%s (HTTPRoute retries are experimental)", why)
		}
		if res.LoadBalancer != "" || res.ConnectionPool != nil || res.CircuitBreaker != nil {
			pu.warn("spec.resilience", "loadBalancer, connectionPool and circuitBreaker are Istio DestinationRule settings, which routing.provider gatewayapi does not write: not in force")
		}
	}
	if p.Ingress != nil {
		pu.warn("spec.ingress", "binds the VirtualService to an Istio Gateway; with routing.provider gatewayapi name a Gateway API Gateway in the Canary's spec.service.gateways instead: not in force")
	}
}

// ObservedHTTPRouteWeights reads the primary/canary split of the Canary named name from
// an HTTPRoute as stored, as ObservedWeights does from a VirtualService: the split of its
// rule without matches, or of its first rule to the primary.
func ObservedHTTPRouteWeights(hr *gwapiv1.HTTPRoute, name string) (primary, canary int32, ok bool) {
	if hr == nil {
		return 0, 0, false
	}
	var chosen *gwapiv1.HTTPRouteRule
	for i := range hr.Spec.Rules {
		rule := &hr.Spec.Rules[i]
		toPrimary := false
		for _, b := range rule.BackendRefs {
			toPrimary = toPrimary || string(b.Name) == PrimaryName(name)
		}
		if !toPrimary {
			continue
		}
		if len(rule.Matches) == 0 {
			chosen = rule
			break
		}
		if chosen == nil {
			chosen = rule
		}
	}
	if chosen == nil {
		return 0, 0, false
	}
	for _, b := range chosen.BackendRefs {
		w := utilptr.Deref(b.Weight, 1)
		switch string(b.Name) {
		case PrimaryName(name):
			primary += w
		case CanaryName(name):
			canary += w
		}
	}
	return primary, canary, primary+canary == 100
}
