package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CanarySpec declares how a Deployment is delivered progressively.
// +kubebuilder:validation:XValidation:rule="!has(self.autoscalerRef) || self.autoscalerRef.name != self.targetRef.name || self.autoscalerRef.kind != self.targetRef.kind",message="autoscalerRef must not point at the target itself"
// +kubebuilder:validation:XValidation:rule="!has(self.revertOnDeletion) || !self.revertOnDeletion || !has(self.deletionPolicy) || self.deletionPolicy != 'Orphan'",message="revertOnDeletion: true contradicts deletionPolicy: Orphan (revertOnDeletion is deprecated: remove it)"
// +kubebuilder:validation:XValidation:rule="!has(self.routing) || !has(self.routing.provider) || self.routing.provider != 'gatewayapi' || !has(self.service.gateways) || !self.service.gateways.exists(g, g == 'mesh')",message="service.gateways: \"mesh\" is an Istio gateway name; with routing.provider gatewayapi the mesh is always routed (the apex Service is the HTTPRoute's parent) and gateways name Gateway API Gateways"
type CanarySpec struct {
	// TargetRef is the Deployment to deliver. canopy reads its pod template and
	// changes only its replica count.
	TargetRef TargetRef `json:"targetRef"`

	// AutoscalerRef is a HorizontalPodAutoscaler of the target. canopy generates the
	// matching autoscaler for the primary Deployment.
	// +optional
	AutoscalerRef *AutoscalerRef `json:"autoscalerRef,omitempty"`

	// Service describes the apex Service and the generated routing.
	Service CanaryService `json:"service"`

	// Analysis is the progression: how traffic moves and how each step is judged.
	Analysis CanaryAnalysis `json:"analysis"`

	// Routing chooses the API canopy routes the service's traffic with.
	// +optional
	Routing *CanaryRouting `json:"routing,omitempty"`

	// ProgressDeadlineSeconds bounds how long the canary (and, when promoting, the primary)
	// may take to become ready before the rollout fails.
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=86400
	// +kubebuilder:default=600
	// +optional
	ProgressDeadlineSeconds *int32 `json:"progressDeadlineSeconds,omitempty"`

	// Suspend stops all changes: no traffic moves and nothing is written until it is cleared.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// SkipAnalysis promotes a new revision without running checks or waiting for steps.
	// +optional
	SkipAnalysis bool `json:"skipAnalysis,omitempty"`

	// DeletionPolicy says what deleting the Canary does. HandOver (the default): before
	// anything generated goes, the target Deployment runs the last promoted revision at the
	// primary's scale and is ready, and the apex Service selects its pods; a target that
	// carries a revision not promoted keeps the primary serving until it is promoted back
	// (in Git) or a confirm-deletion request accepts it. Orphan: the generated objects are
	// left to the garbage collector at once, as Flagger does without revertOnDeletion; the
	// service has no ready pods until the target is scaled up and its Service selects them.
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// RevertOnDeletion is deprecated: deletion hands over by default. true is the same as
	// deletionPolicy HandOver and contradicts Orphan; false changes nothing.
	// +optional
	RevertOnDeletion bool `json:"revertOnDeletion,omitempty"`

	FlaggerSpecFields `json:",inline"`
}

// CanaryRouting chooses how the apex Service's traffic is split between the primary and
// the canary.
type CanaryRouting struct {
	// Provider is the routing API: istio (the default) writes a VirtualService and
	// DestinationRules; gatewayapi writes a Gateway API HTTPRoute whose parent is the apex
	// Service (mesh routing, GAMMA) and, when service.gateways names them, Gateway API
	// Gateways (ingress). Settings the chosen API cannot express are named in the Routing
	// condition.
	// +kubebuilder:validation:Enum=istio;gatewayapi
	// +kubebuilder:default=istio
	// +optional
	Provider RoutingProvider `json:"provider,omitempty"`
}

// RoutingProvider is the API a Canary's traffic is routed with.
type RoutingProvider string

const (
	// RoutingIstio routes with an Istio VirtualService and DestinationRules.
	RoutingIstio RoutingProvider = "istio"
	// RoutingGatewayAPI routes with a Gateway API HTTPRoute.
	RoutingGatewayAPI RoutingProvider = "gatewayapi"
)

// RoutingProviderOf is the Canary's routing provider, istio when none is set.
func (s *CanarySpec) RoutingProviderOf() RoutingProvider {
	if s.Routing == nil || s.Routing.Provider == "" {
		return RoutingIstio
	}
	return s.Routing.Provider
}

// DeletionPolicy is what deleting a Canary does to the service it delivers.
// +kubebuilder:validation:Enum=HandOver;Orphan
type DeletionPolicy string

const (
	// DeletionHandOver hands the service back to the target before removing the generated
	// objects.
	DeletionHandOver DeletionPolicy = "HandOver"
	// DeletionOrphan leaves the generated objects to the garbage collector at once.
	DeletionOrphan DeletionPolicy = "Orphan"
)

// HandsOverOnDeletion says whether deleting the Canary hands the service back to the target
// first: unless deletionPolicy is Orphan.
func (s *CanarySpec) HandsOverOnDeletion() bool { return s.DeletionPolicy != DeletionOrphan }

// TargetRef names the workload delivered by a Canary, in the Canary's namespace.
type TargetRef struct {
	// +kubebuilder:validation:Enum=apps/v1
	// +kubebuilder:default=apps/v1
	// +optional
	APIVersion string `json:"apiVersion,omitempty"`
	// Kind is Deployment (the default) or DaemonSet. A DaemonSet is delivered blue/green
	// (analysis.iterations, A/B, mirroring): it runs one pod per node, so it cannot run a
	// fraction of its pods, and weighted steps are refused.
	// +kubebuilder:validation:Enum=Deployment;DaemonSet
	// +kubebuilder:default=Deployment
	// +optional
	Kind string `json:"kind,omitempty"`
	// Name is also the apex Service's name; "-primary" and "-canary" must fit after it in
	// a Service name (63 characters, starting with a letter).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=55
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
}

// AutoscalerRef names a HorizontalPodAutoscaler in the Canary's namespace.
type AutoscalerRef struct {
	// +kubebuilder:validation:Enum=autoscaling/v2
	// +kubebuilder:default=autoscaling/v2
	// +optional
	APIVersion string `json:"apiVersion,omitempty"`
	// +kubebuilder:validation:Enum=HorizontalPodAutoscaler
	// +kubebuilder:default=HorizontalPodAutoscaler
	// +optional
	Kind string `json:"kind,omitempty"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	FlaggerAutoscalerFields `json:",inline"`
}

// CanaryService describes the Services and routing canopy generates for the target.
type CanaryService struct {
	// Port is the port of the apex, primary and canary Services.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
	// PortName names the Service port; it decides the protocol Istio infers.
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:default=http
	// +optional
	PortName string `json:"portName,omitempty"`
	// TargetPort is the container port; by default the same as Port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	TargetPort *int32 `json:"targetPort,omitempty"`
	// Hosts routed by the VirtualService besides the apex Service's own name.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	Hosts []string `json:"hosts,omitempty"`
	// Gateways the VirtualService is bound to ("mesh" is always included when
	// gateways are given). A gateway in another namespace is written "namespace/name".
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-.a-z0-9]*[a-z0-9])?$`
	// +optional
	Gateways []string `json:"gateways,omitempty"`
	// Match restricts the generated route to matching requests.
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Match []HTTPMatch `json:"match,omitempty"`
	// +optional
	Retries *HTTPRetry `json:"retries,omitempty"`
	// +optional
	Timeout Duration `json:"timeout,omitempty"`
	// +optional
	Headers *Headers `json:"headers,omitempty"`
	// +optional
	CorsPolicy *CorsPolicy `json:"corsPolicy,omitempty"`
	// +optional
	TrafficPolicy *TrafficPolicy `json:"trafficPolicy,omitempty"`

	CanaryServiceMeta    `json:",inline"`
	FlaggerServiceFields `json:",inline"`
}

// CanaryAnalysis is the progression and its checks. The strategy follows from the fields set:
// stepWeight or stepWeights give a weighted canary; iterations with match give A/B testing;
// iterations alone give blue/green; mirror adds traffic mirroring.
// +kubebuilder:validation:XValidation:rule="!(has(self.stepWeight) && has(self.stepWeights))",message="set stepWeight or stepWeights, not both"
// +kubebuilder:validation:XValidation:rule="has(self.stepWeight) || has(self.stepWeights) || has(self.iterations) || has(self.steps)",message="one of stepWeight, stepWeights, iterations or steps is required"
// +kubebuilder:validation:XValidation:rule="!has(self.steps) || !(has(self.stepWeight) || has(self.stepWeights) || has(self.iterations) || has(self.match) || has(self.mirror) && self.mirror)",message="steps cannot be combined with stepWeight, stepWeights, iterations (A/B, blue/green), match or mirror: use setWeight, analysis, setHeaderRoute and setMirrorRoute steps"
// +kubebuilder:validation:XValidation:rule="!has(self.iterations) || !(has(self.stepWeight) || has(self.stepWeights))",message="iterations (A/B or blue/green) cannot be combined with stepWeight or stepWeights"
// +kubebuilder:validation:XValidation:rule="!has(self.stepWeight) || self.stepWeight <= self.maxWeight",message="stepWeight must be less than or equal to maxWeight"
// +kubebuilder:validation:XValidation:rule="!has(self.stepWeights) || self.stepWeights.all(w, w <= self.maxWeight)",message="every stepWeights entry must be less than or equal to maxWeight"
// +kubebuilder:validation:XValidation:rule="!has(self.stepWeights) || self.stepWeights[self.stepWeights.size() - 1] == self.maxWeight",message="the last stepWeights entry must equal maxWeight"
// +kubebuilder:validation:XValidation:rule="!has(self.match) || has(self.iterations)",message="match (A/B testing) requires iterations"
// +kubebuilder:validation:XValidation:rule="!has(self.mirrorWeight) || self.mirror",message="mirrorWeight requires mirror: true"
// +kubebuilder:validation:XValidation:rule="duration(self.interval) >= duration('1s')",message="interval must be at least 1s"
type CanaryAnalysis struct {
	// Interval between two steps (and two runs of the checks).
	// +kubebuilder:default="1m"
	// +optional
	Interval Duration `json:"interval,omitempty"`
	// Threshold is the number of failed checks that rolls the canary back.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +kubebuilder:default=5
	// +optional
	Threshold int32 `json:"threshold,omitempty"`
	// StepWeight is added to the canary's weight at every passed step.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	StepWeight *int32 `json:"stepWeight,omitempty"`
	// StepWeights lists the canary's weights step by step, strictly increasing.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=100
	// +kubebuilder:validation:XValidation:rule="self.isSorted() && self.all(w, self.indexOf(w) == self.lastIndexOf(w))",message="stepWeights must be strictly increasing"
	// +optional
	StepWeights []int32 `json:"stepWeights,omitempty"`
	// MaxWeight is the canary's weight at which it is promoted.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=50
	// +optional
	MaxWeight int32 `json:"maxWeight,omitempty"`
	// PrimaryReadyThreshold is the percentage of the primary's replicas that must be
	// available for it to count as ready (Flagger's primaryReadyThreshold): with 100
	// replicas and 90, the primary serves once 90 are available.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=100
	// +optional
	PrimaryReadyThreshold int32 `json:"primaryReadyThreshold,omitempty"`
	// CanaryReadyThreshold is the percentage of the canary's replicas that must be
	// available before traffic is routed to it (Flagger's canaryReadyThreshold).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=100
	// +optional
	CanaryReadyThreshold int32 `json:"canaryReadyThreshold,omitempty"`
	// Iterations is the number of passed checks before promotion, for A/B testing and blue/green.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Iterations *int32 `json:"iterations,omitempty"`
	// Match selects the requests routed to the canary during A/B testing.
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Match []HTTPMatch `json:"match,omitempty"`
	// Mirror copies traffic to the canary; the mirrored responses are discarded.
	// +optional
	Mirror bool `json:"mirror,omitempty"`
	// MirrorWeight is the percentage of traffic mirrored (default 100).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	MirrorWeight *int32 `json:"mirrorWeight,omitempty"`
	// Provider is where the built-in checks (request-success-rate, request-duration) query:
	// e.g. the Prometheus of the Canary's mesh, with credentials from a Secret in the Canary's
	// namespace. By default, the operator's --prometheus-address.
	// +optional
	Provider *MetricProvider `json:"provider,omitempty"`
	// Metrics are the checks run at every step.
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=name
	// +optional
	Metrics []CanaryMetric `json:"metrics,omitempty"`
	// Steps and StepWeightPromotion: canary_steps_types.go.
	CanarySteps `json:",inline"`
	// Webhooks are called at the points of the rollout their type names; confirm-* gates
	// hold the rollout until they answer 200.
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=name
	// +optional
	Webhooks []CanaryWebhook `json:"webhooks,omitempty"`
	// SessionAffinity keeps users who reached the canary on it until the rollout ends.
	// +optional
	SessionAffinity *SessionAffinity `json:"sessionAffinity,omitempty"`

	FlaggerAnalysisFields `json:",inline"`
}

// OnErrorPolicy says what a check that could not be measured does.
// +kubebuilder:validation:Enum=hold;fail
type OnErrorPolicy string

const (
	// OnErrorHold waits without counting a failure, for at most holdTimeout, then fails.
	OnErrorHold OnErrorPolicy = "hold"
	// OnErrorFail counts the check as failed.
	OnErrorFail OnErrorPolicy = "fail"
)

// ThresholdRange bounds a metric's value; a value outside fails the check.
// +kubebuilder:validation:XValidation:rule="has(self.min) || has(self.max)",message="set min, max or both"
// +kubebuilder:validation:XValidation:rule="!has(self.min) || !has(self.max) || self.min <= self.max",message="min must be less than or equal to max"
type ThresholdRange struct {
	// +optional
	Min *float64 `json:"min,omitempty"`
	// +optional
	Max *float64 `json:"max,omitempty"`
}

// CanaryMetric is one health check. The built-in names request-success-rate,
// request-duration and pod-restarts need no template; any other check names a
// MetricTemplate. A measured value is judged by thresholdRange, or by successCondition
// and failureCondition (CEL), not both.
// +kubebuilder:validation:XValidation:rule="has(self.templateRef) || self.name in ['request-success-rate', 'request-duration', 'pod-restarts']",message="a metric other than request-success-rate, request-duration or pod-restarts needs a templateRef"
// +kubebuilder:validation:XValidation:rule="!(has(self.thresholdRange) && (has(self.successCondition) || has(self.failureCondition)))",message="set thresholdRange or successCondition/failureCondition, not both"
// +kubebuilder:validation:XValidation:rule="has(self.thresholdRange) || has(self.successCondition) || has(self.failureCondition) || (self.name == 'pod-restarts' && !has(self.templateRef))",message="set thresholdRange, successCondition or failureCondition (only the built-in pod-restarts has a default: max 0)"
// +kubebuilder:validation:XValidation:rule="!has(self.interval) || duration(self.interval) >= duration('1s')",message="interval must be at least 1s",fieldPath=".interval"
// +kubebuilder:validation:XValidation:rule="!has(self.holdTimeout) || duration(self.holdTimeout) >= duration('1s')",message="holdTimeout must be at least 1s",fieldPath=".holdTimeout"
// +kubebuilder:validation:XValidation:rule="!has(self.compareWithPrimary) || !self.compareWithPrimary || has(self.successCondition) || has(self.failureCondition)",message="compareWithPrimary needs a successCondition or failureCondition over canary and primary, e.g. \"canary <= primary * 1.1\""
type CanaryMetric struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// TemplateRef names a MetricTemplate.
	// +optional
	TemplateRef *TemplateRef `json:"templateRef,omitempty"`
	// ThresholdRange is the range a passing value lies in. pod-restarts defaults to
	// {max: 0}: any restart, OOM kill or readiness flap of the canary fails it.
	// +optional
	ThresholdRange ThresholdRange `json:"thresholdRange,omitzero"`
	// SuccessCondition is a CEL expression over result (a double, the measured value)
	// that is true when the value passes, e.g. "result >= 0 && result < 0.01". With
	// failureCondition as well, a value for which neither is true is Inconclusive, which
	// holds the step as an unmeasurable check does (onError); alone, false fails.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	SuccessCondition string `json:"successCondition,omitempty"`
	// FailureCondition is a CEL expression over result that is true when the value fails;
	// it wins over successCondition. Alone, false passes.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	FailureCondition string `json:"failureCondition,omitempty"`
	// FailureLimit rolls the canary back as soon as this check failed more times in the
	// rollout than the limit (Argo Rollouts' failureLimit: 0 rolls back at the first
	// failure), whatever the Canary's threshold. Unset: only the threshold counts.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	FailureLimit *int32 `json:"failureLimit,omitempty"`
	// ConsecutiveErrorLimit rolls the canary back as soon as this check could not be
	// measured (no data, NaN, too few requests, unreachable, timeout, bad query, error)
	// more times in a row than the limit (Argo Rollouts' consecutiveErrorLimit), before
	// holdTimeout. Unset: only onError and holdTimeout apply.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	ConsecutiveErrorLimit *int32 `json:"consecutiveErrorLimit,omitempty"`
	// InconclusiveLimit pauses the rollout (as a pause request does) as soon as this
	// check was Inconclusive (neither successCondition nor failureCondition true) more
	// times in the rollout than the limit (Argo Rollouts' inconclusiveLimit); a resume
	// request goes on, counting afresh. Unset: inconclusive values hold as onError says.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	InconclusiveLimit *int32 `json:"inconclusiveLimit,omitempty"`
	// DryRun measures the check and shows it in status, but it never decides: it never
	// fails, holds or pauses the rollout, and no limit applies to it.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`
	// CompareWithPrimary measures the check's query twice: for the canary, and for the
	// primary ("<target>-primary" as {{ target }}; every other variable the same). Its
	// successCondition and failureCondition then see both values as canary and primary
	// (result is canary), e.g. "canary <= primary * 1.1 + 0.5"; one of them is required, and
	// thresholdRange does not apply. Status shows both values. minRequests counts the
	// canary's requests only.
	// +optional
	CompareWithPrimary bool `json:"compareWithPrimary,omitempty"`
	// Interval is the metric's look-back window (default: the analysis interval).
	// +optional
	Interval Duration `json:"interval,omitempty"`
	// TemplateVariables are substituted into the template's query, escaped.
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.size() <= 63 && k.matches('^[A-Za-z0-9_][A-Za-z0-9_.-]*$'))",message="templateVariables keys must be at most 63 letters, digits, '_', '.' or '-', as in {{ variables.KEY }}"
	// +kubebuilder:validation:XValidation:rule="self.all(k, self[k].size() <= 1024)",message="templateVariables values must be at most 1024 characters"
	// +optional
	TemplateVariables map[string]string `json:"templateVariables,omitempty"`
	// MinRequests is the least number of requests in the window for the value to count.
	// +kubebuilder:validation:Minimum=0
	// +optional
	MinRequests *int64 `json:"minRequests,omitempty"`
	// OnError says what happens when the check cannot be measured (no data, NaN, too few
	// requests, provider unreachable, timeout, bad query). None of these ever passes.
	// +kubebuilder:default=hold
	// +optional
	OnError OnErrorPolicy `json:"onError,omitempty"`
	// HoldTimeout bounds how long onError=hold waits before the check fails.
	// +kubebuilder:default="10m"
	// +optional
	HoldTimeout Duration `json:"holdTimeout,omitempty"`

	FlaggerMetricFields `json:",inline"`
}

// TemplateRef names a MetricTemplate; namespace defaults to the Canary's.
type TemplateRef struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// WebhookType is the point of a rollout at which a webhook is called. confirm-* webhooks
// hold the rollout until they answer 2xx; pre-rollout and rollout are checks; a rollback
// webhook is asked each interval while a rollout waits or analyses, and a 2xx answer rolls
// it back; post-rollout and event are told what happened.
// +kubebuilder:validation:Enum=confirm-rollout;pre-rollout;rollout;confirm-traffic-increase;confirm-promotion;post-rollout;rollback;event
type WebhookType string

// The webhook types.
const (
	WebhookConfirmRollout         WebhookType = "confirm-rollout"
	WebhookPreRollout             WebhookType = "pre-rollout"
	WebhookRollout                WebhookType = "rollout"
	WebhookConfirmTrafficIncrease WebhookType = "confirm-traffic-increase"
	WebhookConfirmPromotion       WebhookType = "confirm-promotion"
	WebhookPostRollout            WebhookType = "post-rollout"
	WebhookRollback               WebhookType = "rollback"
	WebhookEvent                  WebhookType = "event"
)

// CanaryWebhook is an HTTP call at a point of the rollout.
// +kubebuilder:validation:XValidation:rule="!has(self.timeout) || (duration(self.timeout) >= duration('100ms') && duration(self.timeout) <= duration('10m'))",message="timeout must be between 100ms and 10m",fieldPath=".timeout"
type CanaryWebhook struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// Type is when the webhook is called; rollout (a check at every step) by default, as
	// in Flagger.
	// +kubebuilder:default=rollout
	// +optional
	Type WebhookType `json:"type,omitempty"`
	// URL receives a POST with a JSON payload.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.startsWith('http://') || self.startsWith('https://')",message="url must be an http:// or https:// URL"
	URL string `json:"url"`
	// Timeout bounds one attempt. The operator lowers it to its ceiling
	// (--max-webhook-timeout, 30s by default), and every attempt, retries included, is
	// paid from the time budget of the reconcile (--reconcile-budget); a webhook the budget
	// does not reach reports Timeout.
	// +kubebuilder:default="10s"
	// +optional
	Timeout Duration `json:"timeout,omitempty"`
	// Retries are the attempts after a first that got no answer, or 408, 429 or 5xx.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	// +kubebuilder:default=2
	// +optional
	Retries *int32 `json:"retries,omitempty"`
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, self[k].size() <= 4096)",message="metadata values must be at most 4096 characters"
	// +optional
	Metadata map[string]string `json:"metadata,omitempty"`
	// Header is sent with every call, its value read from a Secret of the Canary's
	// namespace, so that a token need not sit in the URL. The operator sends it only to
	// hosts in its --credential-allowed-hosts, and only from a Secret labelled
	// mesh.canopy.dev/credentials=true.
	// +optional
	Header *WebhookHeader `json:"header,omitempty"`

	FlaggerWebhookFields `json:",inline"`
}

// WebhookHeader is an HTTP header whose value is a Secret's key.
type WebhookHeader struct {
	// Name of the header, e.g. Authorization.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][-A-Za-z0-9_]*$`
	Name string `json:"name"`
	// SecretKeyRef is the Secret (in the Canary's namespace) and key holding the value.
	SecretKeyRef SecretKeyReference `json:"secretKeyRef"`
}

// SecretKeyReference is a key of a Secret in the same namespace.
type SecretKeyReference struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// CanaryPhase is where a Canary's rollout stands.
// +kubebuilder:validation:Enum="";Initializing;Initialized;Waiting;Progressing;Promoting;Finalising;Succeeded;RollingBack;Failed;Terminating
type CanaryPhase string

// The phases of a Canary.
const (
	// PhaseInitializing: the primary and the routing are being generated.
	PhaseInitializing CanaryPhase = "Initializing"
	// PhaseInitialized: the primary serves all traffic; no rollout yet.
	PhaseInitialized CanaryPhase = "Initialized"
	// PhaseWaiting: a new revision waits for a confirm-rollout gate.
	PhaseWaiting CanaryPhase = "Waiting"
	// PhaseProgressing: traffic moves to the canary step by step.
	PhaseProgressing CanaryPhase = "Progressing"
	// PhasePromoting: the canary's template is copied to the primary.
	PhasePromoting CanaryPhase = "Promoting"
	// PhaseFinalising: traffic goes back to the promoted primary; the canary scales to zero.
	PhaseFinalising CanaryPhase = "Finalising"
	// PhaseSucceeded: the last rollout was promoted.
	PhaseSucceeded CanaryPhase = "Succeeded"
	// PhaseRollingBack: traffic goes back to the primary; the canary scales to zero.
	PhaseRollingBack CanaryPhase = "RollingBack"
	// PhaseFailed: the last rollout was rolled back.
	PhaseFailed CanaryPhase = "Failed"
	// PhaseTerminating: the Canary is being deleted.
	PhaseTerminating CanaryPhase = "Terminating"
)

// CheckOutcome is the result of one measurement.
// +kubebuilder:validation:Enum=Pass;Fail;Inconclusive;NoData;NaN;TooFewRequests;Unreachable;Timeout;BadQuery;Error
type CheckOutcome string

// The check outcomes. Only Pass passes.
const (
	OutcomePass CheckOutcome = "Pass"
	OutcomeFail CheckOutcome = "Fail"
	// OutcomeInconclusive: a value was measured, and neither successCondition nor
	// failureCondition is true for it.
	OutcomeInconclusive   CheckOutcome = "Inconclusive"
	OutcomeNoData         CheckOutcome = "NoData"
	OutcomeNaN            CheckOutcome = "NaN"
	OutcomeTooFewRequests CheckOutcome = "TooFewRequests"
	OutcomeUnreachable    CheckOutcome = "Unreachable"
	OutcomeTimeout        CheckOutcome = "Timeout"
	OutcomeBadQuery       CheckOutcome = "BadQuery"
	OutcomeError          CheckOutcome = "Error"
)

// CheckStatus is the last measurement of one check.
type CheckStatus struct {
	Name    string       `json:"name"`
	Outcome CheckOutcome `json:"outcome"`
	// Value as measured, formatted; empty when there was none.
	// +optional
	Value string `json:"value,omitempty"`
	// PrimaryValue is the primary's value of a check with compareWithPrimary, formatted.
	// +optional
	PrimaryValue string `json:"primaryValue,omitempty"`
	// Threshold as written, e.g. ">= 99" or "<= 500".
	// +optional
	Threshold string `json:"threshold,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
	// HoldingSince is when the check started holding the rollout (onError=hold).
	// +optional
	HoldingSince *metav1.Time `json:"holdingSince,omitempty"`
	// +optional
	LastMeasured *metav1.Time `json:"lastMeasured,omitempty"`
	// DryRun: the check is measured and shown but never decides.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`
	// Failures counts the check's Fail outcomes in the current rollout (failureLimit).
	// +optional
	Failures int32 `json:"failures,omitempty"`
	// ConsecutiveErrors counts the check's unmeasurable outcomes in a row
	// (consecutiveErrorLimit); a measured value resets it.
	// +optional
	ConsecutiveErrors int32 `json:"consecutiveErrors,omitempty"`
	// Inconclusive counts the check's Inconclusive outcomes since the rollout started or
	// last paused for its inconclusiveLimit.
	// +optional
	Inconclusive int32 `json:"inconclusive,omitempty"`
}

// GateStatus is the state of a confirm-* webhook gate.
type GateStatus struct {
	Name string      `json:"name"`
	Type WebhookType `json:"type"`
	Open bool        `json:"open"`
	// Attempts counts the calls made while the gate was closed, in this rollout.
	Attempts int32 `json:"attempts"`
	// +optional
	Message string `json:"message,omitempty"`
	// +optional
	LastAttempt *metav1.Time `json:"lastAttempt,omitempty"`
}

// CanaryStatus is the whole state of a rollout: a restarted operator resumes from it.
type CanaryStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	Phase CanaryPhase `json:"phase,omitempty"`
	// CanaryWeight is the percentage of traffic routed to the canary.
	// +optional
	CanaryWeight int32 `json:"canaryWeight"`
	// StepIndex counts the passed steps of the current rollout (with spec.analysis.steps: the
	// rollout is at steps[stepIndex-1]).
	// +optional
	StepIndex int32 `json:"stepIndex,omitempty"`
	// FailedChecks counts the failed checks of the current rollout.
	// +optional
	FailedChecks int32 `json:"failedChecks"`
	// Iterations counts the passed analysis runs of an A/B or blue/green rollout, or of the
	// current analysis step.
	// +optional
	Iterations int32 `json:"iterations,omitempty"`
	// CurrentRevision is the revision of the target's pod template (and tracked configs).
	// +optional
	CurrentRevision string `json:"currentRevision,omitempty"`
	// LastPromotedRevision is the revision the primary runs.
	// +optional
	LastPromotedRevision string `json:"lastPromotedRevision,omitempty"`
	// LastFailedRevision is the revision last rolled back; it is not tried again unless retried.
	// +optional
	LastFailedRevision string `json:"lastFailedRevision,omitempty"`
	// RolloutStarted is when the current rollout began.
	// +optional
	RolloutStarted *metav1.Time `json:"rolloutStarted,omitempty"`
	// LastStepTime is when the weight (or iteration) last changed, or the phase was entered.
	// +optional
	LastStepTime *metav1.Time `json:"lastStepTime,omitempty"`
	// LastTransitionTime is when the phase last changed.
	// +optional
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
	// WaitingForCanarySince is set while the rollout waits for the canary to become ready
	// within a step: the start of that wait, which the progress deadline counts from. The next
	// reconcile that still waits keeps the step's clock instead of restarting it.
	// +optional
	WaitingForCanarySince *metav1.Time `json:"waitingForCanarySince,omitempty"`
	// SuspendedSince is when spec.suspend was first seen set; when it is cleared, the current
	// step's clock restarts, so that the time suspended counts against no interval or deadline.
	// +optional
	SuspendedSince *metav1.Time `json:"suspendedSince,omitempty"`
	// Paused holds the rollout at its current step (set by a pause request).
	// +optional
	Paused bool `json:"paused,omitempty"`
	// LastHandledRequest is the last value of the mesh.canopy.dev/request annotation acted on.
	// +optional
	LastHandledRequest string `json:"lastHandledRequest,omitempty"`
	// DeletionConfirmedRevision is the target's revision a confirm-deletion (or promote)
	// request accepted while the deletion waited: the target is handed over with it though
	// it was never promoted.
	// +optional
	DeletionConfirmedRevision string `json:"deletionConfirmedRevision,omitempty"`
	// ServiceAdopted is true when the apex Service existed before the Canary and was taken over.
	// +optional
	ServiceAdopted bool `json:"serviceAdopted,omitempty"`
	// Checks holds the last measurement of each check.
	// +listType=map
	// +listMapKey=name
	// +optional
	Checks []CheckStatus `json:"checks,omitempty"`
	// Gates holds the state of the confirm-* webhooks of the current rollout.
	// +listType=map
	// +listMapKey=name
	// +optional
	Gates []GateStatus `json:"gates,omitempty"`
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=canopy,shortName=cn
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Weight",type=integer,JSONPath=`.status.canaryWeight`
// +kubebuilder:printcolumn:name="FailedChecks",type=integer,JSONPath=`.status.failedChecks`
// +kubebuilder:printcolumn:name="LastTransitionTime",type=date,JSONPath=`.status.lastTransitionTime`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1

// Canary is the progressive delivery of a Deployment through Istio.
type Canary struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   CanarySpec   `json:"spec"`
	Status CanaryStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// CanaryList contains a list of Canary.
type CanaryList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Canary `json:"items"`
}
