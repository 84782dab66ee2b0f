package v1alpha1

// Authentication says how requests prove who sent them: JSON Web Tokens from the issuers
// listed (a RequestAuthentication). A request with an invalid token is refused; one without
// a token passes unauthenticated, unless an authorization rule asks for a request
// principal (from.requestPrincipals, or when request.auth.claims[...]).
type Authentication struct {
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +listType=map
	// +listMapKey=issuer
	JWT []JWTRule `json:"jwt"`
}

// JWTRule accepts the tokens of one issuer, verified with its keys: inline (jwks), or
// fetched by istiod from jwksUri, an outbound call the operator must allow
// (--allowed-jwks-hosts; docs/security.md).
// +kubebuilder:validation:XValidation:rule="has(self.jwksUri) != has(self.jwks)",message="set one of jwksUri and jwks"
type JWTRule struct {
	// Issuer is the tokens' iss claim, e.g. "https://accounts.example.com".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Issuer string `json:"issuer"`
	// JWKSURI is the HTTPS URL of the issuer's JSON Web Key Set, which istiod fetches.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https://[^\s/?#@]+(/[^\s]*)?$`
	// +optional
	JWKSURI string `json:"jwksUri,omitempty"`
	// JWKS is the issuer's JSON Web Key Set itself, as JSON ({"keys": [...]}).
	// +kubebuilder:validation:MaxLength=65536
	// +optional
	JWKS string `json:"jwks,omitempty"`
	// Audiences the token's aud claim must name one of (default: any).
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=512
	// +optional
	Audiences []string `json:"audiences,omitempty"`
	// ForwardOriginalToken keeps the token on the request sent to the workload (by default
	// the sidecar removes it).
	// +optional
	ForwardOriginalToken bool `json:"forwardOriginalToken,omitempty"`
	// FromHeaders are where the token is read (default: Authorization: Bearer <token>).
	// +kubebuilder:validation:MaxItems=8
	// +optional
	FromHeaders []JWTHeader `json:"fromHeaders,omitempty"`
}

// JWTHeader is a request header carrying a token, after an optional prefix.
type JWTHeader struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[-!#$%&'*+.^_|~0-9A-Za-z]+$`
	Name string `json:"name"`
	// Prefix before the token, e.g. "Bearer ".
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Prefix string `json:"prefix,omitempty"`
}
