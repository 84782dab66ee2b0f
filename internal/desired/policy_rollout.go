package desired

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	security "istio.io/api/security/v1beta1"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
)

// PolicyInForce are a MeshPolicy's AuthorizationPolicies (dry-run copies aside) and
// PeerAuthentications in the cluster: the rules in force, kept while a change waits
// (spec.rollout).
type PolicyInForce struct {
	AuthorizationPolicies []*istiosecv1.AuthorizationPolicy
	PeerAuthentications   []*istiosecv1.PeerAuthentication
}

// PolicyInForceOf keeps, of the objects read with the policy's owner labels, those the
// policy controls and that are not dry-run copies, as they would be applied again, by name.
func PolicyInForceOf(p *meshv1.MeshPolicy, aps []*istiosecv1.AuthorizationPolicy, pas []*istiosecv1.PeerAuthentication) PolicyInForce {
	var f PolicyInForce
	for _, ap := range aps {
		if metav1.IsControlledBy(ap, p) && !render.IsDryRun(ap) {
			f.AuthorizationPolicies = append(f.AuthorizationPolicies, render.InForceAuthorizationPolicy(ap))
		}
	}
	for _, pa := range pas {
		if metav1.IsControlledBy(pa, p) {
			f.PeerAuthentications = append(f.PeerAuthentications, render.InForcePeerAuthentication(pa))
		}
	}
	slices.SortFunc(f.AuthorizationPolicies, func(a, b *istiosecv1.AuthorizationPolicy) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(f.PeerAuthentications, func(a, b *istiosecv1.PeerAuthentication) int { return strings.Compare(a.Name, b.Name) })
	return f
}

// PolicyChange is what the rendered policy changes in the rules in force that a rollout
// guards.
type PolicyChange struct {
	// Authorization: the AuthorizationPolicies differ from those in force.
	Authorization bool
	// Strict: a PeerAuthentication moves to STRICT from another mode (or from none).
	Strict bool
}

// Any says whether the change waits under spec.rollout.
func (c PolicyChange) Any() bool { return c.Authorization || c.Strict }

// PolicyChangeOf compares what was rendered with what is in force.
func PolicyChangeOf(old PolicyInForce, set *render.MeshPolicySet) PolicyChange {
	var c PolicyChange
	oldAP := map[string]*istiosecv1.AuthorizationPolicy{}
	for _, ap := range old.AuthorizationPolicies {
		oldAP[ap.Name] = ap
	}
	if len(old.AuthorizationPolicies) != len(set.AuthorizationPolicies) {
		c.Authorization = true
	}
	for _, ap := range set.AuthorizationPolicies {
		if o := oldAP[ap.Name]; o == nil || !proto.Equal(&o.Spec, &ap.Spec) {
			c.Authorization = true
		}
	}
	oldPA := map[string]*istiosecv1.PeerAuthentication{}
	for _, pa := range old.PeerAuthentications {
		oldPA[pa.Name] = pa
	}
	for _, pa := range set.PeerAuthentications {
		if pa.Spec.GetMtls().GetMode() != security.PeerAuthentication_MutualTLS_STRICT {
			continue
		}
		if o := oldPA[pa.Name]; o == nil || o.Spec.GetMtls().GetMode() != security.PeerAuthentication_MutualTLS_STRICT {
			c.Strict = true
		}
	}
	return c
}

// PolicyRolloutHash is the digest of what a rollout guards: the authorization and mTLS
// (status.rollout.pendingHash, enforcedHash).
func PolicyRolloutHash(p *meshv1.MeshPolicy) string {
	b, _ := json.Marshal([]any{p.Spec.Authorization, p.Spec.MTLS})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// PolicyWhileWaiting puts into set what a reconcile applies while change waits with the
// rollout status st (not Enforced): the rules in force, and beside them the new
// AuthorizationPolicies in Istio's dry-run mode, unless the change is held for good
// (WouldDeny, Aborted: the dry-run copies go).
func PolicyWhileWaiting(set *render.MeshPolicySet, old PolicyInForce, change PolicyChange, st *meshv1.PolicyRolloutStatus) {
	if change.Authorization {
		aps := slices.Clone(old.AuthorizationPolicies)
		if st.Phase == meshv1.PolicyPhaseDryRun || (st.Phase == meshv1.PolicyPhaseHeld && st.Reason == meshv1.PolicyReasonPlaintextClients) {
			aps = append(aps, render.DryRunAuthorizationPolicies(set.AuthorizationPolicies)...)
		}
		set.AuthorizationPolicies = aps
	}
	if change.Strict {
		set.PeerAuthentications = old.PeerAuthentications
	}
}

// PolicyFromStatus sets in set what the controller applies for the MeshPolicy's written
// status and the rules in force (kubectl canopy render and diff): the rendered set when the
// policy has no rollout or nothing waits, else PolicyWhileWaiting with the status of the
// change, or a fresh window's when the status is of another change (the controller starts
// one at its next reconcile).
func PolicyFromStatus(p *meshv1.MeshPolicy, set *render.MeshPolicySet, old PolicyInForce) {
	if p.Spec.Rollout == nil {
		return
	}
	change := PolicyChangeOf(old, set)
	if !change.Any() {
		return
	}
	st := p.Status.Rollout
	if st == nil || st.Phase == meshv1.PolicyPhaseEnforced || st.PendingHash != PolicyRolloutHash(p) {
		st = &meshv1.PolicyRolloutStatus{Phase: meshv1.PolicyPhaseDryRun}
	}
	PolicyWhileWaiting(set, old, change, st)
}
