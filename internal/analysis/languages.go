package analysis

import (
	"fmt"

	"github.com/VictoriaMetrics/metricsql"

	"canopy.dev/canopy/internal/analysis/providers/prometheus"
	"canopy.dev/canopy/internal/analysis/providers/web"
)

// IsPromQL says whether a provider type ("" is the default, Prometheus) runs PromQL: the
// built-in checks and minRequests' request count run only there.
func IsPromQL(providerType string) bool {
	switch providerType {
	case "", prometheus.Type, prometheus.TypeVictoriaMetrics:
		return true
	}
	return false
}

// RenderFor renders a MetricTemplate's query for its provider type, escaping every value
// for that provider's query language.
func RenderFor(providerType, tmpl string, vars QueryVars) (string, error) {
	switch providerType {
	case web.Type:
		if m := anyPlaceholderRe.FindStringSubmatch(tmpl); m != nil {
			return "", templateErrorf("{{ %s }}: the web provider's query is a JSONPath and takes no placeholders", m[1])
		}
		return tmpl, nil
	}
	return RenderQuery(tmpl, vars)
}

// ValidateFor checks a MetricTemplate's query for its provider type before any Canary uses
// it: it renders, and the rendered query is valid in the provider's language where canopy
// can parse it (PromQL, a JSONPath).
func ValidateFor(providerType, tmpl string) error {
	switch providerType {
	case prometheus.TypeVictoriaMetrics:
		// MetricsQL is a superset of PromQL with the same string literals and comments:
		// RenderQuery escapes for it, and its own parser judges the result.
		return validateRendered(tmpl, "MetricsQL", func(q string) error {
			_, err := metricsql.Parse(q)
			return err
		})
	case web.Type:
		if _, err := RenderFor(providerType, tmpl, QueryVars{}); err != nil {
			return err
		}
		if _, err := web.ParsePath(tmpl); err != nil {
			return fmt.Errorf("%w", err)
		}
		return nil
	}
	return ValidateQuery(tmpl)
}
