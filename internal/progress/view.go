package progress

import (
	"time"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// What the progression reads from a spec, with its defaults applied, for the tools that show
// a rollout (the kubectl plugin): they must agree with Step exactly.

// Strategy is how a rollout moves traffic.
type Strategy = strategy

// The strategies, as the analysis' fields select them.
const (
	Weighted  = weighted  // stepWeight or stepWeights
	ABTesting = abTesting // iterations with match
	BlueGreen = blueGreen // iterations alone
	Stepped   = stepped   // spec.analysis.steps
)

// StrategyOf is the spec's strategy.
func StrategyOf(spec *meshv1.CanarySpec) Strategy { return specView{spec}.strategy() }

// MaxWeight is the canary weight at which a weighted rollout promotes.
func MaxWeight(spec *meshv1.CanarySpec) int32 { return specView{spec}.maxWeight() }

// Threshold is the number of failed checks that rolls back.
func Threshold(spec *meshv1.CanarySpec) int32 { return specView{spec}.threshold() }

// Iterations is the number of passed analyses an A/B or blue/green rollout needs.
func Iterations(spec *meshv1.CanarySpec) int32 { return specView{spec}.iterations() }

// MirrorWeight is the percentage of traffic mirrored.
func MirrorWeight(spec *meshv1.CanarySpec) int32 { return specView{spec}.mirrorWeight() }

// StepWeights lists the canary's weight after each step of a weighted rollout, the last
// being MaxWeight.
func StepWeights(spec *meshv1.CanarySpec) []int32 {
	v := specView{spec}
	var out []int32
	for w := int32(0); w < v.maxWeight(); {
		n := v.nextWeight(w)
		if n <= w {
			break
		}
		out = append(out, n)
		w = n
	}
	return out
}

// RoutingOf is the traffic split a status stands for: what the controller routes with.
func RoutingOf(spec *meshv1.CanarySpec, st *meshv1.CanaryStatus) Routing {
	return routingFor(specView{spec}, st)
}

// WorkloadOf is what the Deployments must look like in the status's phase at now, for a
// target that carries the revision the status names (status.currentRevision): what the
// controller decided when it wrote that status.
func WorkloadOf(spec *meshv1.CanarySpec, st *meshv1.CanaryStatus, now time.Time) Workload {
	return workloadFor(specView{spec}, st, Observation{TargetRevision: st.CurrentRevision}, now)
}
