package render

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
)

// ValidateCanary runs the renderer's checks of a Canary that need nothing but the Canary:
// the admission webhook's view, before the target Deployment exists. It renders against a
// stand-in target (named as spec.targetRef says, with a selector) at a half-and-half split,
// with the A/B route and the mirror when the spec asks for them, so that every route the
// controller will ever render is checked; with routing.provider gatewayapi, the settings
// the Gateway API cannot express are warnings. What depends on the real target (its selector,
// its pod labels) is left to the controller, which renders with it.
func ValidateCanary(c *meshv1.Canary) ([]Warning, error) {
	name := c.Spec.TargetRef.Name
	target := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}}},
		},
	}
	a := c.Spec.Analysis
	w := progress.Routing{PrimaryWeight: 50, CanaryWeight: 50, Match: len(a.Match) > 0, Mirror: a.Mirror}
	if a.Mirror && a.MirrorWeight != nil && *a.MirrorWeight >= 0 && *a.MirrorWeight <= 100 {
		w.MirrorWeight = *a.MirrorWeight
	}
	ws, err := validateCanaryAt(c, target, w)
	if err != nil {
		return ws, err
	}
	// Every header and mirror route of the steps renders too.
	for i, s := range a.Steps {
		sw := progress.Routing{PrimaryWeight: 50, CanaryWeight: 50}
		switch {
		case s.SetHeaderRoute != nil && len(s.SetHeaderRoute.Match) > 0:
			sw.HeaderRoute = int32(i + 1)
		case s.SetMirrorRoute != nil && len(s.SetMirrorRoute.Match) > 0:
			sw.Mirror, sw.MirrorRoute = true, int32(i+1)
		default:
			continue
		}
		if _, err := validateCanaryAt(c, target, sw); err != nil {
			return ws, err
		}
	}
	return ws, nil
}

// validateCanaryAt renders c at the weights w with the routers that route it.
func validateCanaryAt(c *meshv1.Canary, target *appsv1.Deployment, w progress.Routing) ([]Warning, error) {
	set, err := CanaryObjects(c, target, w, nil)
	if err != nil || c.Spec.RoutingProviderOf() != meshv1.RoutingGatewayAPI {
		return set.Warnings, err
	}
	// Routed with the Gateway API: what it cannot express is said at admission too.
	gs, err := CanaryGatewayObjects(c, target, w, nil)
	return append(set.Warnings, gs.Unsupported...), err
}

// ValidateMeshPolicy runs the renderer's checks of a MeshPolicy that need nothing but the
// policy: durations, regular expressions, header names, authorization rules, external
// services, ingress, and settings that contradict each other. It is the admission
// webhook's view; the controller renders with the target Service (MeshPolicyObjects) and
// so also checks what depends on it: its selector and its ports.
func ValidateMeshPolicy(p *meshv1.MeshPolicy) ([]Warning, error) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: p.Spec.TargetRef.Name, Namespace: p.Namespace}}
	r := &policyRenderer{p: p, svc: svc, e: newErrs(), static: true}
	set, err := r.render()
	return set.Warnings, err
}
