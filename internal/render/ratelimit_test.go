package render

import (
	"testing"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

func rateLimitedPolicy() *meshv1.MeshPolicy {
	p := paymentPolicy()
	p.Spec.RateLimit = &meshv1.RateLimit{
		Requests: 100, Interval: "1s", Burst: ptr[int32](200),
		Paths: []meshv1.PathRateLimit{
			{Prefix: "/api", Requests: 10},
			{Prefix: "/api/search", Requests: 2, Interval: "10s"},
		},
	}
	return p
}

// The rate limit is an EnvoyFilter per workload, selecting its pods, inserting the local
// rate limit filter into their inbound HTTP chains, in the form Istio documents.
func TestMeshPolicyRateLimitGolden(t *testing.T) {
	set := renderPolicy(t, rateLimitedPolicy(), MeshPolicyOptions{CanarySelector: map[string]string{"app": "payment-processing-canary"}})
	if len(set.EnvoyFilters) != 2 {
		t.Fatalf("%d EnvoyFilters, want one for the primary's pods and one for the canary's", len(set.EnvoyFilters))
	}
	objs := []Object{set.EnvoyFilters[0], set.EnvoyFilters[1]}
	expectGoldenValid(t, "meshpolicy-ratelimit.yaml", objs)
}

func TestMeshPolicyRateLimitErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(rl *meshv1.RateLimit)
		field  string
		reason string
	}{
		{name: "interval under 50ms", mutate: func(rl *meshv1.RateLimit) { rl.Interval = "10ms" }, field: "spec.rateLimit.interval"},
		{name: "interval not a duration", mutate: func(rl *meshv1.RateLimit) { rl.Interval = "soon" }, field: "spec.rateLimit.interval"},
		{name: "no requests", mutate: func(rl *meshv1.RateLimit) { rl.Requests = 0 }, field: "spec.rateLimit.requests"},
		{name: "burst under requests", mutate: func(rl *meshv1.RateLimit) { rl.Burst = ptr[int32](50) },
			field: "spec.rateLimit.burst", reason: meshv1.ReasonInconsistent},
		{name: "success status", mutate: func(rl *meshv1.RateLimit) { rl.StatusCode = 200 }, field: "spec.rateLimit.statusCode"},
		{name: "relative prefix", mutate: func(rl *meshv1.RateLimit) { rl.Paths[0].Prefix = "api" }, field: "spec.rateLimit.paths[0].prefix"},
		{name: "prefix twice", mutate: func(rl *meshv1.RateLimit) { rl.Paths[1].Prefix = "/api" }, field: "spec.rateLimit.paths[1].prefix"},
		{name: "path interval", mutate: func(rl *meshv1.RateLimit) { rl.Paths[1].Interval = "1us" }, field: "spec.rateLimit.paths[1].interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := rateLimitedPolicy()
			tc.mutate(p.Spec.RateLimit)
			expectPolicyError(t, p, tc.field, tc.reason)
		})
	}
}

// expectPolicyError renders p for the payment Service and expects an error on field, for
// reason (InvalidSpec when empty).
func expectPolicyError(t *testing.T, p *meshv1.MeshPolicy, field, reason string) {
	t.Helper()
	_, err := MeshPolicyObjects(p, paymentService(), MeshPolicyOptions{})
	if reason == "" {
		reason = meshv1.ReasonInvalidSpec
	}
	expectFieldError(t, err, field, reason)
}

// expectGoldenValid compares objs with a golden file and checks each against its CRD.
func expectGoldenValid(t *testing.T, file string, objs []Object) {
	t.Helper()
	expectGolden(t, file, objs)
	for _, o := range objs {
		expectValid(t, o)
	}
}
