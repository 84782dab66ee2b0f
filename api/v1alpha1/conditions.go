package v1alpha1

// Condition types. Ready, Reconciling and Stalled follow kstatus, so that
// `kubectl wait --for=condition=Ready` and Flux health checks work.
const (
	ConditionReady       = "Ready"
	ConditionReconciling = "Reconciling"
	ConditionStalled     = "Stalled"
	// ConditionPromoted is True when the last rollout was promoted, False when rolled back.
	ConditionPromoted = "Promoted"
	// ConditionAnalysis reports the last analysis run.
	ConditionAnalysis = "Analysis"
	// ConditionMeshPolicy says whether the service's MeshPolicy is composed into a Canary's
	// routing (absent when the service has none).
	ConditionMeshPolicy = "MeshPolicy"
	// ConditionRouting is False when settings of the Canary (or of its MeshPolicy) have no
	// equivalent in its routing provider's API and are not in force; absent otherwise.
	ConditionRouting = "Routing"
)

// Condition and event reasons. Event reasons equal condition reasons.
const (
	ReasonInitializing      = "Initializing"
	ReasonInitialized       = "Initialized"
	ReasonNewRevision       = "NewRevision"
	ReasonWaitingForGate    = "WaitingForGate"
	ReasonWaitingForCanary  = "WaitingForCanary"
	ReasonWaitingForPrimary = "WaitingForPrimary"
	ReasonProgressing       = "Progressing"
	ReasonWeightIncreased   = "WeightIncreased"
	ReasonCheckPassed       = "CheckPassed"
	ReasonCheckFailed       = "CheckFailed"
	ReasonCheckHolding      = "CheckHolding"
	ReasonPromoting         = "Promoting"
	ReasonPromoted          = "Promoted"
	ReasonFinalising        = "Finalising"
	ReasonSucceeded         = "Succeeded"
	ReasonRollingBack       = "RollingBack"
	ReasonRolledBack        = "RolledBack"
	ReasonProgressDeadline  = "ProgressDeadlineExceeded"
	ReasonPaused            = "Paused"
	ReasonSuspended         = "Suspended"
	ReasonAborted           = "Aborted"
	// ReasonRollbackWebhook: a rollback webhook answered 2xx and the rollout was rolled back.
	ReasonRollbackWebhook = "RollbackWebhook"
	// ReasonPolicyNotComposed: the service's MeshPolicy cannot be composed with the Canary's
	// routing; all traffic goes to the primary, without the policy's extras, and a rollout
	// holds until the policy or the Canary changes.
	ReasonPolicyNotComposed = "PolicyNotComposed"
	// ReasonPolicyComposed: the service's MeshPolicy is composed into the Canary's routing.
	ReasonPolicyComposed = "PolicyComposed"
	// ReasonRoutingIncomplete: settings the routing provider cannot express are not in force.
	ReasonRoutingIncomplete = "RoutingIncomplete"
	// ReasonRoutingAPIMissing: the routing provider's API is not served by the cluster.
	ReasonRoutingAPIMissing   = "RoutingAPIMissing"
	ReasonManualPromotion     = "ManualPromotion"
	ReasonRetry               = "Retry"
	ReasonInvalidSpec         = "InvalidSpec"
	ReasonTargetNotFound      = "TargetNotFound"
	ReasonServiceConflict     = "ServiceConflict"
	ReasonApplyFailed         = "ApplyFailed"
	ReasonMeshAPIMissing      = "MeshAPIMissing"
	ReasonReconciled          = "Reconciled"
	ReasonCertificatePending  = "CertificatePending"
	ReasonCertificateNotReady = "CertificateNotReady"
	ReasonConflict            = "Conflict"
	ReasonInconsistent        = "Inconsistent"
	// ReasonHandingOver: the Canary is being deleted and hands the service back to its target.
	ReasonHandingOver = "HandingOver"
	// ReasonDeletionBlocked: the Canary is being deleted but its target carries a revision
	// that was not promoted; the primary serves until it is promoted back or confirmed.
	ReasonDeletionBlocked = "DeletionBlocked"
	// ReasonDeletionConfirmed: a request accepted the target's revision for the hand-over.
	ReasonDeletionConfirmed = "DeletionConfirmed"
	// ReasonNotAllowed is a field the operator's flags forbid: a gateway namespace, a
	// ClusterIssuer or a host beyond what the resource's namespace may claim.
	ReasonNotAllowed = "NotAllowed"
	// ReasonServiceAccountNotFound and ReasonRenderWarning are warnings: a MeshPolicy that
	// has them is still applied (Ready stays True and its message lists them).
	ReasonServiceAccountNotFound = "ServiceAccountNotFound"
	ReasonRenderWarning          = "RenderWarning"
	// ReasonConfigNotFound is a ConfigMap or Secret the target reads, not marked optional,
	// that does not exist: the primary (which reads its own copy) is not written until it does.
	ReasonConfigNotFound = "ConfigNotFound"
	// ReasonValid: a MetricTemplate's query and provider pass the admission webhook's checks
	// (its Ready condition; an invalid one is InvalidSpec).
	ReasonValid = "Valid"
)
