// Package router is the seam between a Canary's rollout and the API that routes its
// traffic. A Router turns the traffic split the progression decided (progress.Routing) into
// the objects of one routing API, names the kinds it writes (for the controller's watches,
// the cache, deletion and the CLI) and the objects it writes for a Canary (for the
// hand-over and deletion). The controller and `kubectl canopy render/diff` reach the
// routing APIs only through this package: adding a router is a new implementation listed
// in All, and touches no controller and no state machine.
package router

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
	"canopy.dev/canopy/internal/render"
)

// Input is what a Router renders from.
type Input struct {
	Canary *meshv1.Canary
	// Target is the Deployment spec.targetRef names.
	Target *appsv1.Deployment
	// Routing is the split the progression decided.
	Routing progress.Routing
	// Policy is the apex Service's MeshPolicy in force, composed into the routing (nil: none).
	Policy *meshv1.MeshPolicy
}

// Set is what a Router renders for a Canary.
type Set struct {
	// Services are the apex Service "<name>" (selecting the primary's pods), "<name>-primary"
	// and "<name>-canary", in that order: every router routes between these.
	Services []*corev1.Service
	// Objects are the router's own objects, in the order they are applied; the last one,
	// Route, carries the split.
	Objects []client.Object
	// Warnings are settings that render but are overridden or probably unintended.
	Warnings []render.Warning
	// Unsupported are settings of the Canary or its MeshPolicy the router's API cannot
	// express: they are not in force, and the Canary's Routing condition names them.
	Unsupported []render.Warning
}

// Route is the object that carries the split (nil in an empty Set).
func (s *Set) Route() client.Object {
	if len(s.Objects) == 0 {
		return nil
	}
	return s.Objects[len(s.Objects)-1]
}

// All is what is applied on every reconcile: the Services, then the router's objects.
func (s *Set) All() []client.Object {
	out := make([]client.Object, 0, len(s.Services)+len(s.Objects))
	for _, svc := range s.Services {
		out = append(out, svc)
	}
	return append(out, s.Objects...)
}

// Router routes a Canary's service with one API.
type Router interface {
	// Provider is the spec.routing.provider value that chooses this router.
	Provider() meshv1.RoutingProvider
	// Render renders the Services and the router's objects. An error wrapping
	// *render.FieldError is a spec problem (render.ReasonOf); any other is a bug of the
	// caller.
	Render(in Input) (Set, error)
	// Kinds are empty objects of each kind the router writes besides Services: the
	// controller owns (watches) them, and a cluster that does not serve one of them cannot
	// use the router.
	Kinds() []client.Object
	// Owned names (namespace and name set) the objects the router writes for c besides
	// the Services: routes, which carry the split and go first when the Canary hands the
	// service back to its target, and the rest.
	Owned(c *meshv1.Canary) (routes, rest []client.Object)
}

// All are the routers canopy knows, the default (Istio) first.
func All() []Router { return []Router{Istio{}, GatewayAPI{}} }

// For is the router a Canary chooses with spec.routing.provider.
func For(c *meshv1.Canary) (Router, error) {
	p := c.Spec.RoutingProviderOf()
	for _, r := range All() {
		if r.Provider() == p {
			return r, nil
		}
	}
	return nil, &render.FieldError{Field: "spec.routing.provider", Reason: meshv1.ReasonInvalidSpec,
		Message: fmt.Sprintf("%q is not a routing provider canopy knows", p)}
}
