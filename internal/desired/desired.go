// Package desired computes what canopy writes from what it read: pure functions of a
// resource's spec and status, the objects observed around it and the time. The controllers
// apply what these functions return and `kubectl canopy render` and `diff` print it, so the
// operator and its CLI cannot disagree about the primary's replicas, the MeshPolicy in
// force, whether an ingress serves HTTPS, or the traffic split.
//
// Nothing here reads the cluster or the clock: the callers read (the controller from its
// cache, the CLI from files and the cluster) and pass what they read.
package desired

import (
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/internal/router"
	"canopy.dev/canopy/internal/workload"
)

// PolicyFor is the MeshPolicy in force for the Service named service among policies (those
// of its namespace): the oldest that targets it and is not being deleted. A newer policy for
// the same Service is refused as a Conflict by its own controller.
func PolicyFor(policies []*meshv1.MeshPolicy, service string) *meshv1.MeshPolicy {
	var found *meshv1.MeshPolicy
	for _, p := range policies {
		if p.Spec.TargetRef.Name != service || !p.DeletionTimestamp.IsZero() {
			continue
		}
		if found == nil || render.CreatedBefore(p, found) {
			found = p
		}
	}
	return found
}

// CertificateReady is whether cert-manager says the Certificate is Ready for its current
// spec (the condition's observedGeneration is the Certificate's generation).
func CertificateReady(cert *cmv1.Certificate) bool {
	if cert == nil {
		return false
	}
	for _, c := range cert.Status.Conditions {
		if c.Type == cmv1.CertificateConditionReady {
			return c.Status == cmmeta.ConditionTrue && c.ObservedGeneration >= cert.Generation
		}
	}
	return false
}

// ServesHTTPS is whether an ingress Gateway may name the Certificate's Secret at now: once
// the Certificate is Ready, and afterwards as long as its Secret holds a certificate that
// has not expired (cert-manager clears notAfter when the Secret has none). A re-issue after
// a change of hosts turns Ready False for a while; dropping HTTPS then would take the site
// down while the old certificate still serves.
func ServesHTTPS(cert *cmv1.Certificate, now time.Time) bool {
	if cert == nil {
		return false
	}
	if CertificateReady(cert) {
		return true
	}
	na := cert.Status.NotAfter
	return na != nil && now.Before(na.Time)
}

// PrimaryReplicas is the count the primary Deployment is written with, in a reconcile whose
// decision is w. The primary keeps the count it has (an autoscaler's, or the one last
// given). A new primary starts with the target's; a count the user sets on the target (in
// Git) moves to the primary when the primary is initialized or the target goes back to
// zero, unless an autoscaler owns the count. Never below 1: a primary of 0 would serve
// nothing while the apex routes to it.
func PrimaryReplicas(c *meshv1.Canary, target, primary *appsv1.Deployment, w progress.Workload) int32 {
	n := workload.Replicas(primary)
	userCount := (w.Initialize || w.ScaleTargetToZero) && c.Spec.AutoscalerRef == nil && workload.Replicas(target) > 0
	if primary == nil || userCount {
		n = workload.Replicas(target)
		if n == 0 && primary != nil {
			n = workload.Replicas(primary)
		}
	}
	return max(n, 1)
}

// CanaryReplicas is the one place the target's (the canary's) replica count is decided:
// the count to scale it to, and whether to scale it at all.
func CanaryReplicas(w progress.Workload, primary, target *appsv1.Deployment) (int32, bool) {
	has := workload.Replicas(target)
	switch {
	case w.ScaleTargetToZero:
		return 0, true
	case !w.CanaryScaledUp:
		return 0, false
	case w.CanaryReplicas > 0:
		// A setCanaryScale step: its count, whatever the canary runs.
		return w.CanaryReplicas, has != w.CanaryReplicas
	case w.CanaryPercent > 0:
		n := max((workload.Replicas(primary)*w.CanaryPercent+99)/100, 1)
		return n, has != n
	case has == 0:
		// Only from zero: once running, the canary's count is the user's autoscaler's
		// business, and canopy never fights it.
		return max(workload.Replicas(primary), 1), true
	default:
		return 0, false
	}
}

// Canary is what is known of a Canary and its workloads at one moment.
type Canary struct {
	// Canary is the resource, its status included.
	Canary *meshv1.Canary
	// Target is the workload spec.targetRef names; Primary is "<name>-primary" as it is
	// (nil before the first initialization). A DaemonSet is read as its workload.View.
	Target, Primary *appsv1.Deployment
	// TargetObject is the target as stored (the DaemonSet whose View Target is); a
	// primary DaemonSet takes its rolling update parameters. Nil: the API's defaults.
	TargetObject client.Object
	// Autoscaler is the target's autoscaler (spec.autoscalerRef), nil when it has none or
	// it does not exist yet.
	Autoscaler *autoscalingv2.HorizontalPodAutoscaler
	// Policy is the MeshPolicy composed into the routing (PolicyFor), nil for none.
	Policy *meshv1.MeshPolicy
	// Configs are the ConfigMaps and Secrets the target's template reads
	// (workload.ReadConfigs); the primary reads canopy's copies of them.
	Configs []workload.Config
	// Routing and Workload are the decision: progress.Step's in the controller, or what the
	// Canary's status stands for (FromStatus) in the CLI.
	Routing  progress.Routing
	Workload progress.Workload
	// Repair writes the primary although the decision does not: the target and the primary
	// both carry the promoted revision, and re-applying the primary puts back manual edits.
	Repair bool
}

// CanaryObjects is everything canopy writes for a Canary in one reconcile.
type CanaryObjects struct {
	// Router is the Canary's router (spec.routing.provider) and Routing what it renders:
	// the Services and the routes for the decision's split.
	Router  router.Router
	Routing router.Set
	// Primary is the primary (a Deployment, or a DaemonSet for a DaemonSet target) when
	// this reconcile writes it (WritesPrimary), else nil.
	Primary client.Object
	// Autoscaler is the primary's copy of the target's autoscaler, nil without one.
	Autoscaler *autoscalingv2.HorizontalPodAutoscaler
}

// WritesPrimary is whether the reconcile writes the primary: when initializing, when
// promoting, and when repairing.
func (in Canary) WritesPrimary() bool {
	return in.Workload.Initialize || in.Workload.PromotePrimary || in.Repair
}

// CanaryRouting renders the Services and routes of in's decision with its policy.
func CanaryRouting(in Canary) (router.Router, router.Set, error) {
	rt, err := router.For(in.Canary)
	if err != nil {
		return nil, router.Set{}, err
	}
	set, err := rt.Render(router.Input{Canary: in.Canary, Target: in.Target, Routing: in.Routing, Policy: in.Policy})
	return rt, set, err
}

// CanaryWorkload renders the primary (when the reconcile writes it, with PrimaryReplicas)
// and the primary's autoscaler. The primary is of the target's kind: a Deployment, or for
// a DaemonSet target (read as its workload.View) a DaemonSet with the same template.
func CanaryWorkload(in Canary) (primary client.Object, hpa *autoscalingv2.HorizontalPodAutoscaler, err error) {
	if in.WritesPrimary() {
		n := PrimaryReplicas(in.Canary, in.Target, in.Primary, in.Workload)
		d, err := render.Primary(in.Canary, in.Target, &n, in.Configs...)
		if err != nil {
			return nil, nil, err
		}
		primary = d
		if in.Canary.Spec.TargetRef.IsDaemonSet() {
			primary = render.AsDaemonSet(d, in.TargetObject)
		}
	}
	if in.Autoscaler != nil {
		if hpa, err = render.PrimaryAutoscaler(in.Canary, in.Autoscaler); err != nil {
			return nil, nil, err
		}
	}
	return primary, hpa, nil
}

// CanaryState is CanaryRouting and CanaryWorkload together.
func CanaryState(in Canary) (CanaryObjects, error) {
	rt, set, err := CanaryRouting(in)
	if err != nil {
		return CanaryObjects{}, err
	}
	primary, hpa, err := CanaryWorkload(in)
	if err != nil {
		return CanaryObjects{}, err
	}
	return CanaryObjects{Router: rt, Routing: set, Primary: primary, Autoscaler: hpa}, nil
}

// FromStatus sets in's decision to what the Canary's status stands for at now, as the
// controller decided it when it wrote that status: the split progress.RoutingOf gives, and
// the workload of the status's phase for a target that carries the revision in analysis.
// A primary is always rendered (as it is written at the next initialization or promotion),
// so that the CLI can show it whatever the phase.
func FromStatus(in Canary, now time.Time) Canary {
	c := in.Canary
	in.Routing = progress.RoutingOf(&c.Spec, &c.Status)
	in.Workload = progress.WorkloadOf(&c.Spec, &c.Status, now)
	if !in.WritesPrimary() {
		in.Repair = in.Primary != nil
		if in.Primary == nil {
			in.Workload.Initialize = true
		}
	}
	return in
}
