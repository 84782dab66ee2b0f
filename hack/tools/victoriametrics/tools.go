//go:build tools

// Package tools pins the VictoriaMetrics single-node server that end-to-end tests query as a
// PromQL/MetricsQL-compatible metric provider (MetricTemplate provider type victoriametrics).
package tools

import _ "github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics"
