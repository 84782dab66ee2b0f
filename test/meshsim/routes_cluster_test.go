package meshsim

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/testenv"
)

// TestIstiodMeshPolicyRouteActions: the VirtualService canopy renders for a MeshPolicy's
// redirect, direct response and weighted destinations, translated by a real istiod,
// answers as Envoy would: 301 and 410 from the client's sidecar, and an 80/20 split
// between two Services of the namespace. istioctl analyze finds nothing (testenv runs it).
func TestIstiodMeshPolicyRouteActions(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	ctx := t.Context()
	vs := createReviews(t, ns, 100, 0)
	if err := env.Client.Delete(ctx, vs); err != nil { // the policy writes the host's routes
		t.Fatal(err)
	}
	svc := &corev1.Service{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reviews"}, svc); err != nil {
		t.Fatal(err)
	}
	p := &meshv1.MeshPolicy{}
	p.Name, p.Namespace = "reviews", ns
	p.Spec.TargetRef.Name = "reviews"
	prefix := func(s string) *meshv1.HTTPMatch {
		return &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Prefix: ptr.To(s)}}
	}
	p.Spec.Routes = []meshv1.Route{
		{Name: "moved", Match: prefix("/old"), RouteActions: meshv1.RouteActions{Redirect: &meshv1.RouteRedirect{URI: "/new"}}},
		{Name: "gone", Match: prefix("/gone"), RouteActions: meshv1.RouteActions{DirectResponse: &meshv1.DirectResponse{Status: 410, Body: "gone"}}},
		{Name: "split", RouteActions: meshv1.RouteActions{
			CorsPolicy:   &meshv1.CorsPolicy{AllowOrigins: []meshv1.StringMatch{{Exact: ptr.To("https://shop.example.com")}}, AllowMethods: []string{"GET"}},
			Destinations: []meshv1.RouteDestination{{Host: "reviews-primary", Weight: 80}, {Host: "reviews-canary", Weight: 20}},
		}},
	}
	set, err := render.MeshPolicyObjects(p, svc, render.MeshPolicyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range set.VirtualServices {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		path string
		want map[string]int64 // "code workload" -> requests of 500
	}{
		{"/old/page", map[string]int64{"301 ": 500}},
		{"/gone", map[string]int64{"410 ": 500}},
		{"/", map[string]int64{"200 reviews-primary": 400, "200 reviews": 100}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			sim := startSim(t, Options{TickInterval: -1, Namespaces: []string{ns}, Path: tc.path})
			waitForIstiod(t, sim, ns, func(w *World, cfg *envoyConfig) error {
				vh := virtualHost(cfg.Routes["9080"], "reviews")
				if vh == nil || len(vh.Routes) < 3 {
					return fmt.Errorf("no routes of the policy for reviews yet")
				}
				return nil
			})
			if err := sim.Tick(ctx, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			got := map[string]int64{}
			for _, r := range sim.Stats().Routes {
				got[fmt.Sprintf("%d %s", r.Code, r.Workload)] += r.Requests
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("requests to %s by answer: %v, want %v", tc.path, got, tc.want)
			}
		})
	}
}
