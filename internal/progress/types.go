// Package progress is the Canary rollout state machine: a pure function of the Canary's spec,
// its status, what the controller observed this reconcile and the time.
//
// The controller calls it in two halves each reconcile:
//
//	needs := progress.Plan(&canary.Spec, &canary.Status, obs, now) // obs without Checks and Gates
//	// run the checks and call the webhooks needs asks for, put their results in obs
//	d := progress.Step(&canary.Spec, canary.Status, obs, now)      // the same now
//	// apply d.Workload and d.Routing, write d.Status, record d.Events, fire d.Notify,
//	// requeue after d.RequeueAfter
//
// All the state of a rollout is in the status: an operator restarted between any two
// reconciles resumes at the same step. Step applies every transition the observation allows
// and stops where it needs time to pass or a fresh observation, so Step on its own output,
// with the same observation and time, changes nothing. Step consumes only the results Plan
// asked for; anything else in the observation is ignored.
//
// The phases:
//
//	"" -> Initializing -> Initialized
//	Initialized|Succeeded|Failed -(new revision)-> Waiting (confirm-rollout) -> Progressing
//	Progressing -> Promoting -> Finalising -> Succeeded
//	Waiting|Progressing|Promoting -> RollingBack -> Failed  (straight to Failed when the
//	                                                         canary never got traffic)
//
// Finalising and RollingBack route all traffic to the primary and keep the canary running a
// little longer (the interval, at most 10s) so that the new routes reach every proxy before
// the canary's pods go.
package progress

import (
	"fmt"
	"time"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// Observation is what the controller saw this reconcile.
type Observation struct {
	// TargetRevision is the revision of the target Deployment's pod template (and tracked
	// configs). Step changes nothing while it is empty.
	TargetRevision string
	// PrimaryReady: the primary Deployment exists, is rolled out and available.
	PrimaryReady bool
	// PrimaryRevision is the revision the primary was last written from (recorded on the
	// primary when it is written, not a hash of the primary's own template).
	PrimaryRevision string
	// CanaryReady: the target Deployment, as currently scaled, runs the target revision with
	// all its desired replicas available. It must be false while the target is scaled to zero
	// or its status has not caught up with its spec (observedGeneration).
	CanaryReady bool
	// Checks are the results of the checks and check-like webhooks run this reconcile, nil
	// when none were run. Only OutcomePass passes; HoldingSince and LastMeasured are set by Step.
	Checks []meshv1.CheckStatus
	// Gates are the results of the confirm-* webhooks called this reconcile.
	Gates []meshv1.GateStatus
	// Request is the value of the meshv1.AnnotationRequest annotation, "" when absent.
	Request string
	// RoutingHeld says why the canary may get no traffic now ("" when it may): the
	// service's MeshPolicy cannot be composed with the Canary's routing. All traffic goes to
	// the primary, and a rollout holds (its step clock restarting) until it is cleared;
	// rollbacks, promotions and requests go on.
	RoutingHeld string
}

// Needs is what Plan asks the controller to observe before it calls Step.
type Needs struct {
	// RunChecks: run spec.analysis.metrics and report each result in Observation.Checks.
	RunChecks bool
	// Hooks are the check-like webhook types (pre-rollout, rollout) to call now. Report each
	// webhook as a CheckStatus named after it in Observation.Checks: OutcomePass when it
	// answered 2xx, any other outcome otherwise. A failed webhook counts as a failed check.
	Hooks []meshv1.WebhookType
	// Gates are the confirm-* webhook types to call now (confirm-rollout,
	// confirm-traffic-increase, confirm-promotion). Report each webhook of those types as a
	// GateStatus in Observation.Gates, Open when it answered 2xx.
	Gates []meshv1.WebhookType
}

// Decision is what Step decided.
type Decision struct {
	// Status is the next status, conditions included. ObservedGeneration (of the status and of
	// the conditions) is left to the caller.
	Status meshv1.CanaryStatus
	// Routing is what the VirtualService must say now.
	Routing Routing
	// Workload is what the Deployments must look like now.
	Workload Workload
	// Notify are the non-gating webhook types to fire now: rollback, post-rollout and event.
	// Only types the spec has webhooks for are listed. Event webhooks are called once for each
	// of Events.
	Notify []meshv1.WebhookType
	// Events happened in this step, oldest first.
	Events []Event
	// RequeueAfter is when to look again; 0 means only on watch events.
	RequeueAfter time.Duration
}

// Routing is the traffic split. PrimaryWeight+CanaryWeight is always 100.
type Routing struct {
	PrimaryWeight int32
	CanaryWeight  int32
	// Match routes the requests matching spec.analysis.match to the canary (A/B testing).
	Match bool
	// Mirror copies MirrorWeight percent of the traffic to the canary.
	Mirror       bool
	MirrorWeight int32
	// HeaderRoute is 1 + the index of the spec.analysis.steps entry whose setHeaderRoute
	// routes the requests it matches to the canary; 0 for none.
	HeaderRoute int32
	// MirrorRoute is 1 + the index of the spec.analysis.steps entry whose setMirrorRoute
	// restricts the mirroring (Mirror) to the requests it matches; 0 mirrors every request.
	MirrorRoute int32
}

// Validate reports a split Istio would not route as meant. Renderers never clamp: a split
// out of range is a bug in the caller.
func (r Routing) Validate() error {
	if r.PrimaryWeight < 0 || r.PrimaryWeight > 100 || r.CanaryWeight < 0 || r.CanaryWeight > 100 {
		return fmt.Errorf("weights primary=%d canary=%d: each must be within 0..100", r.PrimaryWeight, r.CanaryWeight)
	}
	if r.PrimaryWeight+r.CanaryWeight != 100 {
		return fmt.Errorf("weights primary=%d canary=%d: they must add up to 100", r.PrimaryWeight, r.CanaryWeight)
	}
	if r.MirrorWeight < 0 || r.MirrorWeight > 100 {
		return fmt.Errorf("mirror weight %d: must be within 0..100", r.MirrorWeight)
	}
	if r.MirrorWeight != 0 && !r.Mirror {
		return fmt.Errorf("mirror weight %d without mirror", r.MirrorWeight)
	}
	return nil
}

// Workload is what the primary and the target (canary) Deployments must look like.
// When neither ScaleTargetToZero nor CanaryScaledUp is set the target's replicas are left alone.
type Workload struct {
	// Initialize: create or update the primary from the target's template (Initializing only).
	Initialize bool
	// ScaleTargetToZero: the target Deployment runs no replicas.
	ScaleTargetToZero bool
	// CanaryScaledUp: the target Deployment (the canary) runs its replicas.
	CanaryScaledUp bool
	// PromotePrimary: copy the target's template to the primary. Only set while the target
	// still carries the revision being promoted (status.currentRevision).
	PromotePrimary bool
	// With CanaryScaledUp, a setCanaryScale step's count for the canary, whatever it runs
	// now (0: the default, the primary's count when scaling up from zero): CanaryReplicas
	// replicas, else CanaryPercent percent of the primary's (rounded up, at least 1).
	CanaryReplicas int32
	CanaryPercent  int32
}

// Event types, as core/v1 Event.Type.
const (
	EventNormal  = "Normal"
	EventWarning = "Warning"
)

// Event is an event to record on the Canary. Reason is one of the condition reasons of the API.
type Event struct {
	Type    string
	Reason  string
	Message string
}
