package router

import (
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
)

// Istio routes with a VirtualService "<name>" and DestinationRules "<name>-primary" and
// "<name>-canary" (render.CanaryObjects); it expresses every routing setting canopy has.
type Istio struct{}

// Provider is istio.
func (Istio) Provider() meshv1.RoutingProvider { return meshv1.RoutingIstio }

// Render renders the Services, the DestinationRules and then the VirtualService.
func (Istio) Render(in Input) (Set, error) {
	cs, err := render.CanaryObjects(in.Canary, in.Target, in.Routing, in.Policy)
	if err != nil {
		return Set{}, err
	}
	set := Set{Services: cs.Services, Warnings: cs.Warnings}
	for _, dr := range cs.DestinationRules {
		set.Objects = append(set.Objects, dr)
	}
	set.Objects = append(set.Objects, cs.VirtualService)
	return set, nil
}

// Kinds are VirtualService and DestinationRule.
func (Istio) Kinds() []client.Object {
	return []client.Object{&istionetv1.VirtualService{}, &istionetv1.DestinationRule{}}
}

// Owned: the VirtualService routes; the DestinationRules are the rest.
func (Istio) Owned(c *meshv1.Canary) (routes, rest []client.Object) {
	ns, name := c.Namespace, c.Spec.TargetRef.Name
	return []client.Object{&istionetv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}},
		[]client.Object{
			&istionetv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: render.PrimaryName(name)}},
			&istionetv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: render.CanaryName(name)}},
		}
}
