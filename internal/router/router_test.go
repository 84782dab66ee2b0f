package router

import (
	"testing"

	"google.golang.org/protobuf/proto"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
	"canopy.dev/canopy/internal/render"
)

func canary(p meshv1.RoutingProvider) *meshv1.Canary {
	c := &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "shop"},
		Spec: meshv1.CanarySpec{
			TargetRef: meshv1.TargetRef{Name: "reviews"},
			Service:   meshv1.CanaryService{Port: 9080},
		},
	}
	if p != "" {
		c.Spec.Routing = &meshv1.CanaryRouting{Provider: p}
	}
	return c
}

func target() *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "shop"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "reviews"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "reviews"}}},
		},
	}
}

func TestForChoosesByProvider(t *testing.T) {
	for p, want := range map[meshv1.RoutingProvider]meshv1.RoutingProvider{
		"": meshv1.RoutingIstio, meshv1.RoutingIstio: meshv1.RoutingIstio, meshv1.RoutingGatewayAPI: meshv1.RoutingGatewayAPI,
	} {
		r, err := For(canary(p))
		if err != nil || r.Provider() != want {
			t.Errorf("For(provider %q) = %v, %v; want %s", p, r, err, want)
		}
	}
	if _, err := For(canary("linkerd")); render.ReasonOf(err) != meshv1.ReasonInvalidSpec {
		t.Errorf("an unknown provider: %v, want an InvalidSpec field error", err)
	}
}

// The Istio router is render.CanaryObjects, in apply order: Services, DestinationRules,
// then the VirtualService, which carries the split.
func TestIstioIsTheRenderer(t *testing.T) {
	c, rt := canary(""), progress.Routing{PrimaryWeight: 70, CanaryWeight: 30}
	set, err := Istio{}.Render(Input{Canary: c, Target: target(), Routing: rt})
	if err != nil {
		t.Fatal(err)
	}
	want, err := render.CanaryObjects(c, target(), progress.Routing{PrimaryWeight: 70, CanaryWeight: 30}, nil)
	if err != nil {
		t.Fatal(err)
	}
	vs, ok := set.Route().(*istionetv1.VirtualService)
	if !ok || !proto.Equal(&vs.Spec, &want.VirtualService.Spec) {
		t.Fatalf("route %v, want the VirtualService %v", set.Route(), want.VirtualService)
	}
	if len(set.All()) != 6 || len(set.Objects) != 3 {
		t.Fatalf("%d objects (%d of the router's), want 3 Services, 2 DestinationRules and the VirtualService", len(set.All()), len(set.Objects))
	}
	routes, rest := Istio{}.Owned(c)
	if len(routes) != 1 || routes[0].GetName() != "reviews" || len(rest) != 2 {
		t.Fatalf("owned routes %v, rest %v", routes, rest)
	}
}

func TestGatewayAPIRendersAnHTTPRoute(t *testing.T) {
	c := canary(meshv1.RoutingGatewayAPI)
	set, err := GatewayAPI{}.Render(Input{Canary: c, Target: target(), Routing: progress.Routing{PrimaryWeight: 100}})
	if err != nil {
		t.Fatal(err)
	}
	if hr, ok := set.Route().(*gwapiv1.HTTPRoute); !ok || hr.Name != "reviews" || len(set.Services) != 3 {
		t.Fatalf("route %v and %d Services, want HTTPRoute reviews and 3", set.Route(), len(set.Services))
	}
	if routes, rest := (GatewayAPI{}).Owned(c); len(routes) != 1 || len(rest) != 0 {
		t.Fatalf("owned routes %v, rest %v", routes, rest)
	}
}
