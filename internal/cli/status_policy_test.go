package cli

import (
	"bytes"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

func TestPolicyStatusView(t *testing.T) {
	now := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	p := &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bookinfo", Name: "reviews"},
		Spec:       meshv1.MeshPolicySpec{TargetRef: meshv1.ServiceRef{Name: "reviews"}, Rollout: &meshv1.PolicyRollout{}},
		Status: meshv1.MeshPolicyStatus{
			Rollout: &meshv1.PolicyRolloutStatus{
				Phase: meshv1.PolicyPhaseHeld, Reason: "WouldDeny", DryRunSince: &metav1.Time{Time: now.Add(-2 * time.Minute)},
				Message:     "the new authorization would have denied 42 requests (maxDenied 0)",
				DeniedCalls: []meshv1.DeniedCall{{SourcePrincipal: "cluster.local/ns/bookinfo/sa/productpage", Method: "GET", Path: "/reviews/1", Count: 42}},
			},
			Conditions: []metav1.Condition{{Type: meshv1.ConditionPolicyRollout, Status: metav1.ConditionFalse, Reason: "WouldDeny", Message: "held", LastTransitionTime: metav1.Time{Time: now.Add(-time.Minute)}}},
		},
	}
	var b bytes.Buffer
	writePolicyStatus(&b, p, nil, nil, 5, now, palette{})
	want := `MeshPolicy bookinfo/reviews: Unknown
  Target     Service reviews
  Rollout    Held: the new authorization would have denied 42 requests (maxDenied 0)
  Reason     WouldDeny
  Since      2m ago
  Next       kubectl canopy promote meshpolicy/reviews -n bookinfo (enforce now), or abort (keep the rules in force)

Would deny
  SOURCE PRINCIPAL                           METHOD   PATH         REQUESTS
  cluster.local/ns/bookinfo/sa/productpage   GET      /reviews/1   42

Conditions
  TYPE            STATUS   REASON      SINCE     MESSAGE
  PolicyRollout   False    WouldDeny   60s ago   held

Events
  none
`
	if got := b.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	for name, want := range map[string]string{"meshpolicy/reviews": "reviews", "mp/x": "x", "reviews": "", "canary/reviews": "", "mp/": ""} {
		if got, _ := policyName(name); got != want {
			t.Errorf("policyName(%q) = %q, want %q", name, got, want)
		}
	}
}
