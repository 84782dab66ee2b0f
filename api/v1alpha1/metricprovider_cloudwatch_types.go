package v1alpha1

// CloudWatchProvider says where a cloudwatch query runs.
type CloudWatchProvider struct {
	// Region is the AWS region requests are signed for, e.g. us-east-1; the address is its
	// endpoint, e.g. https://monitoring.us-east-1.amazonaws.com.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[a-z0-9-]+$`
	Region string `json:"region"`
}
