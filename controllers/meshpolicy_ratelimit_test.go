package controllers

import (
	"testing"

	istionetv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// A rate limit is an EnvoyFilter selecting the Service's pods, stored as rendered and
// listed in status; it is pruned when the rate limit goes.
func TestMeshPolicyRateLimitAppliedAndPruned(t *testing.T) {
	h := newPolicyHarness(t)
	p := simplePolicy("catalog", "catalog")
	p.Spec.RateLimit = &meshv1.RateLimit{Requests: 5, Interval: "1m", Paths: []meshv1.PathRateLimit{{Prefix: "/search", Requests: 1}}}
	h.create(service("catalog", 8080), p)
	got := h.settlePolicy("catalog")
	expectReady(t, got)
	ef := &istionetv1alpha3.EnvoyFilter{}
	h.mustGet(h.ns, "catalog-ratelimit", ef)
	if l := ef.Spec.GetWorkloadSelector().GetLabels(); l["app"] != "catalog" || len(l) != 1 {
		t.Fatalf("the EnvoyFilter selects %v, want the Service's pods", l)
	}
	if s := objectState(got, "EnvoyFilter", h.ns, "catalog-ratelimit"); s == nil || s.State != stateApplied {
		t.Fatalf("status lists the EnvoyFilter as %+v", s)
	}

	h.updatePolicy("catalog", func(s *meshv1.MeshPolicySpec) { s.RateLimit = nil })
	expectReady(t, h.settlePolicy("catalog"))
	h.mustNotExist(h.ns, "catalog-ratelimit", &istionetv1alpha3.EnvoyFilter{})
}
