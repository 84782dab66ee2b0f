package cli

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
)

// What the plugin reads from a Canary's spec, with the defaults the controller applies (a
// Canary read from a file has none of the CRD's): internal/progress answers, so that the
// plugin and the controller always agree.

type strategy = progress.Strategy

const (
	weighted  = progress.Weighted
	abTesting = progress.ABTesting
)

func specOf(a *meshv1.CanaryAnalysis) *meshv1.CanarySpec { return &meshv1.CanarySpec{Analysis: *a} }

func strategyOf(a *meshv1.CanaryAnalysis) strategy { return progress.StrategyOf(specOf(a)) }
func maxWeightOf(a *meshv1.CanaryAnalysis) int32   { return progress.MaxWeight(specOf(a)) }
func thresholdOf(a *meshv1.CanaryAnalysis) int32   { return progress.Threshold(specOf(a)) }
func iterationsOf(a *meshv1.CanaryAnalysis) int32  { return progress.Iterations(specOf(a)) }
func mirrorWeightOf(a *meshv1.CanaryAnalysis) int32 {
	return progress.MirrorWeight(specOf(a))
}

// stepWeights lists the canary's weight after each step of a weighted rollout, the last
// being maxWeight, where the canary is promoted.
func stepWeights(a *meshv1.CanaryAnalysis) []int32 { return progress.StepWeights(specOf(a)) }

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
	if strategyOf(a) == progress.Stepped {
		return fmt.Sprintf("%d/%d", st.StepIndex, len(a.Steps))
	}
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

func readyReasonOf(c *meshv1.Canary) string {
	if cond := meta.FindStatusCondition(c.Status.Conditions, meshv1.ConditionReady); cond != nil {
		return cond.Reason
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
