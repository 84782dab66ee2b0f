package v1alpha1

// CanarySteps are the explicit shapes of a rollout: Argo Rollouts' steps and Flagger's gradual
// promotion. They are part of spec.analysis (inlined there).
type CanarySteps struct {
	// Steps is the rollout spelled out step by step (Argo Rollouts' steps), run in order; each
	// step sets exactly one field. After the last step the canary is promoted. It replaces
	// stepWeight, stepWeights and iterations (their short forms) and the analysis' match and
	// mirror (the setHeaderRoute and setMirrorRoute steps). The checks (metrics and rollout
	// webhooks) run only in analysis steps; the status' stepIndex is 1 + the index of the
	// step the rollout is at.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Steps []CanaryStep `json:"steps,omitempty"`

	// StepWeightPromotion promotes gradually (Flagger's stepWeightPromotion): once the primary
	// runs the promoted revision, traffic moves from the canary to it by this many percent each
	// interval (phase Promoting, status.canaryWeight going down), instead of all at once.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	StepWeightPromotion *int32 `json:"stepWeightPromotion,omitempty"`
}

// CanaryStep is one step of spec.analysis.steps. Exactly one field is set.
// +kubebuilder:validation:XValidation:rule="[has(self.setWeight), has(self.pause), has(self.analysis), has(self.setHeaderRoute), has(self.setMirrorRoute), has(self.setCanaryScale)].filter(x, x).size() == 1",message="a step sets exactly one of setWeight, pause, analysis, setHeaderRoute, setMirrorRoute or setCanaryScale"
type CanaryStep struct {
	// SetWeight routes this percentage of the traffic to the canary.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	SetWeight *int32 `json:"setWeight,omitempty"`
	// Pause holds the rollout for a duration, or, without one, until a resume request.
	// +optional
	Pause *StepPause `json:"pause,omitempty"`
	// Analysis runs the checks (metrics and rollout webhooks) once an interval, the given
	// number of intervals; failed checks count against the threshold as in any rollout.
	// +optional
	Analysis *StepAnalysis `json:"analysis,omitempty"`
	// SetHeaderRoute routes the requests that match to the canary, whatever the weight, until
	// a later setHeaderRoute replaces it (one without match removes it) or the analysis ends.
	// +optional
	SetHeaderRoute *StepHeaderRoute `json:"setHeaderRoute,omitempty"`
	// SetMirrorRoute copies requests to the canary (responses discarded) until a later
	// setMirrorRoute replaces it (percent 0 removes it) or the analysis ends.
	// +optional
	SetMirrorRoute *StepMirrorRoute `json:"setMirrorRoute,omitempty"`
	// SetCanaryScale sets the canary Deployment's replicas independently of the weight.
	// +optional
	SetCanaryScale *StepCanaryScale `json:"setCanaryScale,omitempty"`
}

// StepPause holds a rollout.
// +kubebuilder:validation:XValidation:rule="!has(self.duration) || duration(self.duration) >= duration('1s')",message="duration must be at least 1s"
type StepPause struct {
	// Duration of the pause; without it the rollout waits for a resume request
	// (kubectl canopy resume).
	// +optional
	Duration Duration `json:"duration,omitempty"`
}

// StepAnalysis runs the checks for a number of intervals.
type StepAnalysis struct {
	// Intervals is the number of passed check runs, one an interval, that end the step.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	Intervals int32 `json:"intervals"`
}

// StepHeaderRoute routes matching requests to the canary.
type StepHeaderRoute struct {
	// Match selects the requests routed to the canary; empty removes the header route.
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Match []HTTPMatch `json:"match,omitempty"`
}

// StepMirrorRoute mirrors requests to the canary.
type StepMirrorRoute struct {
	// Percent of the requests mirrored (100 by default); 0 removes the mirror route.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	Percent *int32 `json:"percent,omitempty"`
	// Match restricts the mirroring to matching requests; empty mirrors every request.
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Match []HTTPMatch `json:"match,omitempty"`
}

// StepCanaryScale sets the canary's replicas. Exactly one field is set.
// +kubebuilder:validation:XValidation:rule="[has(self.replicas), has(self.weight), has(self.matchTrafficWeight)].filter(x, x).size() == 1",message="setCanaryScale sets exactly one of replicas, weight or matchTrafficWeight"
// +kubebuilder:validation:XValidation:rule="!has(self.matchTrafficWeight) || self.matchTrafficWeight",message="matchTrafficWeight must be true when set"
type StepCanaryScale struct {
	// Replicas the canary runs.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// Weight is a percentage of the primary's replicas (rounded up, at least 1).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	Weight *int32 `json:"weight,omitempty"`
	// MatchTrafficWeight scales the canary to its traffic weight's share of the primary's
	// replicas (rounded up, at least 1) at every later step; for a setWeight, during the
	// step before it, so that traffic moves only to a canary ready at that count.
	// +optional
	MatchTrafficWeight bool `json:"matchTrafficWeight,omitempty"`
}
