package render

import (
	"maps"
	"strings"
	"testing"

	securityapi "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

func TestDryRunAuthorizationPolicies(t *testing.T) {
	ap := &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "shop", Labels: map[string]string{"a": "b"}}}
	ap.Spec.Rules = nil
	got := DryRunAuthorizationPolicies([]*securityv1.AuthorizationPolicy{ap})
	if len(got) != 1 || got[0].Name != "reviews-dry-run" || !IsDryRun(got[0]) || got[0].Labels["a"] != "b" {
		t.Fatalf("dry-run copy: %+v", got)
	}
	if IsDryRun(ap) || ap.Annotations != nil {
		t.Fatalf("the original changed: %+v", ap.ObjectMeta)
	}
	long := &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: strings.Repeat("a", 253)}}
	if n := DryRunAuthorizationPolicies([]*securityv1.AuthorizationPolicy{long})[0].Name; len(n) > 253 {
		t.Fatalf("a name of %d characters", len(n))
	}
}

func TestValidateMeshPolicyRollout(t *testing.T) {
	p := &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "reviews"},
		Spec:       meshv1.MeshPolicySpec{TargetRef: meshv1.ServiceRef{Name: "reviews"}, Rollout: &meshv1.PolicyRollout{Window: "500ms", Interval: "30s"}},
	}
	if _, err := ValidateMeshPolicy(p); err == nil || !strings.Contains(err.Error(), `spec.rollout.window: "500ms" is shorter than 1s`) {
		t.Fatalf("a window of 500ms: %v", err)
	}
	p.Spec.Rollout.Window = "5m"
	if _, err := ValidateMeshPolicy(p); err != nil {
		t.Fatalf("a valid rollout: %v", err)
	}
}

// The rules in force are applied again as canopy wrote them: its owner labels, and none of
// the annotations, least of all the applier's digest, which copied into the desired object
// would make every apply differ from the one before.
func TestInForceCopiesOnlyWhatCanopyWrites(t *testing.T) {
	owner := OwnerLabels(KindMeshPolicy, "shop", "reviews")
	labels := copyMap(owner)
	labels["argocd.argoproj.io/instance"] = "shop"
	meta := metav1.ObjectMeta{
		Name: "reviews", Namespace: "shop", Labels: labels, UID: "u1", ResourceVersion: "7",
		Annotations: map[string]string{"mesh.canopy.dev/applied-hash": "4770a7b14b3b0939", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
	}
	pa := &securityv1.PeerAuthentication{ObjectMeta: meta}
	pa.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{Mode: securityapi.PeerAuthentication_MutualTLS_PERMISSIVE}
	ap := &securityv1.AuthorizationPolicy{ObjectMeta: *meta.DeepCopy()}
	for _, got := range []metav1.ObjectMeta{InForcePeerAuthentication(pa).ObjectMeta, InForceAuthorizationPolicy(ap).ObjectMeta} {
		if got.Annotations != nil || !maps.Equal(got.Labels, owner) || got.UID != "" || got.ResourceVersion != "" || got.Name != "reviews" || got.Namespace != "shop" {
			t.Errorf("in force: %+v, want the name and the owner labels %v only", got, owner)
		}
	}
	if m := InForcePeerAuthentication(pa).Spec.GetMtls().GetMode(); m != securityapi.PeerAuthentication_MutualTLS_PERMISSIVE {
		t.Errorf("mode %v, want PERMISSIVE kept", m)
	}
}
