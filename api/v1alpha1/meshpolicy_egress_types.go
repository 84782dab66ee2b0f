package v1alpha1

// EgressGateway sends an external service's traffic out through an Istio egress gateway,
// as Istio's egress gateway task does: the sidecars route the host to the gateway, and the
// gateway to the host. For HTTP ports and one host without a wildcard.
type EgressGateway struct {
	// Namespace of the egress gateway's pods and Service, where canopy writes the Gateway
	// (another namespace than the policy's must be allowed by --allowed-gateway-namespaces).
	// +kubebuilder:default=istio-system
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Selector of the egress gateway's pods (default istio: egressgateway). In a namespace
	// other than the policy's, only Istio's egress gateway (the default) is allowed.
	// +kubebuilder:validation:MaxProperties=16
	// +optional
	Selector map[string]string `json:"selector,omitempty"`
	// Service is the egress gateway's Service (default istio-egressgateway), which the
	// sidecars send the host's requests to, on port 80.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Service string `json:"service,omitempty"`
}
