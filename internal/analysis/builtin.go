package analysis

import (
	"fmt"
	"math"
	"strconv"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// The built-in checks, computed from Istio's standard metrics as reported by the canary's
// own sidecars (reporter="destination"): the canary workload is the target Deployment,
// whose pods serve the canary's share of traffic during a rollout.
const (
	CheckRequestSuccessRate = "request-success-rate"
	CheckRequestDuration    = "request-duration"
)

const istioSelector = `reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload="{{ target }}"`

var builtinQueries = map[string]string{
	// Percentage of responses that are not 5xx. "or vector(0)" keeps a window where every
	// response failed at 0% instead of no data; a window without requests stays no data
	// (no series) or NaN (0/0).
	CheckRequestSuccessRate: `100 * (sum(rate(istio_requests_total{` + istioSelector + `,response_code!~"5.*"}[{{ interval }}])) or vector(0))` +
		` / sum(rate(istio_requests_total{` + istioSelector + `}[{{ interval }}]))`,
	// 99th percentile of the request duration, in milliseconds.
	CheckRequestDuration: `histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{` + istioSelector + `}[{{ interval }}])) by (le))`,
}

// requestCountQuery counts the canary's requests in the window, for minRequests.
const requestCountQuery = `sum(increase(istio_requests_total{` + istioSelector + `}[{{ interval }}]))`

// FormatValue formats a measured value for status: two decimals at most ("99.51",
// "100"), and significant digits for small values ("0.00123").
func FormatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case v != 0 && math.Abs(v) < 0.01:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	s := strconv.FormatFloat(v, 'f', 2, 64)
	for s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

// preciseValue shows enough digits that a value just outside a bound does not read as
// the bound itself, as FormatValue's rounding would ("100 is below the minimum 100").
func preciseValue(v float64) string { return strconv.FormatFloat(v, 'g', 8, 64) }

func formatBound(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// FormatThreshold writes a range as status shows it: ">= 99", "<= 500" or "99..100".
func FormatThreshold(r meshv1.ThresholdRange) string {
	switch {
	case r.Min != nil && r.Max != nil:
		return formatBound(*r.Min) + ".." + formatBound(*r.Max)
	case r.Min != nil:
		return ">= " + formatBound(*r.Min)
	case r.Max != nil:
		return "<= " + formatBound(*r.Max)
	}
	return ""
}

// judge decides a measured value against its range. A value that is not a finite number
// is never a pass, whatever the range.
func judge(v float64, r meshv1.ThresholdRange) (meshv1.CheckOutcome, string) {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return meshv1.OutcomeNaN, fmt.Sprintf("the query returned %s (no requests in the window?)", FormatValue(v))
	case r.Min == nil && r.Max == nil:
		return meshv1.OutcomeBadQuery, "the check has no thresholdRange"
	case r.Min != nil && v < *r.Min:
		return meshv1.OutcomeFail, fmt.Sprintf("%s is below the minimum %s", preciseValue(v), formatBound(*r.Min))
	case r.Max != nil && v > *r.Max:
		return meshv1.OutcomeFail, fmt.Sprintf("%s is above the maximum %s", preciseValue(v), formatBound(*r.Max))
	}
	return meshv1.OutcomePass, ""
}
