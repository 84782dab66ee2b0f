package desired

import (
	"slices"
	"testing"

	security "istio.io/api/security/v1beta1"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
)

func TestPolicyChangeOf(t *testing.T) {
	ap := func(name string, paths ...string) *istiosecv1.AuthorizationPolicy {
		a := &istiosecv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if len(paths) > 0 {
			a.Spec.Rules = []*security.Rule{{To: []*security.Rule_To{{Operation: &security.Operation{Paths: paths}}}}}
		}
		return a
	}
	pa := func(mode security.PeerAuthentication_MutualTLS_Mode) *istiosecv1.PeerAuthentication {
		p := &istiosecv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "p"}}
		p.Spec.Mtls = &security.PeerAuthentication_MutualTLS{Mode: mode}
		return p
	}
	for _, tc := range []struct {
		name string
		old  PolicyInForce
		set  render.MeshPolicySet
		want PolicyChange
	}{
		{"same", PolicyInForce{AuthorizationPolicies: []*istiosecv1.AuthorizationPolicy{ap("p", "/a")}}, render.MeshPolicySet{AuthorizationPolicies: []*istiosecv1.AuthorizationPolicy{ap("p", "/a")}}, PolicyChange{}},
		{"rules", PolicyInForce{AuthorizationPolicies: []*istiosecv1.AuthorizationPolicy{ap("p", "/a")}}, render.MeshPolicySet{AuthorizationPolicies: []*istiosecv1.AuthorizationPolicy{ap("p", "/b")}}, PolicyChange{Authorization: true}},
		{"new", PolicyInForce{}, render.MeshPolicySet{AuthorizationPolicies: []*istiosecv1.AuthorizationPolicy{ap("p", "/a")}}, PolicyChange{Authorization: true}},
		{"removed", PolicyInForce{AuthorizationPolicies: []*istiosecv1.AuthorizationPolicy{ap("p", "/a")}}, render.MeshPolicySet{}, PolicyChange{Authorization: true}},
		{"to strict", PolicyInForce{PeerAuthentications: []*istiosecv1.PeerAuthentication{pa(security.PeerAuthentication_MutualTLS_PERMISSIVE)}}, render.MeshPolicySet{PeerAuthentications: []*istiosecv1.PeerAuthentication{pa(security.PeerAuthentication_MutualTLS_STRICT)}}, PolicyChange{Strict: true}},
		{"to permissive", PolicyInForce{PeerAuthentications: []*istiosecv1.PeerAuthentication{pa(security.PeerAuthentication_MutualTLS_STRICT)}}, render.MeshPolicySet{PeerAuthentications: []*istiosecv1.PeerAuthentication{pa(security.PeerAuthentication_MutualTLS_PERMISSIVE)}}, PolicyChange{}},
	} {
		if got := PolicyChangeOf(tc.old, &tc.set); got != tc.want {
			t.Errorf("%s: want %+v, got %+v", tc.name, tc.want, got)
		}
	}
}

// PolicyFromStatus, which kubectl canopy render and diff call, applies what the controller
// does for each state of a rollout: the rules in force, with the new ones in dry-run beside
// them while they are analysed.
func TestPolicyFromStatus(t *testing.T) {
	ap := func(name, path string) *istiosecv1.AuthorizationPolicy {
		a := &istiosecv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
		a.Spec.Rules = []*security.Rule{{To: []*security.Rule_To{{Operation: &security.Operation{Paths: []string{path}}}}}}
		return a
	}
	pa := func(mode security.PeerAuthentication_MutualTLS_Mode) *istiosecv1.PeerAuthentication {
		p := &istiosecv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "reviews"}}
		p.Spec.Mtls = &security.PeerAuthentication_MutualTLS{Mode: mode}
		return p
	}
	p := &meshv1.MeshPolicy{Spec: meshv1.MeshPolicySpec{Rollout: &meshv1.PolicyRollout{}, MTLS: &meshv1.MTLS{Mode: meshv1.MTLSStrict}}}
	hash := PolicyRolloutHash(p)
	old := PolicyInForce{
		AuthorizationPolicies: []*istiosecv1.AuthorizationPolicy{ap("reviews", "/old")},
		PeerAuthentications:   []*istiosecv1.PeerAuthentication{pa(security.PeerAuthentication_MutualTLS_PERMISSIVE)},
	}
	names := func(set *render.MeshPolicySet) []string {
		var out []string
		for _, a := range set.AuthorizationPolicies {
			out = append(out, a.Name+":"+a.Spec.Rules[0].To[0].Operation.Paths[0])
		}
		return out
	}
	dryRun := []string{"reviews:/old", "reviews-dry-run:/new"}
	for _, tc := range []struct {
		name    string
		rollout *meshv1.PolicyRollout
		st      *meshv1.PolicyRolloutStatus
		want    []string
		strict  bool
	}{
		{"no rollout", nil, nil, []string{"reviews:/new"}, true},
		{"not analysed yet", &meshv1.PolicyRollout{}, nil, dryRun, false},
		{"in dry-run", &meshv1.PolicyRollout{}, &meshv1.PolicyRolloutStatus{Phase: meshv1.PolicyPhaseDryRun, PendingHash: hash}, dryRun, false},
		{"would deny", &meshv1.PolicyRollout{}, &meshv1.PolicyRolloutStatus{Phase: meshv1.PolicyPhaseHeld, Reason: meshv1.PolicyReasonWouldDeny, PendingHash: hash}, []string{"reviews:/old"}, false},
		{"aborted", &meshv1.PolicyRollout{}, &meshv1.PolicyRolloutStatus{Phase: meshv1.PolicyPhaseHeld, Reason: meshv1.PolicyReasonAborted, PendingHash: hash}, []string{"reviews:/old"}, false},
		{"plaintext clients", &meshv1.PolicyRollout{}, &meshv1.PolicyRolloutStatus{Phase: meshv1.PolicyPhaseHeld, Reason: meshv1.PolicyReasonPlaintextClients, PendingHash: hash}, dryRun, false},
		{"held, then the spec changed", &meshv1.PolicyRollout{}, &meshv1.PolicyRolloutStatus{Phase: meshv1.PolicyPhaseHeld, Reason: meshv1.PolicyReasonWouldDeny, PendingHash: "other"}, dryRun, false},
		{"enforced, then the spec changed", &meshv1.PolicyRollout{}, &meshv1.PolicyRolloutStatus{Phase: meshv1.PolicyPhaseEnforced, EnforcedHash: "other"}, dryRun, false},
	} {
		pol := p.DeepCopy()
		pol.Spec.Rollout, pol.Status.Rollout = tc.rollout, tc.st
		set := &render.MeshPolicySet{
			AuthorizationPolicies: []*istiosecv1.AuthorizationPolicy{ap("reviews", "/new")},
			PeerAuthentications:   []*istiosecv1.PeerAuthentication{pa(security.PeerAuthentication_MutualTLS_STRICT)},
		}
		PolicyFromStatus(pol, set, old)
		if got := names(set); !slices.Equal(got, tc.want) {
			t.Errorf("%s: AuthorizationPolicies %v, want %v", tc.name, got, tc.want)
		}
		if got := set.PeerAuthentications[0].Spec.GetMtls().GetMode() == security.PeerAuthentication_MutualTLS_STRICT; got != tc.strict {
			t.Errorf("%s: STRICT applied %v, want %v", tc.name, got, tc.strict)
		}
		for _, a := range set.AuthorizationPolicies {
			if dry := render.IsDryRun(a); dry != (a.Name == "reviews-dry-run") {
				t.Errorf("%s: %s dry-run %v", tc.name, a.Name, dry)
			}
		}
	}
	// Nothing waits when the rules in force are the spec's.
	set := &render.MeshPolicySet{AuthorizationPolicies: []*istiosecv1.AuthorizationPolicy{ap("reviews", "/old")}}
	PolicyFromStatus(p, set, PolicyInForce{AuthorizationPolicies: []*istiosecv1.AuthorizationPolicy{ap("reviews", "/old")}})
	if got := names(set); !slices.Equal(got, []string{"reviews:/old"}) {
		t.Errorf("nothing waits: AuthorizationPolicies %v", got)
	}
}
