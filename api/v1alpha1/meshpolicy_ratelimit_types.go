package v1alpha1

// RateLimit is a local rate limit on the requests the service's pods answer: each pod's
// sidecar keeps its own token bucket (Envoy's local rate limit filter), so the service as
// a whole answers up to requests × pods per interval. A request that finds the bucket
// empty is answered with statusCode by the sidecar and never reaches the workload.
// +kubebuilder:validation:XValidation:rule="!has(self.burst) || self.burst >= self.requests",message="burst is the bucket's size: it cannot be smaller than requests",fieldPath=".burst"
type RateLimit struct {
	// Requests is how many requests a pod answers per interval: the tokens put back into
	// its bucket every interval.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	Requests int32 `json:"requests"`
	// Interval is how often the bucket is refilled (at least 50ms, Envoy's minimum; whole
	// milliseconds), e.g. "1s" or "1m".
	// +kubebuilder:default="1s"
	// +optional
	Interval Duration `json:"interval,omitempty"`
	// Burst is the bucket's size, the most requests answered at once after a quiet
	// spell (default: requests).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	Burst *int32 `json:"burst,omitempty"`
	// StatusCode answers the requests over the limit (default 429 Too Many Requests).
	// +kubebuilder:validation:Minimum=400
	// +kubebuilder:validation:Maximum=599
	// +optional
	StatusCode int32 `json:"statusCode,omitempty"`
	// Paths are limits of their own for the requests whose path starts with a prefix: such
	// a request takes a token from its path's bucket only, not the service-wide one. A
	// request matching several prefixes counts against the longest.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=prefix
	// +optional
	Paths []PathRateLimit `json:"paths,omitempty"`
}

// PathRateLimit is the limit of the requests whose path starts with prefix.
// +kubebuilder:validation:XValidation:rule="!has(self.burst) || self.burst >= self.requests",message="burst is the bucket's size: it cannot be smaller than requests",fieldPath=".burst"
type PathRateLimit struct {
	// Prefix of the request path, e.g. "/api/search".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/[^\s?#]*$`
	Prefix string `json:"prefix"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	Requests int32 `json:"requests"`
	// Interval of this path's bucket (default: the service's interval).
	// +optional
	Interval Duration `json:"interval,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	Burst *int32 `json:"burst,omitempty"`
}
