package controllers

import (
	"errors"
	"testing"
	"time"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/desired"
)

var rolloutT0 = time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)

func stepAt(d time.Duration, change desired.PolicyChange, hash, request string) rolloutStep {
	return rolloutStep{
		now: rolloutT0.Add(d), settings: rolloutSettings{window: 2 * time.Minute, interval: 10 * time.Second},
		change: change, hash: hash, request: request,
	}
}

// A harmless change runs its window in dry-run and is enforced after it, not before.
func TestRolloutHarmlessChangeEnforcedAfterWindow(t *testing.T) {
	st := &meshv1.PolicyRolloutStatus{Phase: meshv1.PolicyPhaseEnforced, EnforcedHash: "old"}
	authz := desired.PolicyChange{Authorization: true}

	v := advance(st, stepAt(0, authz, "new", ""))
	if st.Phase != meshv1.PolicyPhaseDryRun || st.PendingHash != "new" || !st.DryRunSince.Time.Equal(rolloutT0) || v.analyze {
		t.Fatalf("a new change: want DryRun since t0 and no analysis before an interval, got %+v, %+v", st, v)
	}
	if v = advance(st, stepAt(10*time.Second, authz, "new", "")); !v.analyze {
		t.Fatalf("an interval in: want an analysis")
	}
	if v = judge(st, stepAt(10*time.Second, authz, "new", ""), rolloutAnalysis{}); v.reason != reasonPolicyDryRun || st.Phase != meshv1.PolicyPhaseDryRun {
		t.Fatalf("within the window: want DryRun, got %s %+v", v.reason, st)
	}
	if v = advance(st, stepAt(15*time.Second, authz, "new", "")); v.analyze {
		t.Fatalf("before the interval: want no analysis")
	}
	if v = advance(st, stepAt(2*time.Minute, authz, "new", "")); !v.analyze {
		t.Fatalf("at the window's end: want an analysis")
	}
	v = judge(st, stepAt(2*time.Minute, authz, "new", ""), rolloutAnalysis{})
	if st.Phase != meshv1.PolicyPhaseEnforced || st.EnforcedHash != "new" || st.PendingHash != "" || v.reason != reasonPolicyEnforced || v.eventNote == "" {
		t.Fatalf("after the window: want Enforced with an event, got %+v %+v", st, v)
	}
	// Once the objects in force are the spec's, nothing changes any more.
	before := *st
	advance(st, stepAt(3*time.Minute, desired.PolicyChange{}, "new", ""))
	if st.Message != before.Message || st.Phase != meshv1.PolicyPhaseEnforced {
		t.Fatalf("no change: want the status kept, got %+v", st)
	}
}

// A change that would deny calls is held, names them, and stays held without analysis.
func TestRolloutWouldDenyHeld(t *testing.T) {
	st := &meshv1.PolicyRolloutStatus{}
	authz := desired.PolicyChange{Authorization: true}
	advance(st, stepAt(0, authz, "new", ""))
	calls := deniedCalls([]providers.Sample{
		{Labels: map[string]string{"source_principal": "spiffe://cluster.local/ns/shop/sa/web", "request_method": "GET", "request_path": "/cart"}, Value: 41.7},
		{Labels: map[string]string{"source_principal": "spiffe://cluster.local/ns/shop/sa/cron", "request_method": "POST", "request_path": "/cart"}, Value: 0.004},
	})
	v := judge(st, stepAt(30*time.Second, authz, "new", ""), rolloutAnalysis{denied: calls})
	if st.Phase != meshv1.PolicyPhaseHeld || v.reason != reasonWouldDeny {
		t.Fatalf("want Held WouldDeny, got %+v %+v", st, v)
	}
	want := meshv1.DeniedCall{SourcePrincipal: "cluster.local/ns/shop/sa/web", Method: "GET", Path: "/cart", Count: 42}
	if len(st.DeniedCalls) != 1 || st.DeniedCalls[0] != want {
		t.Fatalf("denied calls: want [%+v], got %+v", want, st.DeniedCalls)
	}
	// What holds it is status.rollout.reason, not the message's wording.
	st.Message = "reworded: clients called without mTLS"
	if v = advance(st, stepAt(5*time.Minute, authz, "new", "")); v.analyze || st.Phase != meshv1.PolicyPhaseHeld || v.reason != reasonWouldDeny {
		t.Fatalf("held: want it to stay held without analysis, got %+v %+v", st, v)
	}
	// A new spec starts over.
	if advance(st, stepAt(6*time.Minute, authz, "newer", "")); st.Phase != meshv1.PolicyPhaseDryRun || st.DeniedCalls != nil {
		t.Fatalf("a new change: want a fresh DryRun, got %+v", st)
	}
}

// maxDenied tolerates that many denials.
func TestRolloutMaxDenied(t *testing.T) {
	st := &meshv1.PolicyRolloutStatus{}
	in := stepAt(0, desired.PolicyChange{Authorization: true}, "new", "")
	in.settings.maxDenied = 5
	advance(st, in)
	judge(st, in, rolloutAnalysis{denied: []meshv1.DeniedCall{{SourcePrincipal: "a", Count: 5}}})
	if st.Phase != meshv1.PolicyPhaseDryRun {
		t.Fatalf("5 denials with maxDenied 5: want DryRun, got %+v", st)
	}
}

// Plaintext clients hold a move to STRICT until they stop; the window then starts again.
func TestRolloutStrictWaitsForPlaintextClients(t *testing.T) {
	st := &meshv1.PolicyRolloutStatus{}
	strict := desired.PolicyChange{Strict: true}
	advance(st, stepAt(0, strict, "strict", ""))
	v := judge(st, stepAt(0, strict, "strict", ""), rolloutAnalysis{plaintext: []meshv1.PlaintextClient{{Workload: "legacy", Namespace: "shop", Count: 10}}})
	if st.Phase != meshv1.PolicyPhaseHeld || v.reason != reasonPlaintextClients {
		t.Fatalf("want Held PlaintextClients, got %+v %+v", st, v)
	}
	if v = advance(st, stepAt(5*time.Second, strict, "strict", "")); v.analyze || v.reason != reasonPlaintextClients {
		t.Fatalf("before the interval: want no analysis, reason kept, got %+v", v)
	}
	st.Message = "aborted? no: reworded"
	if v = advance(st, stepAt(3*time.Minute, strict, "strict", "")); !v.analyze {
		t.Fatalf("held for plaintext clients: want them looked for again")
	}
	judge(st, stepAt(3*time.Minute, strict, "strict", ""), rolloutAnalysis{})
	if st.Phase != meshv1.PolicyPhaseDryRun || st.Reason != "" || !st.DryRunSince.Time.Equal(rolloutT0.Add(3*time.Minute)) {
		t.Fatalf("clients stopped: want the window started again, got %+v", st)
	}
}

// promote enforces at once, abort holds; each value acts once, and a request left on the
// policy does not act on a later change.
func TestRolloutRequests(t *testing.T) {
	authz := desired.PolicyChange{Authorization: true}
	st := &meshv1.PolicyRolloutStatus{}
	advance(st, stepAt(0, authz, "a", ""))
	if advance(st, stepAt(time.Second, authz, "a", "abort")); st.Phase != meshv1.PolicyPhaseHeld || st.Reason != reasonPolicyAborted {
		t.Fatalf("abort: want Held Aborted, got %+v", st)
	}
	if advance(st, stepAt(2*time.Second, authz, "a", "promote:1")); st.Phase != meshv1.PolicyPhaseEnforced || st.EnforcedHash != "a" {
		t.Fatalf("promote: want Enforced, got %+v", st)
	}
	// The next change: the old promote:1 does not promote it.
	if advance(st, stepAt(time.Minute, authz, "b", "promote:1")); st.Phase != meshv1.PolicyPhaseDryRun {
		t.Fatalf("a handled request: want it ignored, got %+v", st)
	}
}

// A failed analysis never enforces.
func TestRolloutAnalysisFailureWaits(t *testing.T) {
	st := &meshv1.PolicyRolloutStatus{}
	authz := desired.PolicyChange{Authorization: true}
	advance(st, stepAt(0, authz, "a", ""))
	v := judge(st, stepAt(10*time.Minute, authz, "a", ""), rolloutAnalysis{err: errors.New("unreachable")})
	if st.Phase != meshv1.PolicyPhaseDryRun || v.reason != reasonPolicyAnalysisFail {
		t.Fatalf("want DryRun AnalysisFailed, got %+v %+v", st, v)
	}
}

func TestParseRolloutSettings(t *testing.T) {
	s, err := parseRolloutSettings(&meshv1.PolicyRollout{})
	if err != nil || s.window != defaultPolicyWindow || s.interval != defaultPolicyInterval || s.maxDenied != 0 {
		t.Fatalf("defaults: got %+v, %v", s, err)
	}
	if _, err := parseRolloutSettings(&meshv1.PolicyRollout{Window: "0s"}); err == nil || err.Error() != `spec.rollout.window: "0s" is not a positive duration` {
		t.Fatalf("a zero window: got %v", err)
	}
}
