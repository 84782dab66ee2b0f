// Package registry builds the provider a MetricTemplate's provider.type names. Every
// provider dials through the same transports (providers.NewTransport): the URL policy, TLS
// settings and redirect refusal apply to all of them alike.
package registry

import (
	"fmt"
	"slices"

	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/analysis/providers/cloudwatch"
	"canopy.dev/canopy/internal/analysis/providers/datadog"
	"canopy.dev/canopy/internal/analysis/providers/dynatrace"
	"canopy.dev/canopy/internal/analysis/providers/graphite"
	"canopy.dev/canopy/internal/analysis/providers/influxdb"
	"canopy.dev/canopy/internal/analysis/providers/newrelic"
	"canopy.dev/canopy/internal/analysis/providers/prometheus"
	"canopy.dev/canopy/internal/analysis/providers/web"
)

// Registry builds providers of every type, sharing transports between them.
type Registry struct {
	transports providers.TransportCache
}

// New returns an empty Registry.
func New() *Registry { return &Registry{} }

// New builds the provider for cfg.Type ("" is prometheus). Its signature is a
// providers.Factory:
//
//	analysis.New(reader, registry.New().New, opts)
func (r *Registry) New(cfg providers.Config) (providers.Provider, error) {
	switch cfg.Type {
	case "", prometheus.Type, prometheus.TypeVictoriaMetrics:
		return prometheus.NewWith(cfg, &r.transports)
	}
	t, err := r.transports.Get(cfg)
	if err != nil {
		return nil, err
	}
	switch cfg.Type {
	case web.Type:
		return web.New(cfg, t)
	case datadog.Type:
		return datadog.New(cfg, t)
	case newrelic.Type:
		return newrelic.New(cfg, t)
	case dynatrace.Type:
		return dynatrace.New(cfg, t)
	case graphite.Type:
		return graphite.New(cfg, t)
	case cloudwatch.Type:
		return cloudwatch.New(cfg, t)
	case influxdb.TypeFlux, influxdb.TypeInfluxQL:
		return influxdb.New(cfg, t)
	}
	return nil, fmt.Errorf("unknown provider type %q: want one of %v", cfg.Type, Types())
}

// Types are the provider types New builds.
func Types() []string {
	return slices.Clone(types)
}

var types = []string{prometheus.Type, prometheus.TypeVictoriaMetrics, web.Type, datadog.Type, newrelic.Type, dynatrace.Type, graphite.Type, influxdb.TypeFlux, influxdb.TypeInfluxQL, cloudwatch.Type}
