package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PolicyRollout makes changes of a MeshPolicy's authorization, and of its mTLS mode from
// PERMISSIVE to STRICT, progressive: the new authorization first runs in Istio's dry-run
// mode (annotation istio.io/dry-run) beside the rules in force, and is enforced only after
// a window in which it would have denied no more than maxDenied requests; a move to
// STRICT waits until no client of the service has called it without mTLS for a window.
// Both are measured through Prometheus, as a Canary's checks are.
type PolicyRollout struct {
	// Window is how long the new rules run in dry-run, and how far back the plaintext
	// clients are looked for, before they are enforced (default 5m).
	// +optional
	Window Duration `json:"window,omitempty"`
	// Interval is how often Prometheus is asked during the window (default 30s).
	// +optional
	Interval Duration `json:"interval,omitempty"`
	// MaxDenied is how many requests the new rules may have denied over the window and
	// still be enforced (default 0: none).
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxDenied int32 `json:"maxDenied,omitempty"`
	// Provider is the Prometheus asked, as a Canary's analysis.provider (default: the
	// operator's --prometheus-address). An address must pass the operator's URL policy.
	// +optional
	Provider *MetricProvider `json:"provider,omitempty"`
}

// The phases of a MeshPolicy's rollout (status.rollout.phase).
const (
	// PolicyPhaseDryRun: the new authorization runs in dry-run beside the rules in force.
	PolicyPhaseDryRun = "DryRun"
	// PolicyPhaseEnforced: what the spec says is in force.
	PolicyPhaseEnforced = "Enforced"
	// PolicyPhaseHeld: the change would deny calls, or clients still call without mTLS;
	// the rules in force stay until the spec changes or a promote is requested.
	PolicyPhaseHeld = "Held"
)

// The reasons a rollout is held (status.rollout.reason).
const (
	PolicyReasonWouldDeny        = "WouldDeny"
	PolicyReasonPlaintextClients = "PlaintextClients"
	PolicyReasonAborted          = "Aborted"
)

// ConditionPolicyRollout is the condition of a MeshPolicy's rollout: True once what the
// spec says is enforced, False in dry-run (reason DryRun) or held (reason WouldDeny,
// PlaintextClients, Aborted or AnalysisFailed).
const ConditionPolicyRollout = "PolicyRollout"

// MaxDeniedCalls bounds status.rollout.deniedCalls and status.rollout.plaintextClients.
const MaxDeniedCalls = 10

// PolicyRolloutStatus is where a MeshPolicy's rollout stands. It is all canopy needs to
// go on after a restart: the rules in force are the cluster's objects, which it keeps.
type PolicyRolloutStatus struct {
	// +optional
	Phase string `json:"phase,omitempty"`
	// EnforcedHash is the digest of the authorization and mTLS mode in force.
	// +optional
	EnforcedHash string `json:"enforcedHash,omitempty"`
	// PendingHash is the digest of the change in dry-run or held.
	// +optional
	PendingHash string `json:"pendingHash,omitempty"`
	// PendingGeneration is the policy's generation that made the change.
	// +optional
	PendingGeneration int64 `json:"pendingGeneration,omitempty"`
	// DryRunSince is when the change started its window.
	// +optional
	DryRunSince *metav1.Time `json:"dryRunSince,omitempty"`
	// LastAnalysis is when Prometheus was last asked.
	// +optional
	LastAnalysis *metav1.Time `json:"lastAnalysis,omitempty"`
	// DeniedCalls are the calls the new rules would have denied, the most frequent first.
	// +kubebuilder:validation:MaxItems=10
	// +optional
	DeniedCalls []DeniedCall `json:"deniedCalls,omitempty"`
	// PlaintextClients are the clients that called without mTLS during the window.
	// +kubebuilder:validation:MaxItems=10
	// +optional
	PlaintextClients []PlaintextClient `json:"plaintextClients,omitempty"`
	// Reason is why a Held rollout is held: WouldDeny (only a new spec or a promote moves
	// it), PlaintextClients (looked for again each interval) or Aborted.
	// +kubebuilder:validation:Enum=WouldDeny;PlaintextClients;Aborted
	// +optional
	Reason string `json:"reason,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
	// LastHandledRequest is the last value of the mesh.canopy.dev/request annotation acted
	// on: promote (enforce the change now) or abort (drop the dry-run, keep the rules in
	// force).
	// +optional
	LastHandledRequest string `json:"lastHandledRequest,omitempty"`
}

// DeniedCall is a kind of request the new authorization would have denied.
type DeniedCall struct {
	// SourcePrincipal is the caller's SPIFFE identity ("unknown" without mTLS).
	SourcePrincipal string `json:"sourcePrincipal"`
	// +optional
	Method string `json:"method,omitempty"`
	// +optional
	Path string `json:"path,omitempty"`
	// Count is how many such requests it would have denied during the window.
	Count int64 `json:"count"`
}

// PlaintextClient is a workload that called the service without mTLS.
type PlaintextClient struct {
	Workload  string `json:"workload"`
	Namespace string `json:"namespace"`
	Count     int64  `json:"count"`
}
