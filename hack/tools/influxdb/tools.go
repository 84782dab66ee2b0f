//go:build tools

// Package tools pins the InfluxDB 1.x server (influxd) that end-to-end tests query with InfluxQL
// as a metric provider (MetricTemplate provider type influxdb).
package tools

import _ "github.com/influxdata/influxdb/cmd/influxd"
