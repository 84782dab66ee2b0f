package v1alpha1

// Labels and annotations canopy puts on what it generates, so that GitOps tools can
// recognise (and ignore) generated objects.
const (
	// LabelManagedBy marks every object canopy generates.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy on generated objects.
	ManagedByValue = "canopy"
	// LabelCredentials, set to "true" on a Secret, lets canopy send the Secret's
	// credentials to a metric provider or webhook that a Canary or MetricTemplate names.
	LabelCredentials = "mesh.canopy.dev/credentials"
	// LabelOwnerKind names the kind of the canopy resource that owns a generated object.
	LabelOwnerKind = "mesh.canopy.dev/owner-kind"
	// LabelOwnerName names the canopy resource that owns a generated object.
	LabelOwnerName = "mesh.canopy.dev/owner-name"
	// LabelOwnerNamespace names the namespace of that resource.
	LabelOwnerNamespace = "mesh.canopy.dev/owner-namespace"

	// AnnotationRequest asks the controller for a manual action without touching the spec,
	// so a GitOps sync does not revert it. Its value is "<action>" or "<action>:<token>";
	// the controller acts once per distinct value and records it in status.lastHandledRequest.
	// Actions: promote, abort, pause, resume, retry, and confirm-deletion (while a deletion
	// waits for a revision that was not promoted).
	AnnotationRequest = "mesh.canopy.dev/request"
)

// Duration is a Go duration string such as "30s", "1m" or "1h30m". Each number has at
// most 5 digits before its unit, so that no duration the pattern lets through overflows
// (Go's and CEL's limit is about 2562047h; 32 characters hold at most 499995h), and CEL
// rules can compare any of them.
// +kubebuilder:validation:Pattern=`^([0-9]{1,5}(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
// +kubebuilder:validation:MaxLength=32
type Duration string

// StringMatch matches a string exactly, by prefix or by an RE2 regular expression.
// Exactly one of the three must be set.
// +kubebuilder:validation:XValidation:rule="[has(self.exact), has(self.prefix), has(self.regex)].filter(x, x).size() == 1",message="exactly one of exact, prefix or regex must be set"
type StringMatch struct {
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Exact *string `json:"exact,omitempty"`
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Prefix *string `json:"prefix,omitempty"`
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Regex *string `json:"regex,omitempty"`
}

// HTTPMatch selects HTTP requests. All the given conditions must hold.
type HTTPMatch struct {
	// +optional
	URI *StringMatch `json:"uri,omitempty"`
	// +optional
	Method *StringMatch `json:"method,omitempty"`
	// Headers by name (lower case), e.g. {"x-canary": {"exact": "insider"}} or
	// {"cookie": {"regex": "^(.*?;)?(user=test)(;.*)?$"}}.
	// +kubebuilder:validation:MaxProperties=32
	// +optional
	Headers map[string]StringMatch `json:"headers,omitempty"`
	// +kubebuilder:validation:MaxProperties=32
	// +optional
	QueryParams map[string]StringMatch `json:"queryParams,omitempty"`
}

// HTTPRetry is a retry policy for HTTP requests.
type HTTPRetry struct {
	// Attempts is the number of retries for a request.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Attempts int32 `json:"attempts"`
	// PerTryTimeout bounds each attempt.
	// +optional
	PerTryTimeout Duration `json:"perTryTimeout,omitempty"`
	// RetryOn lists Envoy retry conditions, e.g. "5xx,gateway-error,connect-failure".
	// +kubebuilder:validation:Pattern=`^[a-z0-9,_-]*$`
	// +kubebuilder:validation:MaxLength=256
	// +optional
	RetryOn string `json:"retryOn,omitempty"`
}

// HeaderOperations sets, adds or removes headers.
type HeaderOperations struct {
	// +kubebuilder:validation:MaxProperties=32
	// +optional
	Set map[string]string `json:"set,omitempty"`
	// +kubebuilder:validation:MaxProperties=32
	// +optional
	Add map[string]string `json:"add,omitempty"`
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Remove []string `json:"remove,omitempty"`
}

// Headers manipulates request and response headers.
type Headers struct {
	// +optional
	Request *HeaderOperations `json:"request,omitempty"`
	// +optional
	Response *HeaderOperations `json:"response,omitempty"`
}

// CorsPolicy is a CORS policy for the service's routes.
type CorsPolicy struct {
	// +kubebuilder:validation:MaxItems=64
	// +optional
	AllowOrigins []StringMatch `json:"allowOrigins,omitempty"`
	// +kubebuilder:validation:MaxItems=16
	// +optional
	AllowMethods []string `json:"allowMethods,omitempty"`
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:Pattern=`^[-!#$%&'*+.^_|~0-9A-Za-z]+$`
	// +optional
	AllowHeaders []string `json:"allowHeaders,omitempty"`
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:Pattern=`^[-!#$%&'*+.^_|~0-9A-Za-z]+$`
	// +optional
	ExposeHeaders []string `json:"exposeHeaders,omitempty"`
	// +optional
	MaxAge Duration `json:"maxAge,omitempty"`
	// +optional
	AllowCredentials *bool `json:"allowCredentials,omitempty"`
}

// TLSMode is the client-side TLS mode of a DestinationRule.
// +kubebuilder:validation:Enum=DISABLE;SIMPLE;MUTUAL;ISTIO_MUTUAL
type TLSMode string

// LoadBalancer is a simple load-balancing algorithm.
// +kubebuilder:validation:Enum=ROUND_ROBIN;LEAST_REQUEST;RANDOM;PASSTHROUGH
type LoadBalancer string

// ConnectionPool limits connections to a service.
type ConnectionPool struct {
	// +optional
	TCP *TCPConnectionPool `json:"tcp,omitempty"`
	// +optional
	HTTP *HTTPConnectionPool `json:"http,omitempty"`
}

// TCPConnectionPool limits TCP connections.
type TCPConnectionPool struct {
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxConnections *int32 `json:"maxConnections,omitempty"`
	// +optional
	ConnectTimeout Duration `json:"connectTimeout,omitempty"`
}

// HTTPConnectionPool limits HTTP requests.
type HTTPConnectionPool struct {
	// +kubebuilder:validation:Minimum=1
	// +optional
	HTTP1MaxPendingRequests *int32 `json:"http1MaxPendingRequests,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +optional
	HTTP2MaxRequests *int32 `json:"http2MaxRequests,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxRequestsPerConnection *int32 `json:"maxRequestsPerConnection,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxRetries *int32 `json:"maxRetries,omitempty"`
	// +optional
	IdleTimeout Duration `json:"idleTimeout,omitempty"`
}

// CircuitBreaker ejects failing endpoints (Istio outlier detection).
type CircuitBreaker struct {
	// +kubebuilder:validation:Minimum=1
	// +optional
	Consecutive5xxErrors *int32 `json:"consecutive5xxErrors,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +optional
	ConsecutiveGatewayErrors *int32 `json:"consecutiveGatewayErrors,omitempty"`
	// +optional
	Interval Duration `json:"interval,omitempty"`
	// +optional
	BaseEjectionTime Duration `json:"baseEjectionTime,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	MaxEjectionPercent *int32 `json:"maxEjectionPercent,omitempty"`
}

// TrafficPolicy is applied to the generated DestinationRules.
type TrafficPolicy struct {
	// TLS sets the client-side TLS mode; with mesh mTLS this is ISTIO_MUTUAL.
	// +optional
	TLSMode TLSMode `json:"tlsMode,omitempty"`
	// +optional
	LoadBalancer LoadBalancer `json:"loadBalancer,omitempty"`
	// +optional
	ConnectionPool *ConnectionPool `json:"connectionPool,omitempty"`
	// +optional
	CircuitBreaker *CircuitBreaker `json:"circuitBreaker,omitempty"`

	FlaggerTrafficPolicyFields `json:",inline"`
}
