package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MetricTemplateSpec is a metric query with variables.
type MetricTemplateSpec struct {
	Provider MetricProvider `json:"provider"`
	// Query is a template in the provider's query language: PromQL for prometheus, MetricsQL
	// for victoriametrics, a JSONPath selecting one number for web, a metric query for
	// datadog, NRQL for newrelic, a metric selector for dynatrace, a target expression for
	// graphite, Flux for influxdb, InfluxQL for influxql, a JSON list of GetMetricData's
	// MetricDataQuery for cloudwatch. Variables are written
	// {{ namespace }}, {{ name }}, {{ target }}, {{ service }}, {{ interval }} and
	// {{ variables.KEY }}; every value is escaped for the place it is substituted in, so a
	// Canary cannot change the query's shape. A web query takes no variables.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=8192
	Query string `json:"query"`
	// AllowedNamespaces are the namespaces, besides the template's own, whose Canaries may
	// use it when the operator allows cross-namespace references; "*" is every namespace.
	// Empty: only Canaries of the template's namespace. A template never lends its
	// credentials: one with a provider.secretRef serves only its own namespace.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$`
	// +optional
	AllowedNamespaces []string `json:"allowedNamespaces,omitempty"`
}

// MetricProvider is where a template's query runs.
// +kubebuilder:validation:XValidation:rule="!has(self.timeout) || duration(self.timeout) >= duration('100ms')",message="timeout must be at least 100ms",fieldPath=".timeout"
// +kubebuilder:validation:XValidation:rule="!has(self.type) || self.type in ['prometheus', 'victoriametrics'] || has(self.address)",message="address is required for this provider type: the operator's default address is Prometheus'",fieldPath=".address"
// +kubebuilder:validation:XValidation:rule="has(self.type) && self.type == 'newrelic' ? has(self.newRelic) : !has(self.newRelic)",message="newRelic is required with type newrelic, and only then",fieldPath=".newRelic"
// +kubebuilder:validation:XValidation:rule="has(self.type) && self.type == 'cloudwatch' ? has(self.cloudWatch) : !has(self.cloudWatch)",message="cloudWatch is required with type cloudwatch, and only then",fieldPath=".cloudWatch"
// +kubebuilder:validation:XValidation:rule="has(self.type) && self.type in ['influxdb', 'influxql'] ? has(self.influxDB) : !has(self.influxDB)",message="influxDB is required with types influxdb and influxql, and only then",fieldPath=".influxDB"
// +kubebuilder:validation:XValidation:rule="!has(self.influxDB) || (self.type == 'influxdb' ? has(self.influxDB.org) && !has(self.influxDB.database) && !has(self.influxDB.retentionPolicy) : has(self.influxDB.database) && !has(self.influxDB.org))",message="influxDB.org for type influxdb (Flux), influxDB.database (and retentionPolicy) for type influxql",fieldPath=".influxDB"
type MetricProvider struct {
	// Type is the metrics backend: prometheus, victoriametrics (Prometheus' query API with
	// MetricsQL), web (any HTTP endpoint answering JSON, read with a JSONPath), or datadog
	// (Datadog's v1 metric query API; the Secret gives "api-key" and "application-key"), or
	// newrelic (NRQL through NerdGraph; the Secret gives "api-key", a User key), or dynatrace
	// (a metric selector of the Metrics API v2; the Secret's "token" is an access token), or
	// graphite (a target of the render API; a Secret is optional, for a proxy), or influxdb
	// (Flux through /api/v2/query) or influxql (InfluxQL through /query), where influxDB says
	// where the query runs and the Secret gives a "token" or "username" and "password", or
	// cloudwatch (GetMetricData, SigV4-signed with the Secret's "aws-access-key-id",
	// "aws-secret-access-key" and optional "aws-session-token"). A Canary's
	// spec.analysis.provider, which runs the built-in PromQL checks, takes only the PromQL
	// types. docs/concepts.md lists each type's query, address and how it was tested.
	// +kubebuilder:validation:Enum=prometheus;victoriametrics;web;datadog;newrelic;dynatrace;graphite;influxdb;influxql;cloudwatch
	// +kubebuilder:default=prometheus
	// +optional
	Type string `json:"type,omitempty"`
	// Address of the provider, e.g. http://prometheus.monitoring:9090 (default, for the PromQL
	// types only: the operator's --prometheus-address); for web, the URL that is read. It must pass the operator's URL policy
	// (--metrics-provider-allowed-hosts, --metrics-provider-allowed-cidrs): by default no
	// loopback, link-local, metadata, private or cluster address.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.startsWith('http://') || self.startsWith('https://')",message="address must be an http:// or https:// URL"
	// +optional
	Address string `json:"address,omitempty"`
	// SecretRef names a Secret in the template's (or Canary's) namespace with a "token" key
	// (bearer) or "username" and "password" keys (basic auth), and optionally "ca.crt"; for
	// datadog, "api-key" and "application-key". The
	// Secret must be labelled mesh.canopy.dev/credentials=true and may not be a
	// ServiceAccount token; its credentials go only to hosts in the operator's
	// --credential-allowed-hosts.
	// +optional
	SecretRef *LocalObjectReference `json:"secretRef,omitempty"`
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
	// Timeout bounds one query. The operator lowers it to its ceiling
	// (--max-check-timeout, 10s by default), and the queries of one reconcile share its time
	// budget (--reconcile-budget); a check the budget does not reach reports Timeout.
	// +kubebuilder:default="5s"
	// +optional
	Timeout Duration `json:"timeout,omitempty"`
	// NewRelic is the account a newrelic query runs in.
	// +optional
	NewRelic *NewRelicProvider `json:"newRelic,omitempty"`
	// InfluxDB is where an influxdb or influxql query runs.
	// +optional
	InfluxDB *InfluxDBProvider `json:"influxDB,omitempty"`
	// CloudWatch is the AWS region a cloudwatch query runs in.
	// +optional
	CloudWatch *CloudWatchProvider `json:"cloudWatch,omitempty"`
}

// NewRelicProvider says where an NRQL query runs.
type NewRelicProvider struct {
	// AccountID is the New Relic account the query runs in.
	// +kubebuilder:validation:Minimum=1
	AccountID int64 `json:"accountID"`
}

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
}

// MetricTemplateStatus reports whether the template is usable.
type MetricTemplateStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=canopy,shortName=mt
// +kubebuilder:printcolumn:name="Provider",type=string,JSONPath=`.spec.provider.type`
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.provider.address`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// MetricTemplate is a reusable metric query for Canary checks.
type MetricTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MetricTemplateSpec   `json:"spec"`
	Status MetricTemplateStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// MetricTemplateList contains a list of MetricTemplate.
type MetricTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MetricTemplate `json:"items"`
}
