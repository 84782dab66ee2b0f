package render

import (
	"fmt"
	"regexp"

	networking "istio.io/api/networking/v1alpha3"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// defaultCookieMaxAge is sessionAffinity.maxAge's default, a day, as in the API.
const defaultCookieMaxAge = 86400

// sticky says whether the routes keep users on the canary by cookie: with
// spec.analysis.sessionAffinity, while traffic is split by weight between the primary and
// the canary. Once the split ends (promotion, rollback) the cookie routes nothing.
func (r *canaryRenderer) sticky() bool {
	return r.c.Spec.Analysis.SessionAffinity != nil && r.w.CanaryWeight > 0 && r.w.PrimaryWeight > 0
}

// cookieValue is the value of the canary's cookie: the revision the canary runs, so that a
// cookie from an earlier rollout does not select the canary of a later one.
func (r *canaryRenderer) cookieValue() string {
	if v := r.c.Status.CurrentRevision; v != "" && cookieValueRE.MatchString(v) {
		return v
	}
	return Revision(&r.target.Spec.Template)
}

// cookieValueRE is what may stand in a cookie's value unquoted (RFC 6265's cookie-octet).
var cookieValueRE = regexp.MustCompile(`^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]+$`)

// setCookie is the Set-Cookie header the responses of one side (the canary's or the
// primary's cookie name) carry on the weighted routes.
func (r *canaryRenderer) setCookie(name string) *networking.Headers {
	sa := r.c.Spec.Analysis.SessionAffinity
	maxAge := sa.MaxAge
	if maxAge <= 0 {
		maxAge = defaultCookieMaxAge
	}
	path := sa.Path
	if path == "" {
		path = "/"
	}
	v := fmt.Sprintf("%s=%s; Max-Age=%d; Path=%s", name, r.cookieValue(), maxAge, path)
	if sa.Domain != "" {
		v += "; Domain=" + sa.Domain
	}
	if sa.SameSite != "" {
		v += "; SameSite=" + sa.SameSite
	}
	for _, flag := range []struct {
		on   bool
		name string
	}{{sa.HTTPOnly, "HttpOnly"}, {sa.Secure, "Secure"}, {sa.Partitioned, "Partitioned"}} {
		if flag.on {
			v += "; " + flag.name
		}
	}
	return &networking.Headers{Response: &networking.Headers_HeaderOperations{Add: map[string]string{"Set-Cookie": v}}}
}

// cookieMatch matches the requests that carry the named cookie of this rollout, among
// any others.
func (r *canaryRenderer) cookieMatch(name string) matchList {
	re := fmt.Sprintf(`^(.*;\s*)?%s=%s(;.*)?$`, regexp.QuoteMeta(name), regexp.QuoteMeta(r.cookieValue()))
	return matchList{
		src:  []matchSrc{{r.e, "spec.analysis.sessionAffinity"}},
		reqs: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{"cookie": {MatchType: &networking.StringMatch_Regex{Regex: re}}}}},
	}
}

// stickyRoutes are base (a weighted route, before its match and destinations are set) for
// the requests that match match and carry the canary's cookie, all to the canary, and with
// primaryCookieName, then those that carry the primary's, all to the primary.
func (r *canaryRenderer) stickyRoutes(base *networking.HTTPRoute, match matchList) []*networking.HTTPRoute {
	sa := r.c.Spec.Analysis.SessionAffinity
	route := func(suffix, cookie string, to []*networking.HTTPRouteDestination) *networking.HTTPRoute {
		rt := cloneMsg(base)
		if rt.Name != "" {
			rt.Name += suffix
		}
		rt.Match = r.cookieMatch(cookie).and(match).reqs
		rt.Route = to
		return rt
	}
	out := []*networking.HTTPRoute{route("-sticky", sa.CookieName, r.canaryOnly())}
	if sa.PrimaryCookieName != "" {
		out = append(out, route("-sticky-primary", sa.PrimaryCookieName,
			[]*networking.HTTPRouteDestination{{Destination: r.destination(PrimaryName(r.name)), Weight: 100}}))
	}
	return out
}

// checkSessionAffinity refuses session affinity where no weighted split keeps it: A/B
// testing routes by its own match, blue/green moves all traffic at once.
func checkSessionAffinity(e *errs, a *meshv1.CanaryAnalysis) {
	if a.SessionAffinity == nil {
		return
	}
	if sa := a.SessionAffinity; sa.PrimaryCookieName == sa.CookieName {
		e.invalid("spec.analysis.sessionAffinity.primaryCookieName", "is the same as cookieName: the primary's and the canary's users would be told apart by nothing")
	}
	if sa := a.SessionAffinity; sa.SameSite == "None" && !sa.Secure {
		e.warn("spec.analysis.sessionAffinity.sameSite", "None without secure: browsers drop such cookies")
	}
	if a.StepWeight == nil && len(a.StepWeights) == 0 {
		e.invalid("spec.analysis.sessionAffinity", "needs a weighted rollout (stepWeight or stepWeights): A/B testing and blue/green have no weighted split to keep users out of")
	}
}
