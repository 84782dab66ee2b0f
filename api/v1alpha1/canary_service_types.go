package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime"
)

// CanaryServiceMeta are the settings of the generated Services beyond their one port:
// their labels and annotations (read by external-dns, cloud load balancers and scrapers)
// and the pod template's other ports. The shape is Flagger's.
type CanaryServiceMeta struct {
	// Apex are labels and annotations of the apex Service "<name>".
	// +optional
	Apex *ServiceMetadata `json:"apex,omitempty"`
	// Primary are labels and annotations of the Service "<name>-primary".
	// +optional
	Primary *ServiceMetadata `json:"primary,omitempty"`
	// Canary are labels and annotations of the Service "<name>-canary".
	// +optional
	Canary *ServiceMetadata `json:"canary,omitempty"`
	// PortDiscovery adds every port the target's containers declare to the generated
	// Services, besides port: named as the container port is (unnamed ports become
	// "tcp-<port>", "udp-<port>" or "sctp-<port>"), with the container port's number and
	// protocol. The VirtualService routes port only; the other ports go to the primary's
	// pods through the apex Service.
	// +optional
	PortDiscovery bool `json:"portDiscovery,omitempty"`
}

// ServiceMetadata are labels and annotations canopy sets on a generated Service, besides its
// own labels (app.kubernetes.io/managed-by and mesh.canopy.dev/*, which cannot be set here).
// Labels or annotations removed from this list are removed from the Service; those others
// write on it are left alone.
type ServiceMetadata struct {
	// +kubebuilder:validation:MaxProperties=64
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// +kubebuilder:validation:MaxProperties=64
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// SessionAffinity keeps a user who reached the canary on it for the rest of the rollout
// (Flagger's sessionAffinity): the canary's responses set a cookie, and requests that carry
// it go to the canary whatever the weights. Weighted rollouts only; the cookie routes
// nothing once the rollout is promoted or rolled back.
type SessionAffinity struct {
	// CookieName is the cookie's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	CookieName string `json:"cookieName"`
	// MaxAge is the cookie's lifetime in seconds (Max-Age); by default 86400 (a day).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=31536000
	// +kubebuilder:default=86400
	// +optional
	MaxAge int32 `json:"maxAge,omitempty"`
	// PrimaryCookieName, when set, keeps users who reached the primary during the rollout
	// on it too, by a cookie of that name, so that the weights keep holding for new users
	// rather than tilting to the canary as its users stay.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	// +optional
	PrimaryCookieName string `json:"primaryCookieName,omitempty"`
	// Path is the cookie's Path attribute; "/" (the whole site) by default.
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^/[^;\x00-\x1f\x7f]*$`
	// +optional
	Path string `json:"path,omitempty"`
	// Domain is the cookie's Domain attribute; by default the request's host only.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^\.?[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$`
	// +optional
	Domain string `json:"domain,omitempty"`
	// HTTPOnly hides the cookie from scripts.
	// +optional
	HTTPOnly bool `json:"httpOnly,omitempty"`
	// Secure sends the cookie over HTTPS only.
	// +optional
	Secure bool `json:"secure,omitempty"`
	// SameSite is the cookie's SameSite attribute.
	// +kubebuilder:validation:Enum=Strict;Lax;None
	// +optional
	SameSite string `json:"sameSite,omitempty"`
	// Partitioned stores the cookie in partitioned storage (CHIPS).
	// +optional
	Partitioned bool `json:"partitioned,omitempty"`
}

// The fields below are Flagger's with no canopy equivalent. They are accepted so that a
// Flagger Canary whose apiVersion alone is changed is admitted; they change nothing, and
// the admission webhook warns of each one set.

// FlaggerSpecFields are Flagger's spec fields canopy ignores.
type FlaggerSpecFields struct {
	// Provider is Flagger's mesh provider: ignored; canopy's is routing.provider.
	// +optional
	Provider string `json:"provider,omitempty"`
	// MetricsServer is Flagger's Prometheus address: ignored; canopy's is
	// analysis.provider.address.
	// +optional
	MetricsServer string `json:"metricsServer,omitempty"`
	// IngressRef is Flagger's NGINX Ingress: ignored.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	IngressRef *runtime.RawExtension `json:"ingressRef,omitempty"`
	// UpstreamRef is Flagger's Gloo upstream: ignored.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	UpstreamRef *runtime.RawExtension `json:"upstreamRef,omitempty"`
	// RouteRef is Flagger's Gloo route table: ignored.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	RouteRef *runtime.RawExtension `json:"routeRef,omitempty"`
	// CanaryAnalysis is Flagger's deprecated name of analysis: ignored.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	CanaryAnalysis *runtime.RawExtension `json:"canaryAnalysis,omitempty"`
}

// FlaggerServiceFields are Flagger's service fields canopy ignores.
type FlaggerServiceFields struct {
	// Name is Flagger's apex Service name: ignored; the apex is named after targetRef.name.
	// +optional
	Name string `json:"name,omitempty"`
	// AppProtocol is Flagger's appProtocol: ignored; Istio infers the protocol from portName.
	// +optional
	AppProtocol string `json:"appProtocol,omitempty"`
	// Delegation is Flagger's VirtualService delegation: ignored.
	// +optional
	Delegation bool `json:"delegation,omitempty"`
	// Rewrite is Flagger's route rewrite: ignored; a MeshPolicy's routes[].rewrite does it.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Rewrite *runtime.RawExtension `json:"rewrite,omitempty"`
	// MeshName is Flagger's App Mesh mesh: ignored.
	// +optional
	MeshName string `json:"meshName,omitempty"`
	// Backends are Flagger's App Mesh backends: ignored.
	// +optional
	Backends []string `json:"backends,omitempty"`
	// GatewayRefs are Flagger's Gateway API parents: ignored; canopy's are gateways with
	// routing.provider gatewayapi.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	GatewayRefs []runtime.RawExtension `json:"gatewayRefs,omitempty"`
	// TrafficDistribution is Flagger's Service trafficDistribution: ignored.
	// +optional
	TrafficDistribution string `json:"trafficDistribution,omitempty"`
	// Headless is Flagger's headless primary and canary Services: ignored.
	// +optional
	Headless bool `json:"headless,omitempty"`
	// BackendTimeout is Flagger's Gateway API backend timeout: ignored.
	// +optional
	BackendTimeout string `json:"backendTimeout,omitempty"`
	// Mirror are Flagger's Gateway API mirror filters: ignored; canopy's is analysis.mirror.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Mirror []runtime.RawExtension `json:"mirror,omitempty"`
	// UnmanagedMetadata are Flagger's label and annotation keys left to others: ignored;
	// canopy leaves alone every key it does not set.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	UnmanagedMetadata *runtime.RawExtension `json:"unmanagedMetadata,omitempty"`
}

// FlaggerTrafficPolicyFields are the parts of Istio's TrafficPolicy that Flagger copies and
// canopy's typed subset names differently or lacks: ignored.
type FlaggerTrafficPolicyFields struct {
	// TLS is Istio's tls: ignored; canopy's is tlsMode.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	TLS *runtime.RawExtension `json:"tls,omitempty"`
	// OutlierDetection is Istio's: ignored; canopy's is circuitBreaker.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	OutlierDetection *runtime.RawExtension `json:"outlierDetection,omitempty"`
	// PortLevelSettings are Istio's: ignored.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	PortLevelSettings []runtime.RawExtension `json:"portLevelSettings,omitempty"`
}

// FlaggerAnalysisFields are Flagger's analysis fields canopy ignores.
type FlaggerAnalysisFields struct {
	// Alerts are Flagger's AlertProvider references: ignored; canopy's are event webhooks.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Alerts []runtime.RawExtension `json:"alerts,omitempty"`
}

// FlaggerMetricFields are Flagger's metric fields canopy ignores.
type FlaggerMetricFields struct {
	// Threshold is Flagger's deprecated threshold: ignored; canopy's is thresholdRange.max.
	// +optional
	Threshold *float64 `json:"threshold,omitempty"`
	// Query is Flagger's deprecated inline query: ignored; canopy's is a MetricTemplate.
	// +optional
	Query string `json:"query,omitempty"`
}

// FlaggerWebhookFields are Flagger's webhook fields canopy ignores.
type FlaggerWebhookFields struct {
	// MuteAlert is Flagger's: ignored; canopy has no alerts to mute.
	// +optional
	MuteAlert bool `json:"muteAlert,omitempty"`
	// DisableTLS is Flagger's: ignored; canopy verifies https:// webhooks' certificates.
	// +optional
	DisableTLS bool `json:"disableTLS,omitempty"`
}

// FlaggerAutoscalerFields are Flagger's autoscalerRef fields canopy ignores.
type FlaggerAutoscalerFields struct {
	// PrimaryScalerQueries are Flagger's KEDA queries: ignored.
	// +optional
	PrimaryScalerQueries map[string]string `json:"primaryScalerQueries,omitempty"`
	// PrimaryScalerReplicas is Flagger's: ignored.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	PrimaryScalerReplicas *runtime.RawExtension `json:"primaryScalerReplicas,omitempty"`
}
