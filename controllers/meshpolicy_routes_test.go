package controllers

import (
	"strings"
	"testing"

	"k8s.io/utils/ptr"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// The CRD refuses what a route cannot be: two answers at once, weights that do not add up
// to 100, a destination that is a domain name; and a burst smaller than the rate.
func TestMeshPolicyRouteActionsRefusedByTheCRD(t *testing.T) {
	h := newPolicyHarness(t)
	for _, tc := range []struct {
		name   string
		mutate func(s *meshv1.MeshPolicySpec)
		want   string
	}{
		{"redirect and direct response", func(s *meshv1.MeshPolicySpec) {
			s.Routes = []meshv1.Route{{RouteActions: meshv1.RouteActions{Redirect: &meshv1.RouteRedirect{URI: "/x"}, DirectResponse: &meshv1.DirectResponse{Status: 200}}}}
		}, "set at most one of redirect, directResponse and destinations"},
		{"weights", func(s *meshv1.MeshPolicySpec) {
			s.Routes = []meshv1.Route{{RouteActions: meshv1.RouteActions{Destinations: []meshv1.RouteDestination{{Host: "a", Weight: 50}, {Host: "b", Weight: 20}}}}}
		}, "the destinations' weights add up to 100"},
		{"domain", func(s *meshv1.MeshPolicySpec) {
			s.Routes = []meshv1.Route{{RouteActions: meshv1.RouteActions{Destinations: []meshv1.RouteDestination{{Host: "evil.example.com", Weight: 100}}}}}
		}, "spec.routes[0].destinations[0].host"},
		{"redirect with a fault", func(s *meshv1.MeshPolicySpec) {
			s.Routes = []meshv1.Route{{Fault: &meshv1.Fault{Abort: &meshv1.FaultAbort{HTTPStatus: 500, Percentage: 1}}, RouteActions: meshv1.RouteActions{Redirect: &meshv1.RouteRedirect{URI: "/x"}}}}
		}, "cannot have fault or rewrite"},
		{"burst", func(s *meshv1.MeshPolicySpec) { s.RateLimit = &meshv1.RateLimit{Requests: 10, Burst: ptr.To[int32](5)} },
			"burst is the bucket's size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := simplePolicy("refused", "catalog")
			p.Namespace = h.ns
			tc.mutate(&p.Spec)
			err := env.Client.Create(t.Context(), p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("created, or refused for another reason (%v); want %q", err, tc.want)
			}
		})
	}
}
