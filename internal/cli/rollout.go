package cli

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// What the plugin reads from a Canary's spec, with the CRD's defaults: a Canary read from a
// file has none applied, and one written by an older CRD may lack some. They follow
// internal/progress (spec.go), which the controller decides with.
const (
	defaultMaxWeight = 50
	defaultThreshold = 5
	defaultMirror    = 100
)

type strategy int

const (
	weighted  strategy = iota // stepWeight or stepWeights
	abTesting                 // iterations with match
	blueGreen                 // iterations alone
)

func strategyOf(a *meshv1.CanaryAnalysis) strategy {
	switch {
	case a.StepWeight != nil || len(a.StepWeights) > 0:
		return weighted
	case len(a.Match) > 0:
		return abTesting
	default:
		return blueGreen
	}
}

func maxWeightOf(a *meshv1.CanaryAnalysis) int32 {
	if a.MaxWeight > 0 {
		return min(a.MaxWeight, 100)
	}
	return defaultMaxWeight
}

func thresholdOf(a *meshv1.CanaryAnalysis) int32 {
	if a.Threshold > 0 {
		return a.Threshold
	}
	return defaultThreshold
}

func iterationsOf(a *meshv1.CanaryAnalysis) int32 {
	if a.Iterations != nil && *a.Iterations > 0 {
		return *a.Iterations
	}
	return 1
}

func mirrorWeightOf(a *meshv1.CanaryAnalysis) int32 {
	if a.MirrorWeight != nil && *a.MirrorWeight > 0 {
		return min(*a.MirrorWeight, 100)
	}
	return defaultMirror
}

// stepWeights lists the canary's weight after each step of a weighted rollout, the last
// being maxWeight, where the canary is promoted.
func stepWeights(a *meshv1.CanaryAnalysis) []int32 {
	top := maxWeightOf(a)
	next := func(w int32) int32 {
		if len(a.StepWeights) > 0 {
			for _, n := range a.StepWeights {
				if n > w {
					return min(n, top)
				}
			}
			return max(w, top)
		}
		step := int32(1)
		if a.StepWeight != nil && *a.StepWeight > 0 {
			step = *a.StepWeight
		}
		return max(min(w+step, top), w)
	}
	var out []int32
	for w := int32(0); w < top; {
		n := next(w)
		if n <= w {
			break
		}
		out = append(out, n)
		w = n
	}
	return out
}

// isIdle: no rollout under way.
func isIdle(p meshv1.CanaryPhase) bool {
	return p == meshv1.PhaseInitialized || p == meshv1.PhaseSucceeded || p == meshv1.PhaseFailed
}

// stepText is "3/5": the passed steps (or iterations) of the rollout against how many there
// are; "-" when no rollout is under way.
func stepText(c *meshv1.Canary) string {
	st := &c.Status
	if isIdle(st.Phase) || st.Phase == "" || st.Phase == meshv1.PhaseInitializing {
		return "-"
	}
	a := &c.Spec.Analysis
	if strategyOf(a) == weighted {
		return fmt.Sprintf("%d/%d", st.StepIndex, len(stepWeights(a)))
	}
	return fmt.Sprintf("%d/%d", st.Iterations, iterationsOf(a))
}

// phaseText is the phase with what holds it: paused, suspended, stalled.
func phaseText(c *meshv1.Canary) string {
	s := string(c.Status.Phase)
	if s == "" {
		s = "Pending"
	}
	var holds []string
	if c.Spec.Suspend {
		holds = append(holds, "suspended")
	}
	if c.Status.Paused {
		holds = append(holds, "paused")
	}
	if stalled(c) != nil {
		holds = append(holds, "stalled")
	}
	if len(holds) > 0 {
		s += " (" + strings.Join(holds, ", ") + ")"
	}
	return s
}

// stalled is the Stalled condition when it is True for the current generation: the
// controller gave up until the spec changes.
func stalled(c *meshv1.Canary) *metav1.Condition {
	cond := meta.FindStatusCondition(c.Status.Conditions, meshv1.ConditionStalled)
	if cond == nil || cond.Status != metav1.ConditionTrue || cond.ObservedGeneration < c.Generation {
		return nil
	}
	return cond
}

func readyMessage(c *meshv1.Canary) string {
	if cond := meta.FindStatusCondition(c.Status.Conditions, meshv1.ConditionReady); cond != nil {
		return cond.Message
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
