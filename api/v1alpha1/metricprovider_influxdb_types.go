package v1alpha1

// InfluxDBProvider says where an InfluxDB query runs: an organization for Flux (type
// influxdb), a database for InfluxQL (type influxql).
type InfluxDBProvider struct {
	// Org is the organization (its name) a Flux query runs in, sent as /api/v2/query's org.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Org string `json:"org,omitempty"`
	// Database is the database an InfluxQL query runs in, sent as /query's db.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Database string `json:"database,omitempty"`
	// RetentionPolicy is the retention policy of an InfluxQL query (rp); by default the
	// database's.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +optional
	RetentionPolicy string `json:"retentionPolicy,omitempty"`
}
