package analysis

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metricsql"

	"canopy.dev/canopy/internal/analysis/providers/cloudwatch"
	"canopy.dev/canopy/internal/analysis/providers/datadog"
	"canopy.dev/canopy/internal/analysis/providers/dynatrace"
	"canopy.dev/canopy/internal/analysis/providers/graphite"
	"canopy.dev/canopy/internal/analysis/providers/influxdb"
	"canopy.dev/canopy/internal/analysis/providers/newrelic"
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
	case newrelic.Type:
		return renderNRQL(tmpl, vars)
	case dynatrace.Type:
		return renderDynatrace(tmpl, vars)
	case datadog.Type:
		return renderTokens(tmpl, vars, datadogTokenRe, "a Datadog tag value (letters, digits, _ - . /)")
	case influxdb.TypeFlux:
		return flux.render(tmpl, vars)
	case influxdb.TypeInfluxQL:
		return influxQL.render(tmpl, vars)
	case cloudwatch.Type:
		return renderTokens(tmpl, vars, cloudWatchTokenRe, "a CloudWatch dimension value (letters, digits, _ . : / -)")
	case graphite.Type:
		return renderTokens(tmpl, vars, graphiteTokenRe, "one Graphite path node (letters, digits, _ -)")
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
	case datadog.Type, newrelic.Type, dynatrace.Type, graphite.Type, influxdb.TypeFlux, influxdb.TypeInfluxQL:
		// canopy has no parser of these languages: the provider judges the query when it
		// runs (a BadQuery outcome).
		_, err := RenderFor(providerType, tmpl, sampleVars(tmpl))
		return err
	case cloudwatch.Type:
		rendered, err := RenderFor(providerType, tmpl, sampleVars(tmpl))
		if err != nil {
			return err
		}
		_, err = cloudwatch.ParseQueries(rendered)
		return err
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

// datadogTokenRe is what a value may be in a Datadog metric query: a tag value or a name,
// never a comma, brace, colon, space or operator that would add a tag, close the scope or
// start another expression.
var datadogTokenRe = regexp.MustCompile(`^[A-Za-z0-9_./-]+$`)

// cloudWatchTokenRe is what a value may be in a CloudWatch query: a dimension value such as
// a target group (targetgroup/name/id) or a name, never a quote or a backslash that would
// leave the JSON string or the expression's string it is written in, nor a space, comma or
// parenthesis.
var cloudWatchTokenRe = regexp.MustCompile(`^[A-Za-z0-9_.:/-]+$`)

// graphiteTokenRe is what a value may be in a Graphite target: one node of a metric path
// or a tag value, never a dot (another node), a wildcard (* ? [..] {..}), a comma, a
// parenthesis or a quote that would widen the series matched or change the expression.
var graphiteTokenRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// renderTokens substitutes placeholders in a language canopy does not lex: every value must
// be one token of safe characters (safe), wherever it lands, or the template is refused.
func renderTokens(tmpl string, vars QueryVars, safe *regexp.Regexp, what string) (string, error) {
	var out strings.Builder
	for i := 0; i < len(tmpl); {
		if !strings.HasPrefix(tmpl[i:], "{{") {
			out.WriteByte(tmpl[i])
			i++
			continue
		}
		name, value, n, err := readPlaceholder(tmpl, i, vars, false, "")
		if err != nil {
			return "", err
		}
		if !safe.MatchString(value) {
			return "", templateErrorf("{{ %s }}: value %q is not %s", name, value, what)
		}
		out.WriteString(value)
		i += n
	}
	return out.String(), nil
}

// sampleVars fills every placeholder of tmpl with a sample value, for validation.
func sampleVars(tmpl string) QueryVars {
	vars := QueryVars{Namespace: sampleIdent, Name: sampleIdent, Target: sampleIdent, Service: sampleIdent,
		Interval: time.Minute, Vars: map[string]string{}}
	for _, m := range anyPlaceholderRe.FindAllStringSubmatch(tmpl, -1) {
		if key, ok := cutVariable(m[1]); ok {
			vars.Vars[key] = sampleIdent
		}
	}
	return vars
}
