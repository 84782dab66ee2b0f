package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MeshPolicySpec is one service's mesh policy: security, resilience, routing, external
// dependencies, ingress and telemetry.
type MeshPolicySpec struct {
	// TargetRef is the Service the policy is for, in the MeshPolicy's namespace.
	TargetRef ServiceRef `json:"targetRef"`
	// +optional
	MTLS *MTLS `json:"mtls,omitempty"`
	// +optional
	Authorization *Authorization `json:"authorization,omitempty"`
	// Authentication verifies the requests' JSON Web Tokens.
	// +optional
	Authentication *Authentication `json:"authentication,omitempty"`
	// +optional
	Resilience *Resilience `json:"resilience,omitempty"`
	// Routes are HTTP routes to the service, matched in order.
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Routes []Route `json:"routes,omitempty"`
	// ExternalServices are dependencies outside the mesh the service may call.
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=name
	// +optional
	ExternalServices []ExternalService `json:"externalServices,omitempty"`
	// +optional
	Ingress *Ingress `json:"ingress,omitempty"`
	// +optional
	Telemetry *Telemetry `json:"telemetry,omitempty"`
	// RateLimit limits the requests each of the service's pods answers.
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`
	// +optional
	Rollout *PolicyRollout `json:"rollout,omitempty"`
}

// ServiceRef names a Service in the same namespace.
type ServiceRef struct {
	// +kubebuilder:validation:Enum=Service
	// +kubebuilder:default=Service
	// +optional
	Kind string `json:"kind,omitempty"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
}

// MTLSMode is a PeerAuthentication mode.
// +kubebuilder:validation:Enum=STRICT;PERMISSIVE;DISABLE
type MTLSMode string

// The mTLS modes.
const (
	MTLSStrict     MTLSMode = "STRICT"
	MTLSPermissive MTLSMode = "PERMISSIVE"
	MTLSDisable    MTLSMode = "DISABLE"
)

// MTLS is the service's inbound mutual TLS.
type MTLS struct {
	Mode MTLSMode `json:"mode"`
	// PortLevel overrides the mode for single container ports, e.g. a metrics port.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=port
	// +optional
	PortLevel []PortMTLS `json:"portLevel,omitempty"`
}

// PortMTLS is the mTLS mode of one port.
type PortMTLS struct {
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32    `json:"port"`
	Mode MTLSMode `json:"mode"`
}

// AuthorizationAction is what an authorization policy does with matching requests: ALLOW,
// DENY, AUDIT, or CUSTOM (ask the external authorizer named by provider).
// +kubebuilder:validation:Enum=ALLOW;DENY;AUDIT;CUSTOM
type AuthorizationAction string

// Authorization says who may call the service.
// +kubebuilder:validation:XValidation:rule="!has(self.defaultDeny) || !self.defaultDeny || self.action == 'ALLOW'",message="defaultDeny only makes sense with action ALLOW"
// +kubebuilder:validation:XValidation:rule="(has(self.action) && self.action == 'CUSTOM') == has(self.provider)",message="provider names the external authorizer of action CUSTOM, and only of it",fieldPath=".provider"
type Authorization struct {
	// +kubebuilder:default=ALLOW
	// +optional
	Action AuthorizationAction `json:"action,omitempty"`
	// Provider is, for action CUSTOM, the external authorizer that decides: the name of an
	// envoyExtAuthzHttp or envoyExtAuthzGrpc entry of the mesh configuration's
	// extensionProviders (canopy says in status when there is none of that name).
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	// +optional
	Provider string `json:"provider,omitempty"`
	// DefaultDeny also generates an allow-nothing policy, so only the rules' callers get in.
	// +optional
	DefaultDeny bool `json:"defaultDeny,omitempty"`
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Rules []AuthorizationRule `json:"rules,omitempty"`
}

// AuthorizationRule matches requests by source, operation and conditions: a request
// matches when it matches one of from, one of to, and every condition of when.
type AuthorizationRule struct {
	// +kubebuilder:validation:MaxItems=16
	// +optional
	From []AuthorizationSource `json:"from,omitempty"`
	// +kubebuilder:validation:MaxItems=16
	// +optional
	To []AuthorizationOperation `json:"to,omitempty"`
	// When are further conditions on the request's attributes (Istio's authorization
	// condition keys), all of which must hold.
	// +kubebuilder:validation:MaxItems=16
	// +optional
	When []AuthorizationCondition `json:"when,omitempty"`
}

// AuthorizationCondition matches one attribute of the request: a header, the source or
// remote address, the source's namespace or principal, a JWT's principal, audiences,
// presenter or claim (with a RequestAuthentication in force), the destination's address or
// port, the TLS server name.
// +kubebuilder:validation:XValidation:rule="has(self.values) || has(self.notValues)",message="give values or notValues"
type AuthorizationCondition struct {
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^(request\.headers\[[^\]]+\]|source\.ip|remote\.ip|source\.namespace|source\.principal|request\.auth\.principal|request\.auth\.audiences|request\.auth\.presenter|request\.auth\.claims(\[[^\]]+\])+|destination\.ip|destination\.port|connection\.sni)$`
	Key string `json:"key"`
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=512
	// +optional
	Values []string `json:"values,omitempty"`
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=512
	// +optional
	NotValues []string `json:"notValues,omitempty"`
}

// AuthorizationSource names callers: those it names, except those its not* fields name.
// +kubebuilder:validation:XValidation:rule="has(self.serviceAccounts) || has(self.namespaces) || has(self.principals) || has(self.notServiceAccounts) || has(self.notNamespaces) || has(self.notPrincipals) || has(self.requestPrincipals) || has(self.notRequestPrincipals)",message="name serviceAccounts, namespaces, principals or requestPrincipals (or their not* forms)"
type AuthorizationSource struct {
	// ServiceAccounts as "namespace/name".
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$`
	// +optional
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +optional
	Namespaces []string `json:"namespaces,omitempty"`
	// Principals as SPIFFE identities, e.g. "cluster.local/ns/shop/sa/web".
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=512
	// +optional
	Principals []string `json:"principals,omitempty"`
	// NotServiceAccounts, NotNamespaces and NotPrincipals exclude callers.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$`
	// +optional
	NotServiceAccounts []string `json:"notServiceAccounts,omitempty"`
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +optional
	NotNamespaces []string `json:"notNamespaces,omitempty"`
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=512
	// +optional
	NotPrincipals []string `json:"notPrincipals,omitempty"`
	// RequestPrincipals are the JWT identities "<issuer>/<subject>" (spec.authentication
	// verifies them), with a * wildcard at the start or end: "*" is any verified token.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=1024
	// +optional
	RequestPrincipals []string `json:"requestPrincipals,omitempty"`
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=1024
	// +optional
	NotRequestPrincipals []string `json:"notRequestPrincipals,omitempty"`
}

// AuthorizationOperation names what is called.
type AuthorizationOperation struct {
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Enum=GET;HEAD;POST;PUT;PATCH;DELETE;OPTIONS;CONNECT;TRACE
	// +optional
	Methods []string `json:"methods,omitempty"`
	// Paths, with a * wildcard at the start or end.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=1024
	// +optional
	Paths []string `json:"paths,omitempty"`
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=65535
	// +optional
	Ports []int32 `json:"ports,omitempty"`
	// NotMethods, NotPaths and NotPorts exclude operations.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Enum=GET;HEAD;POST;PUT;PATCH;DELETE;OPTIONS;CONNECT;TRACE
	// +optional
	NotMethods []string `json:"notMethods,omitempty"`
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=1024
	// +optional
	NotPaths []string `json:"notPaths,omitempty"`
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=65535
	// +optional
	NotPorts []int32 `json:"notPorts,omitempty"`
}

// Resilience is the service's fault tolerance.
// +kubebuilder:validation:XValidation:rule="!has(self.consistentHash) || !has(self.loadBalancer)",message="consistentHash replaces loadBalancer: set one",fieldPath=".consistentHash"
// +kubebuilder:validation:XValidation:rule="!has(self.localityFailover) || has(self.circuitBreaker)",message="localityFailover needs circuitBreaker: traffic fails over once outlier detection ejects the local endpoints",fieldPath=".localityFailover"
type Resilience struct {
	// +optional
	Timeout Duration `json:"timeout,omitempty"`
	// +optional
	Retries *HTTPRetry `json:"retries,omitempty"`
	// +optional
	CircuitBreaker *CircuitBreaker `json:"circuitBreaker,omitempty"`
	// +optional
	ConnectionPool *ConnectionPool `json:"connectionPool,omitempty"`
	// +optional
	LoadBalancer LoadBalancer `json:"loadBalancer,omitempty"`
	// ConsistentHash keeps a caller on one endpoint (sticky sessions) by a header, a cookie,
	// a query parameter or its address; it replaces loadBalancer.
	// +optional
	ConsistentHash *ConsistentHash `json:"consistentHash,omitempty"`
	// LocalityFailover sends traffic to another region when the endpoints of the caller's
	// region fail (outlier detection, so circuitBreaker is required), in the order given.
	// +kubebuilder:validation:MaxItems=16
	// +optional
	LocalityFailover []LocalityFailover `json:"localityFailover,omitempty"`
}

// ConsistentHash is what a caller's endpoint is chosen by: exactly one of its fields.
// +kubebuilder:validation:XValidation:rule="[has(self.httpHeaderName), has(self.httpCookie), has(self.httpQueryParameterName), has(self.useSourceIp)].filter(x, x).size() == 1",message="set exactly one of httpHeaderName, httpCookie, httpQueryParameterName and useSourceIp"
type ConsistentHash struct {
	// +kubebuilder:validation:MaxLength=256
	// +optional
	HTTPHeaderName string `json:"httpHeaderName,omitempty"`
	// HTTPCookie hashes by a cookie, which the proxy sets when a request lacks it.
	// +optional
	HTTPCookie *HashCookie `json:"httpCookie,omitempty"`
	// +kubebuilder:validation:MaxLength=256
	// +optional
	HTTPQueryParameterName string `json:"httpQueryParameterName,omitempty"`
	// +optional
	UseSourceIP *bool `json:"useSourceIp,omitempty"`
}

// HashCookie is the cookie a consistent hash reads (and sets, with ttl).
type HashCookie struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Name string `json:"name"`
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Path string `json:"path,omitempty"`
	// +optional
	TTL Duration `json:"ttl,omitempty"`
}

// LocalityFailover fails traffic from one region over to another.
type LocalityFailover struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	From string `json:"from"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	To string `json:"to"`
}

// Route is one HTTP route to the service.
// +kubebuilder:validation:XValidation:rule="[has(self.redirect), has(self.directResponse), has(self.destinations)].filter(x, x).size() <= 1",message="set at most one of redirect, directResponse and destinations"
// +kubebuilder:validation:XValidation:rule="!(has(self.redirect) || has(self.directResponse)) || !(has(self.fault) || has(self.rewrite))",message="a redirect or direct response forwards nothing: it cannot have fault or rewrite"
// +kubebuilder:validation:XValidation:rule="!has(self.destinations) || self.destinations.map(d, d.weight).sum() == 100",message="the destinations' weights add up to 100",fieldPath=".destinations"
type Route struct {
	RouteActions `json:",inline"`

	// +kubebuilder:validation:MaxLength=63
	// +optional
	Name string `json:"name,omitempty"`
	// +optional
	Match *HTTPMatch `json:"match,omitempty"`
	// Port of the Service the route sends to (default: the Service's first port).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port *int32 `json:"port,omitempty"`
	// +optional
	Rewrite *Rewrite `json:"rewrite,omitempty"`
	// +optional
	Headers *Headers `json:"headers,omitempty"`
	// Timeout overrides resilience.timeout for this route.
	// +optional
	Timeout Duration `json:"timeout,omitempty"`
	// Retries override resilience.retries for this route.
	// +optional
	Retries *HTTPRetry `json:"retries,omitempty"`
	// Fault injects delays and aborts, for drills.
	// +optional
	Fault *Fault `json:"fault,omitempty"`
}

// Rewrite rewrites a request before it is forwarded.
// +kubebuilder:validation:XValidation:rule="has(self.uri) || has(self.authority)",message="set uri, authority or both"
type Rewrite struct {
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	URI string `json:"uri,omitempty"`
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Authority string `json:"authority,omitempty"`
}

// Fault injects faults into a percentage of requests.
// +kubebuilder:validation:XValidation:rule="has(self.delay) || has(self.abort)",message="set delay, abort or both"
type Fault struct {
	// +optional
	Delay *FaultDelay `json:"delay,omitempty"`
	// +optional
	Abort *FaultAbort `json:"abort,omitempty"`
}

// FaultDelay delays a percentage of requests.
type FaultDelay struct {
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Percentage float64  `json:"percentage"`
	FixedDelay Duration `json:"fixedDelay"`
}

// FaultAbort answers a percentage of requests with an HTTP status.
type FaultAbort struct {
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Percentage float64 `json:"percentage"`
	// +kubebuilder:validation:Minimum=200
	// +kubebuilder:validation:Maximum=599
	HTTPStatus int32 `json:"httpStatus"`
}

// ExternalService is a dependency outside the mesh (a ServiceEntry).
type ExternalService struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Hosts []string `json:"hosts"`
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Ports []ExternalPort `json:"ports"`
	// +kubebuilder:validation:Enum=DNS;STATIC;NONE
	// +kubebuilder:default=DNS
	// +optional
	Resolution string `json:"resolution,omitempty"`
	// TLSOrigination lets the workload speak plain HTTP while the sidecar speaks TLS to the host.
	// +optional
	TLSOrigination *TLSOrigination `json:"tlsOrigination,omitempty"`
	// EgressGateway sends the service's traffic out through an egress gateway.
	// +optional
	EgressGateway *EgressGateway `json:"egressGateway,omitempty"`
}

// ExternalPort is a port of an external service.
type ExternalPort struct {
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Number int32 `json:"number"`
	// +kubebuilder:validation:Enum=HTTP;HTTPS;HTTP2;GRPC;TCP;TLS
	Protocol string `json:"protocol"`
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Name string `json:"name,omitempty"`
}

// TLSOrigination originates TLS to an external service. The sidecar always verifies the
// host's certificate, against the CA certificates named here or, when none are, against its
// operating system's roots; insecureSkipVerify is the explicit opt-out.
// +kubebuilder:validation:XValidation:rule="!(has(self.caCertificates) && has(self.credentialName))",message="caCertificates and credentialName are two sources of the CA certificates: set one"
// +kubebuilder:validation:XValidation:rule="!(has(self.insecureSkipVerify) && self.insecureSkipVerify && (has(self.caCertificates) || has(self.credentialName)))",message="insecureSkipVerify turns verification off: it cannot be set with caCertificates or credentialName"
type TLSOrigination struct {
	// Port the workload calls in plain HTTP; the sidecar upgrades it to TLS.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
	// +kubebuilder:validation:MaxLength=253
	// +optional
	SNI string `json:"sni,omitempty"`
	// CACertificates is the path, inside the sidecar, of a file of CA certificates that
	// verify the host's certificate (mounted into the pod, for example with the
	// sidecar.istio.io/userVolumeMount annotation). When neither it nor credentialName is
	// set, canopy writes "system": the sidecar's operating-system roots, what Istio uses
	// for an empty value, said explicitly.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^(system|/[^\s]*)$`
	// +optional
	CACertificates string `json:"caCertificates,omitempty"`
	// CredentialName names a Secret of the policy's namespace whose CA certificates (key
	// `cacert`, or `ca.crt`) verify the host's certificate; the sidecars of the policy's
	// workloads read it from istiod.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +optional
	CredentialName string `json:"credentialName,omitempty"`
	// InsecureSkipVerify turns off the verification of the host's certificate, so that the
	// traffic can be intercepted without the sidecar noticing. For test endpoints with
	// self-signed certificates only: canopy reports a warning in the policy's status, and
	// istioctl analyze warns too (IST0129).
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// Ingress exposes the service through an Istio ingress gateway.
type Ingress struct {
	Gateway IngressGateway `json:"gateway"`
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Hosts []string `json:"hosts"`
	// TLS terminates HTTPS at the gateway with a certificate from cert-manager.
	// +optional
	TLS *IngressTLS `json:"tls,omitempty"`
}

// IngressGateway selects the gateway workload; the Gateway object lives in its namespace.
type IngressGateway struct {
	// Namespace is where the Gateway (and the Certificate) is written: the policy's own by
	// default; another must be allowed by --allowed-gateway-namespaces.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Selector picks the gateway pods, in any namespace (as Istio applies a Gateway). In
	// another namespace than the policy's it must include a label the operator gives its
	// ingress gateways (--allowed-ingress-selectors, default istio=ingressgateway).
	// +kubebuilder:validation:MinProperties=1
	// +kubebuilder:validation:MaxProperties=16
	Selector map[string]string `json:"selector"`
}

// IngressTLS requests the gateway's certificate.
type IngressTLS struct {
	IssuerRef IssuerRef `json:"issuerRef"`
	// HTTPSRedirect redirects plain HTTP to HTTPS.
	// +optional
	HTTPSRedirect bool `json:"httpsRedirect,omitempty"`
}

// IssuerRef names a cert-manager Issuer or ClusterIssuer.
type IssuerRef struct {
	// +kubebuilder:validation:Enum=Issuer;ClusterIssuer
	// +kubebuilder:default=Issuer
	// +optional
	Kind string `json:"kind,omitempty"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// +kubebuilder:default=cert-manager.io
	// +optional
	Group string `json:"group,omitempty"`
}

// Telemetry configures tracing and access logs for the service's workloads.
type Telemetry struct {
	// +optional
	Tracing *Tracing `json:"tracing,omitempty"`
	// +optional
	AccessLogging *bool `json:"accessLogging,omitempty"`
}

// Tracing configures the traces the service's sidecars send: to which of the mesh's
// tracing providers (Zipkin, OpenTelemetry, ... as named in the mesh configuration's
// extensionProviders), how many requests are sampled, and which tags each span carries.
type Tracing struct {
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	SamplingPercentage float64 `json:"samplingPercentage"`
	// Provider is the name of a tracing provider in the mesh configuration's
	// extensionProviders (the istio ConfigMap of istiod's namespace); empty: the mesh's
	// default tracing provider. canopy checks that it exists and says so in status when it
	// does not (istiod would send no traces).
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	// +optional
	Provider string `json:"provider,omitempty"`
	// CustomTags are added to every span, by tag name: a literal value, a request header's
	// or an environment variable of the proxy.
	// +kubebuilder:validation:MaxProperties=16
	// +optional
	CustomTags map[string]TracingTag `json:"customTags,omitempty"`
}

// TracingTag is the value of a custom span tag: exactly one of literal, header and
// environment.
// +kubebuilder:validation:XValidation:rule="[has(self.literal), has(self.header), has(self.environment)].filter(x, x).size() == 1",message="exactly one of literal, header and environment"
type TracingTag struct {
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Literal *string `json:"literal,omitempty"`
	// Header is a request header, with the value used when it is absent.
	// +optional
	Header *TagSource `json:"header,omitempty"`
	// Environment is an environment variable of the proxy, with the value used when it is
	// not set.
	// +optional
	Environment *TagSource `json:"environment,omitempty"`
}

// TagSource names where a tag's value is read, and its value when it is missing.
type TagSource struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Name string `json:"name"`
	// +kubebuilder:validation:MaxLength=256
	// +optional
	DefaultValue string `json:"defaultValue,omitempty"`
}

// GeneratedObject is one object canopy generated for a MeshPolicy.
type GeneratedObject struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// State is Applied, Pending (waiting for something, e.g. a certificate) or Failed.
	State string `json:"state"`
	// +optional
	Message string `json:"message,omitempty"`
}

// CertificateStatus is the state of an ingress certificate.
type CertificateStatus struct {
	Name       string `json:"name"`
	Namespace  string `json:"namespace"`
	SecretName string `json:"secretName"`
	Ready      bool   `json:"ready"`
	// +optional
	NotAfter *metav1.Time `json:"notAfter,omitempty"`
	// +optional
	RenewalTime *metav1.Time `json:"renewalTime,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
}

// MeshPolicyStatus reports what was generated and whether it is in force.
type MeshPolicyStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	Objects []GeneratedObject `json:"objects,omitempty"`
	// +optional
	Certificates []CertificateStatus `json:"certificates,omitempty"`
	// ReportedWarnings are digests of the warnings in force that were already reported by an
	// event: a warning is announced once, when it appears, whatever the Ready message says.
	// +listType=set
	// +optional
	ReportedWarnings []string `json:"reportedWarnings,omitempty"`
	// +optional
	Rollout *PolicyRolloutStatus `json:"rollout,omitempty"`
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=canopy,shortName=mp
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.targetRef.name`
// +kubebuilder:printcolumn:name="mTLS",type=string,JSONPath=`.spec.mtls.mode`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1

// MeshPolicy is a service's mesh policy, rendered into Istio and cert-manager objects.
type MeshPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MeshPolicySpec   `json:"spec"`
	Status MeshPolicyStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// MeshPolicyList contains a list of MeshPolicy.
type MeshPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshPolicy `json:"items"`
}
