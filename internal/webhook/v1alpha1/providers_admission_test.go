package v1alpha1_test

import (
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
)

func providerTemplate(p meshv1.MetricProvider, query string) func(ns string) client.Object {
	return func(ns string) client.Object {
		mt := metricTemplate(query)(ns).(*meshv1.MetricTemplate)
		mt.Spec.Provider = p
		return mt
	}
}

// TestMetricTemplateProviderAdmission: each provider type's query is judged in its own
// language, and a type that is not PromQL brings its own address and keys.
func TestMetricTemplateProviderAdmission(t *testing.T) {
	startOperator(t, manager.Options{})
	secret := &meshv1.LocalObjectReference{Name: "keys"}
	runAdmission(t, []admissionCase{
		{name: "web", obj: providerTemplate(meshv1.MetricProvider{Type: "web", Address: "https://status.example.com/health"}, "{.status.successRate}")},
		{name: "web without address", obj: providerTemplate(meshv1.MetricProvider{Type: "web"}, "{.ok}"),
			wantErr: []string{"spec.provider.address", "address is required for this provider type"}},
		{name: "web with a placeholder", obj: providerTemplate(meshv1.MetricProvider{Type: "web", Address: "https://status.example.com/"}, `{.checks[?(@.name=="{{ name }}")].ok}`),
			wantErr: []string{"spec.query", "takes no placeholders"}},
		{name: "web with text around the path", obj: providerTemplate(meshv1.MetricProvider{Type: "web", Address: "https://status.example.com/"}, "rate: {.rate}"),
			wantErr: []string{"spec.query", "not one expression"}},
		{name: "MetricsQL", obj: providerTemplate(meshv1.MetricProvider{Type: "victoriametrics", Address: "https://vm.example.com"}, `max(last_over_time(x{namespace="{{ namespace }}"}))`)},
		{name: "MetricsQL as Prometheus", obj: providerTemplate(meshv1.MetricProvider{Address: "https://prom.example.com"}, `max(last_over_time(x{namespace="{{ namespace }}"}))`),
			wantErr: []string{"spec.query", "not valid PromQL"}},
		{name: "datadog without keys", obj: providerTemplate(meshv1.MetricProvider{Type: "datadog", Address: "https://api.datadoghq.com"}, "avg:m{service:{{ service }}}"),
			wantErr: []string{"spec.provider.secretRef", "needs a Secret"}},
		{name: "datadog keys to a host not allowed", obj: providerTemplate(meshv1.MetricProvider{Type: "datadog", Address: "https://api.datadoghq.com", SecretRef: secret}, "avg:m{*}"),
			wantErr: []string{"spec.provider.secretRef", "credentials from a Secret are sent to no host"}},
		{name: "newrelic without account", obj: providerTemplate(meshv1.MetricProvider{Type: "newrelic", Address: "https://api.newrelic.com", SecretRef: secret}, "SELECT count(*) FROM Transaction"),
			wantErr: []string{"spec.provider.newRelic", "newRelic is required with type newrelic"}},
		{name: "newRelic on prometheus", obj: providerTemplate(meshv1.MetricProvider{NewRelic: &meshv1.NewRelicProvider{AccountID: 1}}, "up"),
			wantErr: []string{"spec.provider.newRelic", "only then"}},
		{name: "NRQL with an unterminated string", obj: providerTemplate(meshv1.MetricProvider{Type: "newrelic", Address: "https://api.newrelic.com", SecretRef: secret,
			NewRelic: &meshv1.NewRelicProvider{AccountID: 1}}, "SELECT count(*) FROM Transaction WHERE appName = '{{ service }}"),
			wantErr: []string{"spec.query", "unterminated string literal"}},
		{name: "dynatrace without a token", obj: providerTemplate(meshv1.MetricProvider{Type: "dynatrace", Address: "https://abc123.live.dynatrace.com"}, "builtin:service.errors.total.rate:splitBy()"),
			wantErr: []string{"spec.provider.secretRef", "needs a Secret"}},
		{name: "dynatrace selector with an unterminated string", obj: providerTemplate(meshv1.MetricProvider{Type: "dynatrace", Address: "https://abc123.live.dynatrace.com", SecretRef: secret},
			`builtin:service.errors.total.rate:filter(eq("dt.entity.service.name","{{ service }})):splitBy()`),
			wantErr: []string{"spec.query", "unterminated string literal"}},
		{name: "graphite", obj: providerTemplate(meshv1.MetricProvider{Type: "graphite", Address: "https://graphite.example.com"}, "sumSeries(stats.{{ namespace }}.{{ service }}.errors)")},
		{name: "graphite without address", obj: providerTemplate(meshv1.MetricProvider{Type: "graphite"}, "sumSeries(stats.a.errors)"),
			wantErr: []string{"spec.provider.address", "address is required for this provider type"}},
		{name: "influxdb (Flux)", obj: providerTemplate(meshv1.MetricProvider{Type: "influxdb", Address: "https://influx.example.com", InfluxDB: &meshv1.InfluxDBProvider{Org: "shop"}},
			`from(bucket: "mesh") |> range(start: -{{ interval }}) |> filter(fn: (r) => r.service == "{{ service }}") |> last()`)},
		{name: "influxdb without influxDB", obj: providerTemplate(meshv1.MetricProvider{Type: "influxdb", Address: "https://influx.example.com"}, `from(bucket: "mesh")`),
			wantErr: []string{"spec.provider.influxDB", "influxDB is required with types influxdb and influxql"}},
		{name: "influxql with an org", obj: providerTemplate(meshv1.MetricProvider{Type: "influxql", Address: "https://influx.example.com", InfluxDB: &meshv1.InfluxDBProvider{Org: "shop"}}, "SELECT 1"),
			wantErr: []string{"spec.provider.influxDB", "influxDB.database (and retentionPolicy) for type influxql"}},
		{name: "Flux interpolating a placeholder", obj: providerTemplate(meshv1.MetricProvider{Type: "influxdb", Address: "https://influx.example.com", InfluxDB: &meshv1.InfluxDBProvider{Org: "shop"}},
			`from(bucket: "mesh") |> filter(fn: (r) => r.service == "${ {{ service }} }")`),
			wantErr: []string{"spec.query", "string interpolation"}},
		{name: "InfluxQL with a placeholder in a regex", obj: providerTemplate(meshv1.MetricProvider{Type: "influxql", Address: "https://influx.example.com", InfluxDB: &meshv1.InfluxDBProvider{Database: "mesh"}},
			`SELECT mean("errors") FROM "requests" WHERE "service" =~ /{{ service }}/`),
			wantErr: []string{"spec.query", "regular expression"}},
		{name: "cloudwatch without region", obj: providerTemplate(meshv1.MetricProvider{Type: "cloudwatch", Address: "https://monitoring.us-east-1.amazonaws.com", SecretRef: secret},
			`[{"Id": "a", "Expression": "SUM(METRICS())"}]`),
			wantErr: []string{"spec.provider.cloudWatch", "cloudWatch is required with type cloudwatch"}},
		{name: "cloudwatch without keys", obj: providerTemplate(meshv1.MetricProvider{Type: "cloudwatch", Address: "https://monitoring.us-east-1.amazonaws.com",
			CloudWatch: &meshv1.CloudWatchProvider{Region: "us-east-1"}}, `[{"Id": "a", "Expression": "SUM(METRICS())"}]`),
			wantErr: []string{"spec.provider.secretRef", "needs a Secret"}},
		{name: "cloudwatch query returning two values", obj: providerTemplate(meshv1.MetricProvider{Type: "cloudwatch", Address: "https://monitoring.us-east-1.amazonaws.com",
			SecretRef: secret, CloudWatch: &meshv1.CloudWatchProvider{Region: "us-east-1"}}, `[{"Id": "a", "Expression": "x"}, {"Id": "b", "Expression": "y"}]`),
			wantErr: []string{"spec.query", "2 of the queries return data"}},
		{name: "a Canary's built-in checks on a web provider", obj: canary(func(c *meshv1.Canary) {
			c.Spec.Analysis.Provider = &meshv1.MetricProvider{Type: "web", Address: "https://status.example.com/"}
		}), wantErr: []string{"spec.analysis.provider.type", "Unsupported value"}},
	})
}
