package router

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
)

// GatewayAPI routes with a Gateway API HTTPRoute "<name>" whose parent is the apex Service
// (mesh routing, GAMMA) and the Gateways spec.service.gateways names
// (render.CanaryGatewayObjects). It writes the standard channel's fields only; settings with
// no equivalent there are reported in Set.Unsupported.
type GatewayAPI struct{}

// Provider is gatewayapi.
func (GatewayAPI) Provider() meshv1.RoutingProvider { return meshv1.RoutingGatewayAPI }

// Render renders the Services and then the HTTPRoute.
func (GatewayAPI) Render(in Input) (Set, error) {
	gs, err := render.CanaryGatewayObjects(in.Canary, in.Target, in.Routing, in.Policy)
	if err != nil {
		return Set{}, err
	}
	return Set{Services: gs.Services, Objects: []client.Object{gs.HTTPRoute}, Warnings: gs.Warnings, Unsupported: gs.Unsupported}, nil
}

// Kinds is HTTPRoute.
func (GatewayAPI) Kinds() []client.Object { return []client.Object{&gwapiv1.HTTPRoute{}} }

// Owned: the HTTPRoute routes; there is nothing else.
func (GatewayAPI) Owned(c *meshv1.Canary) (routes, rest []client.Object) {
	return []client.Object{&gwapiv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: c.Spec.TargetRef.Name}}}, nil
}
