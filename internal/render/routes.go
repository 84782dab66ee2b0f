package render

import (
	"fmt"
	"regexp"

	networking "istio.io/api/networking/v1alpha3"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// serviceName is a Service's name: a route's destinations are Services of the policy's
// namespace, named without a domain, so that a route cannot send anywhere else.
var serviceName = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

var redirectCodes = map[int32]bool{0: true, 301: true, 302: true, 303: true, 307: true, 308: true}

// routeActions renders a MeshPolicy route's CORS policy, redirect and direct response onto
// rt, and checks its destinations; the caller sets rt.Route (see routeDestinations) unless
// the route answers by itself.
func routeActions(e *errs, path string, pr *meshv1.Route, rt *networking.HTTPRoute) {
	a := pr.RouteActions
	if a.CorsPolicy != nil {
		rt.CorsPolicy = cors(e, path+".corsPolicy", a.CorsPolicy)
	}
	set := 0
	for _, on := range []bool{a.Redirect != nil, a.DirectResponse != nil, len(a.Destinations) > 0} {
		if on {
			set++
		}
	}
	if set > 1 {
		e.inconsistent(path, "set at most one of redirect, directResponse and destinations")
	}
	if (a.Redirect != nil || a.DirectResponse != nil) && (pr.Fault != nil || pr.Rewrite != nil) {
		e.inconsistent(path, "a redirect or direct response forwards nothing: it cannot have fault or rewrite")
	}
	if r := a.Redirect; r != nil {
		rp := path + ".redirect"
		if r.URI == "" && r.Authority == "" && r.Scheme == "" {
			e.invalid(rp, "set uri, authority or scheme")
		}
		if !redirectCodes[r.RedirectCode] {
			e.invalid(rp+".redirectCode", "%d is not a redirect status (301, 302, 303, 307, 308)", r.RedirectCode)
		}
		if r.Scheme != "" && r.Scheme != "http" && r.Scheme != "https" {
			e.invalid(rp+".scheme", "%q: http or https", r.Scheme)
		}
		rt.Redirect = &networking.HTTPRedirect{Uri: r.URI, Authority: r.Authority, Scheme: r.Scheme, RedirectCode: uint32(r.RedirectCode)}
	}
	if d := a.DirectResponse; d != nil {
		dp := path + ".directResponse"
		if d.Status < 200 || d.Status > 599 {
			e.invalid(dp+".status", "%d is not an HTTP status (200-599)", d.Status)
		}
		if len(d.Body) > 4096 {
			e.invalid(dp+".body", "is %d bytes long, more than 4096", len(d.Body))
		}
		rt.DirectResponse = &networking.HTTPDirectResponse{Status: uint32(d.Status)}
		if d.Body != "" {
			rt.DirectResponse.Body = &networking.HTTPBody{Specifier: &networking.HTTPBody_String_{String_: d.Body}}
		}
	}
	if answersItself(rt) {
		// Nothing is forwarded: nothing to retry or time out.
		rt.Retries, rt.Timeout = nil, nil
	}
}

// answersItself says whether a route answers without forwarding (a redirect or a direct
// response): it has no destinations, and no mirror.
func answersItself(rt *networking.HTTPRoute) bool {
	return rt.Redirect != nil || rt.DirectResponse != nil
}

// routeDestinations are a route's weighted destinations, Services of the policy's
// namespace; portOf gives the port of a destination that names none (nil: none).
func routeDestinations(e *errs, path string, dests []meshv1.RouteDestination, portOf func(host string) *networking.PortSelector) []*networking.HTTPRouteDestination {
	var out []*networking.HTTPRouteDestination
	var sum int32
	for i, d := range dests {
		dp := fmt.Sprintf("%s.destinations[%d]", path, i)
		if !serviceName.MatchString(d.Host) || len(d.Host) > 63 {
			e.invalid(dp+".host", "%q is not the name of a Service of the policy's namespace (no domain: a route sends to its own namespace only)", d.Host)
		}
		if d.Weight < 0 || d.Weight > 100 {
			e.invalid(dp+".weight", "%d is not a percentage", d.Weight)
		}
		sum += d.Weight
		dst := &networking.Destination{Host: d.Host, Subset: d.Subset}
		switch {
		case d.Port != nil:
			if *d.Port < 1 || *d.Port > 65535 {
				e.invalid(dp+".port", "%d is not a port", *d.Port)
			}
			dst.Port = &networking.PortSelector{Number: uint32(*d.Port)}
		case portOf != nil:
			dst.Port = portOf(d.Host)
		}
		out = append(out, &networking.HTTPRouteDestination{Destination: dst, Weight: d.Weight})
	}
	if len(dests) > 0 && sum != 100 {
		e.invalid(path+".destinations", "the weights add up to %d, not 100", sum)
	}
	return out
}
