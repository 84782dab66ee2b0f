package meshsim

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The annotations on a Deployment's pod template that say how its pods answer, so that a
// bad revision is just a Deployment edit.
const (
	// AnnotationErrorRate is the fraction of requests answered with an error, "0".."1".
	AnnotationErrorRate = "meshsim.canopy.dev/error-rate"
	// AnnotationErrorCode is the status of those errors (default 500).
	AnnotationErrorCode = "meshsim.canopy.dev/error-code"
	// AnnotationLatency is the latency distribution in milliseconds: "p50=20,p99=80"
	// (log-normal through those points; p90 or p95 may stand for p99) or one number for
	// a constant latency.
	AnnotationLatency = "meshsim.canopy.dev/latency-ms"
)

// Behavior is how a workload answers.
type Behavior struct {
	ErrorRate float64
	ErrorCode int
	// P50 and the upper quantile Q (with its standard normal score Z) define a log-normal
	// latency; Z is 0 for a constant latency.
	P50, Q, Z float64
}

// DefaultBehavior answers every request with 200 in about 10 ms (p99 25 ms).
var DefaultBehavior = Behavior{ErrorRate: 0, ErrorCode: 500, P50: 10, Q: 25, Z: zScore[99]}

// standard normal scores of the upper quantiles AnnotationLatency accepts.
var zScore = map[int]float64{90: 1.2815515655446004, 95: 1.6448536269514722, 99: 2.3263478740408408}

// ParseBehavior reads a pod template's annotations; what is not annotated keeps
// DefaultBehavior's value.
func ParseBehavior(annotations map[string]string) (Behavior, error) {
	b := DefaultBehavior
	if s, ok := annotations[AnnotationErrorRate]; ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(v) || v < 0 || v > 1 {
			return DefaultBehavior, fmt.Errorf("%s=%q: want a fraction between 0 and 1", AnnotationErrorRate, s)
		}
		b.ErrorRate = v
	}
	if s, ok := annotations[AnnotationErrorCode]; ok {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || v < 100 || v > 599 {
			return DefaultBehavior, fmt.Errorf("%s=%q: want an HTTP status", AnnotationErrorCode, s)
		}
		b.ErrorCode = v
	}
	if s, ok := annotations[AnnotationLatency]; ok {
		if err := b.parseLatency(s); err != nil {
			return DefaultBehavior, fmt.Errorf("%s=%q: %w", AnnotationLatency, s, err)
		}
	}
	return b, nil
}

func (b *Behavior) parseLatency(s string) error {
	s = strings.TrimSpace(s)
	if v, err := strconv.ParseFloat(s, 64); err == nil {
		if !(v > 0) || math.IsInf(v, 0) {
			return fmt.Errorf("want a positive latency")
		}
		b.P50, b.Q, b.Z = v, v, 0
		return nil
	}
	var p50, q float64
	var z float64
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("want p50=N,p99=N")
		}
		ms, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || !(ms > 0) || math.IsInf(ms, 0) {
			return fmt.Errorf("%s: want a positive number of milliseconds", k)
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if k == "p50" {
			p50 = ms
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(k, "p"))
		zs, known := zScore[n]
		if err != nil || !strings.HasPrefix(k, "p") || !known {
			return fmt.Errorf("unknown quantile %q: use p50 with p90, p95 or p99", k)
		}
		if zs > z {
			q, z = ms, zs
		}
	}
	switch {
	case p50 == 0:
		return fmt.Errorf("p50 is required")
	case z == 0:
		b.P50, b.Q, b.Z = p50, p50, 0
	case q < p50:
		return fmt.Errorf("the upper quantile is below p50")
	default:
		b.P50, b.Q, b.Z = p50, q, z
	}
	return nil
}

// Latency is the latency at quantile u (0 < u < 1) of the distribution.
func (b Behavior) Latency(u float64) float64 {
	if b.Z == 0 || b.Q == b.P50 {
		return b.P50
	}
	u = min(max(u, 1e-9), 1-1e-9)
	sigma := (math.Log(b.Q) - math.Log(b.P50)) / b.Z
	return math.Exp(math.Log(b.P50) + sigma*math.Sqrt2*math.Erfinv(2*u-1))
}
