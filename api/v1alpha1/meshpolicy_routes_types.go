package v1alpha1

// RouteActions are what a MeshPolicy route does besides forwarding to the Service: CORS,
// and instead of forwarding, a redirect, a direct response or a weighted split among
// Services of the policy's namespace. At most one of redirect, directResponse and
// destinations is set.
type RouteActions struct {
	// CorsPolicy answers browsers' CORS preflight requests for the route and adds the CORS
	// headers to its answers.
	// +optional
	CorsPolicy *CorsPolicy `json:"corsPolicy,omitempty"`
	// Redirect answers the route's requests with an HTTP redirect; nothing is forwarded.
	// +optional
	Redirect *RouteRedirect `json:"redirect,omitempty"`
	// DirectResponse answers the route's requests with a fixed status and body; nothing is
	// forwarded.
	// +optional
	DirectResponse *DirectResponse `json:"directResponse,omitempty"`
	// Destinations split the route's requests by weight among Services of the policy's
	// namespace (the target Service among them, or not), instead of sending them all to
	// the target Service. The weights add up to 100.
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Destinations []RouteDestination `json:"destinations,omitempty"`
}

// RouteRedirect is an HTTP redirect: the request's URL with the parts given replaced.
// +kubebuilder:validation:XValidation:rule="has(self.uri) || has(self.authority) || has(self.scheme)",message="set uri, authority or scheme"
type RouteRedirect struct {
	// URI replaces the path (and query) of the URL.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/[^\s]*$`
	// +optional
	URI string `json:"uri,omitempty"`
	// Authority replaces the host (and port) of the URL.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?$`
	// +optional
	Authority string `json:"authority,omitempty"`
	// Scheme replaces the URL's scheme.
	// +kubebuilder:validation:Enum=http;https
	// +optional
	Scheme string `json:"scheme,omitempty"`
	// RedirectCode is the redirect's status (default 301).
	// +kubebuilder:validation:Enum=301;302;303;307;308
	// +optional
	RedirectCode int32 `json:"redirectCode,omitempty"`
}

// DirectResponse is a fixed answer.
type DirectResponse struct {
	// +kubebuilder:validation:Minimum=200
	// +kubebuilder:validation:Maximum=599
	Status int32 `json:"status"`
	// Body is the answer's body, as text (at most 4096 bytes).
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Body string `json:"body,omitempty"`
}

// RouteDestination is one Service of the policy's namespace a route sends a share of its
// requests to.
type RouteDestination struct {
	// Host is the name of a Service of the policy's namespace (not a domain name: a route
	// cannot send elsewhere).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	Host string `json:"host"`
	// Subset is a subset of a DestinationRule for the host.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	// +optional
	Subset string `json:"subset,omitempty"`
	// Port of the host's Service (needed when it has several ports).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port *int32 `json:"port,omitempty"`
	// Weight is the share of the route's requests, in percent.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Weight int32 `json:"weight"`
}
