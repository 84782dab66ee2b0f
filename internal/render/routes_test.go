package render

import (
	"strings"
	"testing"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
)

// routeActionsPolicy has a route of each kind: a redirect, a direct response, a CORS
// policy with a weighted split, and the default route to the Service.
func routeActionsPolicy() *meshv1.MeshPolicy {
	p := paymentPolicy()
	p.Spec.Routes = []meshv1.Route{
		{Name: "moved", Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Prefix: ptr("/old")}},
			RouteActions: meshv1.RouteActions{Redirect: &meshv1.RouteRedirect{URI: "/new", Authority: "pay.example.com", Scheme: "https", RedirectCode: 308}}},
		{Name: "gone", Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Prefix: ptr("/gone")}},
			RouteActions: meshv1.RouteActions{DirectResponse: &meshv1.DirectResponse{Status: 410, Body: "gone for good"}}},
		{Name: "api", Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Prefix: ptr("/api")}}, Port: ptr[int32](8080),
			RouteActions: meshv1.RouteActions{
				CorsPolicy: &meshv1.CorsPolicy{AllowOrigins: []meshv1.StringMatch{{Exact: ptr("https://shop.example.com")}, {Regex: ptr(`https://.*\.example\.com`)}},
					AllowMethods: []string{"GET", "POST"}, AllowHeaders: []string{"authorization"}, MaxAge: "24h", AllowCredentials: ptr(true)},
				Destinations: []meshv1.RouteDestination{{Host: "payment-processing", Weight: 90}, {Host: "payment-processing-v2", Subset: "v2", Port: ptr[int32](8080), Weight: 10}},
			}},
	}
	return p
}

func TestMeshPolicyRouteActionsGolden(t *testing.T) {
	set := renderPolicy(t, routeActionsPolicy(), MeshPolicyOptions{CertificateReady: true})
	vs := set.VirtualServices[0]
	expectGolden(t, "meshpolicy-route-actions.yaml", []Object{vs})
	expectValid(t, vs)
	for _, rt := range vs.Spec.Http {
		if (rt.Redirect != nil || rt.DirectResponse != nil) && len(rt.Route) > 0 {
			t.Errorf("route %s answers by itself and forwards too", rt.Name)
		}
	}
}

func TestMeshPolicyRouteActionsErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(rs []meshv1.Route)
		field  string
		reason string
	}{
		{name: "redirect and direct response", mutate: func(rs []meshv1.Route) { rs[0].DirectResponse = &meshv1.DirectResponse{Status: 200} },
			field: "spec.routes[0]", reason: meshv1.ReasonInconsistent},
		{name: "redirect with a fault", mutate: func(rs []meshv1.Route) {
			rs[0].Fault = &meshv1.Fault{Abort: &meshv1.FaultAbort{Percentage: 1, HTTPStatus: 500}}
		}, field: "spec.routes[0]", reason: meshv1.ReasonInconsistent},
		{name: "empty redirect", mutate: func(rs []meshv1.Route) { rs[0].Redirect = &meshv1.RouteRedirect{} }, field: "spec.routes[0].redirect"},
		{name: "redirect code", mutate: func(rs []meshv1.Route) { rs[0].Redirect.RedirectCode = 200 }, field: "spec.routes[0].redirect.redirectCode"},
		{name: "status", mutate: func(rs []meshv1.Route) { rs[1].DirectResponse.Status = 99 }, field: "spec.routes[1].directResponse.status"},
		{name: "body", mutate: func(rs []meshv1.Route) { rs[1].DirectResponse.Body = strings.Repeat("x", 4097) }, field: "spec.routes[1].directResponse.body"},
		{name: "weights", mutate: func(rs []meshv1.Route) { rs[2].Destinations[1].Weight = 20 }, field: "spec.routes[2].destinations"},
		{name: "host of another namespace", mutate: func(rs []meshv1.Route) { rs[2].Destinations[1].Host = "payments.other.svc.cluster.local" },
			field: "spec.routes[2].destinations[1].host"},
		{name: "CORS max age", mutate: func(rs []meshv1.Route) { rs[2].CorsPolicy.MaxAge = "forever" }, field: "spec.routes[2].corsPolicy.maxAge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := routeActionsPolicy()
			tc.mutate(p.Spec.Routes)
			expectPolicyError(t, p, tc.field, tc.reason)
		})
	}
}

// With a Canary, a route that answers by itself or names its destinations keeps them: the
// Canary's split is for the other routes. With the Gateway API, the redirect is a
// RequestRedirect filter, and what has no equivalent is said.
func TestCanaryComposesRouteActions(t *testing.T) {
	p := reviewsPolicy()
	p.Spec.Ingress, p.Spec.Resilience = nil, nil
	p.Spec.Routes = []meshv1.Route{
		{Name: "moved", Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Prefix: ptr("/old")}}, RouteActions: meshv1.RouteActions{Redirect: &meshv1.RouteRedirect{URI: "/new"}}},
		{Name: "gone", Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Prefix: ptr("/gone")}}, RouteActions: meshv1.RouteActions{DirectResponse: &meshv1.DirectResponse{Status: 410}}},
		{Name: "v3", Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Prefix: ptr("/v3")}}, RouteActions: meshv1.RouteActions{Destinations: []meshv1.RouteDestination{{Host: "reviews-v3", Subset: "a", Port: ptr[int32](9080), Weight: 100}}}},
	}
	set := renderCanary(t, reviewsCanary(), progress.Routing{PrimaryWeight: 50, CanaryWeight: 50, Mirror: true, MirrorWeight: 100}, p)
	vs := set.VirtualService
	expectValid(t, vs)
	byName := map[string]int{}
	for i, rt := range vs.Spec.Http {
		byName[rt.Name] = i
	}
	moved, gone, v3 := vs.Spec.Http[byName["moved"]], vs.Spec.Http[byName["gone"]], vs.Spec.Http[byName["v3"]]
	if moved.Redirect.GetUri() != "/new" || len(moved.Route) != 0 || moved.Mirror != nil {
		t.Errorf("the redirect route: %v", moved)
	}
	if gone.DirectResponse.GetStatus() != 410 || len(gone.Route) != 0 {
		t.Errorf("the direct response route: %v", gone)
	}
	if len(v3.Route) != 1 || v3.Route[0].Destination.Host != "reviews-v3" || v3.Mirror != nil {
		t.Errorf("the v3 route: %v", v3)
	}

	gs, err := CanaryGatewayObjects(reviewsCanary(), reviewsTarget(), progress.Routing{PrimaryWeight: 50, CanaryWeight: 50}, p)
	if err != nil {
		t.Fatal(err)
	}
	var redirect bool
	for _, r := range gs.HTTPRoute.Spec.Rules {
		for _, f := range r.Filters {
			if f.RequestRedirect != nil && *f.RequestRedirect.Path.ReplaceFullPath == "/new" && *f.RequestRedirect.StatusCode == 301 && len(r.BackendRefs) == 0 {
				redirect = true
			}
		}
	}
	if !redirect {
		t.Errorf("no RequestRedirect rule:\n%s", asYAML(t, gs.HTTPRoute))
	}
	var said []string
	for _, u := range gs.Unsupported {
		said = append(said, u.Field)
	}
	if got := strings.Join(said, ","); got != "spec.routes[1].directResponse,spec.routes[2].destinations[0].subset" {
		t.Errorf("unsupported: %v", gs.Unsupported)
	}
}
