package controllers

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/render"
)

// fakePrometheus answers the rollout's queries with the samples set, and keeps the queries.
type fakePrometheus struct {
	mu      sync.Mutex
	samples []providers.Sample
	queries []string
}

func (f *fakePrometheus) QueryVector(_ context.Context, _, _, _ string, _ *meshv1.MetricProvider, q string) ([]providers.Sample, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, q)
	return slices.Clone(f.samples), nil
}

func (f *fakePrometheus) set(s ...providers.Sample) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.samples = s
}

func allowFrom(sa string) *meshv1.Authorization {
	return &meshv1.Authorization{Rules: []meshv1.AuthorizationRule{{From: []meshv1.AuthorizationSource{{ServiceAccounts: []string{sa}}}}}}
}

// The rules in force come from the cluster: a new reconciler (a restarted canopy) keeps
// them and the window; a change that would deny is held, its dry-run copy removed; abort
// drops a dry-run; a harmless change is enforced once its window is over.
func TestMeshPolicyRolloutKeepsTheRulesInForce(t *testing.T) {
	h := newPolicyHarness(t)
	prom := &fakePrometheus{}
	h.pr.Prometheus = prom
	p := simplePolicy("reviews", "reviews")
	p.Spec.Authorization = allowFrom(h.ns + "/web")
	h.create(service("reviews", 9080), p)
	h.settlePolicy("reviews")

	rulesOf := func(name string) []string {
		ap := &istiosecv1.AuthorizationPolicy{}
		if !h.get(h.ns, name, ap) {
			return nil
		}
		return ap.Spec.GetRules()[0].GetFrom()[0].GetSource().GetPrincipals()
	}
	web, api := []string{render.Principal(h.ns, "web")}, []string{render.Principal(h.ns, "api")}
	if got := rulesOf("reviews"); !slices.Equal(got, web) {
		t.Fatalf("in force: %v", got)
	}

	// Turning rollout on with a change: the change runs in dry-run beside the rules in force.
	h.updatePolicy("reviews", func(s *meshv1.MeshPolicySpec) {
		s.Authorization = allowFrom(h.ns + "/api")
		s.Rollout = &meshv1.PolicyRollout{Window: "5m", Interval: "30s"}
	})
	got := h.settlePolicy("reviews")
	expectCondition(t, got, meshv1.ConditionPolicyRollout, metav1.ConditionFalse, reasonPolicyDryRun, "runs in dry-run until")
	since := got.Status.Rollout.DryRunSince
	dry := &istiosecv1.AuthorizationPolicy{}
	h.mustGet(h.ns, "reviews"+render.DryRunSuffix, dry)
	if !render.IsDryRun(dry) || !slices.Equal(rulesOf("reviews"+render.DryRunSuffix), api) || !slices.Equal(rulesOf("reviews"), web) {
		t.Fatalf("dry-run %v (annotations %v), in force %v", rulesOf("reviews"+render.DryRunSuffix), dry.Annotations, rulesOf("reviews"))
	}

	// A restarted canopy: nothing in memory, the same state.
	h.pr = &MeshPolicyReconciler{Client: h.pr.Client, Applier: h.pr.Applier, Recorder: h.pr.Recorder, Clock: h.pr.Clock, Tenancy: h.pr.Tenancy, Prometheus: prom}
	h.clock.Step(10 * time.Second)
	got = h.settlePolicy("reviews")
	if st := got.Status.Rollout; st.Phase != meshv1.PolicyPhaseDryRun || !st.DryRunSince.Equal(since) || !slices.Equal(rulesOf("reviews"), web) {
		t.Fatalf("after a restart: %+v, in force %v", st, rulesOf("reviews"))
	}

	// Prometheus says the new rules would deny web's calls: held, the old rules stay.
	prom.set(providers.Sample{Labels: map[string]string{"source_principal": "spiffe://" + web[0], "request_method": "GET", "request_path": "/"}, Value: 12})
	h.clock.Step(30 * time.Second)
	got = h.settlePolicy("reviews")
	expectCondition(t, got, meshv1.ConditionPolicyRollout, metav1.ConditionFalse, reasonWouldDeny, "GET / from "+web[0]+" (12)")
	h.expectPolicyEvent("reviews", reasonWouldDeny, web[0])
	h.mustNotExist(h.ns, "reviews"+render.DryRunSuffix, &istiosecv1.AuthorizationPolicy{})
	h.clock.Step(10 * time.Minute)
	h.settlePolicy("reviews")
	if !slices.Equal(rulesOf("reviews"), web) {
		t.Fatalf("held, yet in force: %v", rulesOf("reviews"))
	}

	// Another change starts over; abort drops its dry-run.
	h.updatePolicy("reviews", func(s *meshv1.MeshPolicySpec) { s.Authorization = allowFrom(h.ns + "/batch") })
	got = h.settlePolicy("reviews")
	expectCondition(t, got, meshv1.ConditionPolicyRollout, metav1.ConditionFalse, reasonPolicyDryRun)
	cur := h.policy("reviews")
	patch := client.MergeFrom(cur.DeepCopy())
	metav1.SetMetaDataAnnotation(&cur.ObjectMeta, meshv1.AnnotationRequest, "abort:1")
	if err := h.c.Patch(h.t.Context(), cur, patch); err != nil {
		t.Fatal(err)
	}
	got = h.settlePolicy("reviews")
	expectCondition(t, got, meshv1.ConditionPolicyRollout, metav1.ConditionFalse, reasonPolicyAborted)
	h.mustNotExist(h.ns, "reviews"+render.DryRunSuffix, &istiosecv1.AuthorizationPolicy{})

	// A harmless change: enforced once the window is over, the dry-run copy pruned.
	prom.set()
	h.updatePolicy("reviews", func(s *meshv1.MeshPolicySpec) { s.Authorization = allowFrom(h.ns + "/api") })
	h.settlePolicy("reviews")
	h.clock.Step(4 * time.Minute)
	got = h.settlePolicy("reviews")
	expectCondition(t, got, meshv1.ConditionPolicyRollout, metav1.ConditionFalse, reasonPolicyDryRun)
	h.clock.Step(time.Minute)
	got = h.settlePolicy("reviews")
	expectCondition(t, got, meshv1.ConditionPolicyRollout, metav1.ConditionTrue, reasonPolicyEnforced, "enforced after a window of 5m0s")
	h.mustNotExist(h.ns, "reviews"+render.DryRunSuffix, &istiosecv1.AuthorizationPolicy{})
	if !slices.Equal(rulesOf("reviews"), api) {
		t.Fatalf("enforced: %v", rulesOf("reviews"))
	}
}
