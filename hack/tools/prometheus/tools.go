//go:build tools

// Package tools pins the Prometheus server that scrapes the mesh simulator in end-to-end tests.
package tools

import _ "github.com/prometheus/prometheus/cmd/prometheus"
