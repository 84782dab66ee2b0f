package meshsim

import (
	"regexp"
	"strings"

	apinetworkingv1 "istio.io/api/networking/v1"
)

// request is one class of synthetic requests: all requests of a class route alike.
type request struct {
	Authority       string
	Scheme          string
	Method          string
	Path            string
	Headers         map[string]string // lower-case names
	Gateway         string            // "mesh" or the gateway it entered by
	SourceNamespace string
	SourceLabels    map[string]string
}

// matchRoute returns the index of the first HTTP route of the VirtualService the request
// takes, or -1 when none does (Envoy answers 404, NR).
func matchRoute(routes []*apinetworkingv1.HTTPRoute, req request) int {
	for i, r := range routes {
		if len(r.Match) == 0 {
			return i
		}
		for _, m := range r.Match {
			if matches(m, req) {
				return i
			}
		}
	}
	return -1
}

// matches evaluates one HTTPMatchRequest: every condition it sets must hold. Ports and
// stat prefixes are not modelled (every synthetic request is on the Service's port).
func matches(m *apinetworkingv1.HTTPMatchRequest, req request) bool {
	if m == nil {
		return true
	}
	path := req.Path
	if m.IgnoreUriCase {
		path = strings.ToLower(path)
	}
	switch {
	case !stringMatches(m.Uri, path, m.IgnoreUriCase),
		!stringMatches(m.Scheme, req.Scheme, false),
		!stringMatches(m.Method, req.Method, false),
		!stringMatches(m.Authority, req.Authority, false):
		return false
	case len(m.Gateways) > 0 && !contains(m.Gateways, req.Gateway):
		return false
	case m.SourceNamespace != "" && m.SourceNamespace != req.SourceNamespace:
		return false
	case len(m.QueryParams) > 0:
		return false // synthetic requests carry no query string
	}
	for k, v := range m.SourceLabels {
		if req.SourceLabels[k] != v {
			return false
		}
	}
	for name, sm := range m.Headers {
		value, ok := req.Headers[strings.ToLower(name)]
		if !ok || !stringMatches(sm, value, false) {
			return false
		}
	}
	for name, sm := range m.WithoutHeaders {
		value, ok := req.Headers[strings.ToLower(name)]
		if ok && stringMatches(sm, value, false) {
			return false
		}
	}
	return true
}

// stringMatches applies an Istio StringMatch; a nil match matches anything, an empty one
// (no exact, prefix or regex) only checks presence, which the caller did.
func stringMatches(sm *apinetworkingv1.StringMatch, value string, lower bool) bool {
	if sm == nil {
		return true
	}
	switch t := sm.MatchType.(type) {
	case *apinetworkingv1.StringMatch_Exact:
		want := t.Exact
		if lower {
			want = strings.ToLower(want)
		}
		return value == want
	case *apinetworkingv1.StringMatch_Prefix:
		want := t.Prefix
		if lower {
			want = strings.ToLower(want)
		}
		return strings.HasPrefix(value, want)
	case *apinetworkingv1.StringMatch_Regex:
		// Envoy's safe_regex is RE2 matched against the whole value.
		re, err := regexp.Compile(`^(?:` + t.Regex + `)$`)
		return err == nil && re.MatchString(value)
	}
	return true
}

// mirror is one mirror target of a route and the percentage of its requests copied there.
type mirror struct {
	Destination *apinetworkingv1.Destination
	Percent     float64
}

// mirrors lists a route's mirrors with Istio's defaults: mirror copies 100% unless
// mirrorPercentage (or the older mirrorPercent) says otherwise; each entry of mirrors
// carries its own percentage, 100% when unset.
func mirrors(r *apinetworkingv1.HTTPRoute) []mirror {
	var out []mirror
	if r.Mirror != nil {
		pct := 100.0
		switch {
		case r.MirrorPercentage != nil:
			pct = r.MirrorPercentage.Value
		case r.MirrorPercent != nil: //nolint:staticcheck // deprecated, but still honoured by Istio
			pct = float64(r.MirrorPercent.Value) //nolint:staticcheck // as above
		}
		out = append(out, mirror{Destination: r.Mirror, Percent: pct})
	}
	for _, m := range r.Mirrors {
		if m == nil || m.Destination == nil {
			continue
		}
		pct := 100.0
		if m.Percentage != nil {
			pct = m.Percentage.Value
		}
		out = append(out, mirror{Destination: m.Destination, Percent: pct})
	}
	for i := range out {
		out[i].Percent = min(max(out[i].Percent, 0), 100)
	}
	return out
}
