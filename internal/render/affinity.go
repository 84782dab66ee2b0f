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

// setCookie is the Set-Cookie header the canary's responses carry on the weighted routes.
func (r *canaryRenderer) setCookie() *networking.Headers {
	sa := r.c.Spec.Analysis.SessionAffinity
	maxAge := sa.MaxAge
	if maxAge <= 0 {
		maxAge = defaultCookieMaxAge
	}
	v := fmt.Sprintf("%s=%s; Max-Age=%d; Path=/", sa.CookieName, r.cookieValue(), maxAge)
	return &networking.Headers{Response: &networking.Headers_HeaderOperations{Add: map[string]string{"Set-Cookie": v}}}
}

// cookieMatch matches the requests that carry the canary's cookie, among any others.
func (r *canaryRenderer) cookieMatch() matchList {
	sa := r.c.Spec.Analysis.SessionAffinity
	re := fmt.Sprintf(`^(.*;\s*)?%s=%s(;.*)?$`, regexp.QuoteMeta(sa.CookieName), regexp.QuoteMeta(r.cookieValue()))
	return matchList{
		src:  []matchSrc{{r.e, "spec.analysis.sessionAffinity"}},
		reqs: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{"cookie": {MatchType: &networking.StringMatch_Regex{Regex: re}}}}},
	}
}

// stickyRoute is base (a weighted route, before its match and destinations are set) for
// the requests that match match and carry the canary's cookie: all to the canary.
func (r *canaryRenderer) stickyRoute(base *networking.HTTPRoute, match matchList) *networking.HTTPRoute {
	rt := cloneMsg(base)
	if rt.Name != "" {
		rt.Name += "-sticky"
	}
	rt.Match = r.cookieMatch().and(match).reqs
	rt.Route = r.canaryOnly()
	return rt
}

// checkSessionAffinity refuses session affinity where no weighted split keeps it: A/B
// testing routes by its own match, blue/green moves all traffic at once.
func checkSessionAffinity(e *errs, a *meshv1.CanaryAnalysis) {
	if a.SessionAffinity == nil {
		return
	}
	if a.StepWeight == nil && len(a.StepWeights) == 0 {
		e.invalid("spec.analysis.sessionAffinity", "needs a weighted rollout (stepWeight or stepWeights): A/B testing and blue/green have no weighted split to keep users out of")
	}
}
