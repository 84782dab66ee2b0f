package controllers

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/desired"
	"canopy.dev/canopy/internal/progress"
	"canopy.dev/canopy/internal/render"
)

// PolicyPrometheus answers the queries of a MeshPolicy's rollout (analysis.Runner does):
// the provider is resolved as a Canary's analysis.provider.
type PolicyPrometheus interface {
	QueryVector(ctx context.Context, namespace, owner, path string, p *meshv1.MetricProvider, query string) ([]providers.Sample, error)
}

// The defaults of spec.rollout.
const (
	defaultPolicyWindow   = 5 * time.Minute
	defaultPolicyInterval = 30 * time.Second
)

// The reasons of the PolicyRollout condition and of its events.
const (
	reasonPolicyDryRun       = "DryRun"
	reasonPolicyEnforced     = "Enforced"
	reasonWouldDeny          = meshv1.PolicyReasonWouldDeny
	reasonPlaintextClients   = meshv1.PolicyReasonPlaintextClients
	reasonPolicyAborted      = meshv1.PolicyReasonAborted
	reasonPolicyAnalysisFail = "AnalysisFailed"
)

// rolloutSettings are spec.rollout's, parsed, with their defaults.
type rolloutSettings struct {
	window, interval time.Duration
	maxDenied        int64
}

func parseRolloutSettings(ro *meshv1.PolicyRollout) (rolloutSettings, error) {
	st := rolloutSettings{window: defaultPolicyWindow, interval: defaultPolicyInterval, maxDenied: int64(ro.MaxDenied)}
	for _, f := range []struct {
		path string
		v    meshv1.Duration
		into *time.Duration
	}{{"spec.rollout.window", ro.Window, &st.window}, {"spec.rollout.interval", ro.Interval, &st.interval}} {
		if f.v == "" {
			continue
		}
		d, err := time.ParseDuration(string(f.v))
		if err != nil || d <= 0 {
			return st, fmt.Errorf("%s: %q is not a positive duration", f.path, f.v)
		}
		*f.into = d
	}
	if ro.MaxDenied < 0 {
		return st, fmt.Errorf("spec.rollout.maxDenied: %d is negative", ro.MaxDenied)
	}
	return st, nil
}

// readInForce reads the rules in force: the policy's AuthorizationPolicies and
// PeerAuthentications by its owner labels (desired.PolicyInForceOf keeps those it controls).
func (r *MeshPolicyReconciler) readInForce(ctx context.Context, p *meshv1.MeshPolicy) (desired.PolicyInForce, error) {
	labels := client.MatchingLabels(render.OwnerLabels(render.KindMeshPolicy, p.Namespace, p.Name))
	aps := &istiosecv1.AuthorizationPolicyList{}
	if err := r.List(ctx, aps, client.InNamespace(p.Namespace), labels); err != nil {
		return desired.PolicyInForce{}, fmt.Errorf("listing AuthorizationPolicies: %w", err)
	}
	pas := &istiosecv1.PeerAuthenticationList{}
	if err := r.List(ctx, pas, client.InNamespace(p.Namespace), labels); err != nil {
		return desired.PolicyInForce{}, fmt.Errorf("listing PeerAuthentications: %w", err)
	}
	return desired.PolicyInForceOf(p, aps.Items, pas.Items), nil
}

// rolloutStep is one reconcile's view of the rollout, decided by advance and judge.
type rolloutStep struct {
	now      time.Time
	settings rolloutSettings
	change   desired.PolicyChange
	hash     string
	// request is the mesh.canopy.dev/request annotation's value.
	request string
}

// rolloutVerdict is what the step decided beside the status: the condition, whether to
// ask Prometheus now, and the event to record (reason "" for none).
type rolloutVerdict struct {
	analyze              bool
	reason, message      string
	eventType, eventNote string
}

// advance moves the rollout's status for this reconcile, before any analysis: a change
// not seen before starts its window, a manual request is handled once, no change is
// enforced. It says whether Prometheus is to be asked now.
func advance(st *meshv1.PolicyRolloutStatus, in rolloutStep) rolloutVerdict {
	var v rolloutVerdict
	fresh := in.request != "" && in.request != st.LastHandledRequest
	if fresh {
		// Handled once, whatever the phase: a promote left on the policy must not
		// promote a later change.
		st.LastHandledRequest = in.request
	}
	if !in.change.Any() {
		if st.Phase != meshv1.PolicyPhaseEnforced || st.EnforcedHash != in.hash {
			enforce(st, in, "the rules in force are the spec's")
			st.DeniedCalls, st.PlaintextClients = nil, nil
		}
		return rolloutVerdict{reason: reasonPolicyEnforced, message: st.Message}
	}
	if st.PendingHash != in.hash || st.Phase == meshv1.PolicyPhaseEnforced || st.Phase == "" {
		*st = meshv1.PolicyRolloutStatus{
			Phase: meshv1.PolicyPhaseDryRun, EnforcedHash: st.EnforcedHash, PendingHash: in.hash,
			DryRunSince: &metav1.Time{Time: in.now}, LastHandledRequest: st.LastHandledRequest,
		}
		v.eventType, v.eventNote = corev1.EventTypeNormal, "A change of "+changeWhat(in.change)+" starts its analysis window of "+in.settings.window.String()
	}
	if fresh {
		switch action, _, _ := strings.Cut(in.request, ":"); action {
		case progress.ActionPromote:
			enforce(st, in, "promoted by request "+in.request+": the change is enforced without the rest of its window")
			return rolloutVerdict{reason: reasonPolicyEnforced, message: st.Message, eventType: corev1.EventTypeNormal, eventNote: st.Message}
		case progress.ActionAbort:
			hold(st, reasonPolicyAborted, "aborted by request "+in.request+": the dry-run is dropped and the rules in force stay until the spec changes or a promote is requested")
			return rolloutVerdict{reason: reasonPolicyAborted, message: st.Message, eventType: corev1.EventTypeWarning, eventNote: st.Message}
		}
	}
	v.reason, v.message = reasonPolicyDryRun, st.Message
	switch {
	case st.Phase == meshv1.PolicyPhaseHeld:
		v.reason = st.Reason
		// Would deny, or aborted: only a new spec or a promote moves it. Plaintext clients
		// are looked for again.
		v.analyze = v.reason == reasonPlaintextClients && !in.now.Before(st.LastAnalysis.Add(in.settings.interval))
	case in.now.Before(st.DryRunSince.Add(min(in.settings.interval, in.settings.window))):
		// The denials are counted since the window started: an interval in, so that
		// Prometheus has scrapes of it, and a denial of a change before it cannot count.
	case st.LastAnalysis == nil || !in.now.Before(st.LastAnalysis.Add(in.settings.interval)) || !in.now.Before(windowEnd(st, in.settings)):
		v.analyze = true
	}
	if st.Phase == meshv1.PolicyPhaseDryRun && st.Message == "" {
		st.Message = fmt.Sprintf("the change of %s runs in dry-run until %s", changeWhat(in.change), windowEnd(st, in.settings).UTC().Format(time.RFC3339))
		v.message = st.Message
	}
	return v
}

// rolloutAnalysis is what Prometheus said of the window.
type rolloutAnalysis struct {
	denied    []meshv1.DeniedCall
	plaintext []meshv1.PlaintextClient
	err       error
}

// judge decides on the analysis: held when the change would have denied more than
// maxDenied requests (until the spec changes) or clients still call without mTLS (until
// they stop), enforced once the window is over, else in dry-run still.
func judge(st *meshv1.PolicyRolloutStatus, in rolloutStep, a rolloutAnalysis) rolloutVerdict {
	st.LastAnalysis = &metav1.Time{Time: in.now}
	if a.err != nil {
		st.Message = "the analysis failed, the change waits: " + a.err.Error()
		return rolloutVerdict{reason: reasonPolicyAnalysisFail, message: st.Message}
	}
	st.DeniedCalls, st.PlaintextClients = a.denied, a.plaintext
	var denied int64
	for _, d := range a.denied {
		denied += d.Count
	}
	if denied > in.settings.maxDenied {
		hold(st, reasonWouldDeny, fmt.Sprintf("the new authorization would have denied %d requests (maxDenied %d): %s; the rules in force stay until the spec changes or a promote is requested",
			denied, in.settings.maxDenied, describeDenied(a.denied)))
		return rolloutVerdict{reason: reasonWouldDeny, message: st.Message, eventType: corev1.EventTypeWarning, eventNote: st.Message}
	}
	if len(a.plaintext) > 0 {
		wasHeld := st.Phase == meshv1.PolicyPhaseHeld
		hold(st, reasonPlaintextClients, fmt.Sprintf("clients called without mTLS in the last %s: %s; STRICT would refuse them, the mode in force stays until they send mTLS", in.settings.window, describePlaintext(a.plaintext)))
		v := rolloutVerdict{reason: reasonPlaintextClients, message: st.Message}
		if !wasHeld {
			v.eventType, v.eventNote = corev1.EventTypeWarning, st.Message
		}
		return v
	}
	if st.Phase == meshv1.PolicyPhaseHeld {
		// The plaintext clients have stopped: the window starts again.
		st.Phase, st.Reason, st.DryRunSince = meshv1.PolicyPhaseDryRun, "", &metav1.Time{Time: in.now}
	}
	if end := windowEnd(st, in.settings); in.now.Before(end) {
		st.Message = fmt.Sprintf("the change of %s runs in dry-run until %s; %d requests it would deny so far", changeWhat(in.change), end.UTC().Format(time.RFC3339), denied)
		return rolloutVerdict{reason: reasonPolicyDryRun, message: st.Message}
	}
	enforce(st, in, fmt.Sprintf("enforced after a window of %s in which it would have denied %d requests", in.settings.window, denied))
	return rolloutVerdict{reason: reasonPolicyEnforced, message: st.Message, eventType: corev1.EventTypeNormal, eventNote: "The change of " + changeWhat(in.change) + " is " + st.Message}
}

func enforce(st *meshv1.PolicyRolloutStatus, in rolloutStep, message string) {
	*st = meshv1.PolicyRolloutStatus{
		Phase: meshv1.PolicyPhaseEnforced, EnforcedHash: in.hash, LastHandledRequest: st.LastHandledRequest,
		Message: message, DeniedCalls: st.DeniedCalls, PlaintextClients: st.PlaintextClients,
	}
}

func windowEnd(st *meshv1.PolicyRolloutStatus, s rolloutSettings) time.Time {
	if st.DryRunSince == nil {
		return time.Time{}
	}
	return st.DryRunSince.Add(s.window)
}

// hold holds the change for reason (status.rollout.reason: what moves it on is read from
// there, never from the message).
func hold(st *meshv1.PolicyRolloutStatus, reason, message string) {
	st.Phase, st.Reason, st.Message = meshv1.PolicyPhaseHeld, reason, message
}

func changeWhat(c desired.PolicyChange) string {
	switch {
	case c.Authorization && c.Strict:
		return "authorization and mTLS STRICT"
	case c.Strict:
		return "mTLS to STRICT"
	default:
		return "authorization"
	}
}

func describeDenied(calls []meshv1.DeniedCall) string {
	var parts []string
	for _, d := range calls {
		parts = append(parts, fmt.Sprintf("%s %s from %s (%d)", orDash(d.Method), orDash(d.Path), d.SourcePrincipal, d.Count))
	}
	return strings.Join(parts, ", ")
}

func describePlaintext(cs []meshv1.PlaintextClient) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s/%s (%d)", c.Namespace, c.Workload, c.Count))
	}
	return strings.Join(parts, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// The queries of a rollout, on Istio's standard request metric as the destination's
// sidecar reports it. dry_run_result, request_method and request_path are not among
// Istio's default labels: docs/meshpolicy.md shows the Telemetry that adds them.
const (
	deniedQuery    = `sum by (source_principal, request_method, request_path) (increase(istio_requests_total{reporter="destination", destination_service_namespace=%q, destination_service_name=%q, dry_run_result="denied"}[%ds]))`
	plaintextQuery = `sum by (source_workload, source_workload_namespace) (increase(istio_requests_total{reporter="destination", destination_service_namespace=%q, destination_service_name=%q, connection_security_policy!="mutual_tls"}[%ds]))`
)

// analyze asks Prometheus what the change would have denied since its window started,
// and which clients called without mTLS over the last window.
func (r *MeshPolicyReconciler) analyze(ctx context.Context, p *meshv1.MeshPolicy, st *meshv1.PolicyRolloutStatus, in rolloutStep) rolloutAnalysis {
	if r.Prometheus == nil {
		return rolloutAnalysis{err: fmt.Errorf("canopy has no Prometheus to ask")}
	}
	owner := "MeshPolicy " + p.Namespace + "/" + p.Name
	svc := p.Spec.TargetRef.Name
	var a rolloutAnalysis
	if in.change.Authorization {
		since := in.now.Sub(st.DryRunSince.Time)
		q := fmt.Sprintf(deniedQuery, p.Namespace, svc, seconds(max(since, time.Second)))
		samples, err := r.Prometheus.QueryVector(ctx, p.Namespace, owner, "spec.rollout.provider", p.Spec.Rollout.Provider, q)
		if err != nil {
			return rolloutAnalysis{err: err}
		}
		a.denied = deniedCalls(samples)
	}
	if in.change.Strict {
		q := fmt.Sprintf(plaintextQuery, p.Namespace, svc, seconds(in.settings.window))
		samples, err := r.Prometheus.QueryVector(ctx, p.Namespace, owner, "spec.rollout.provider", p.Spec.Rollout.Provider, q)
		if err != nil {
			return rolloutAnalysis{err: err}
		}
		a.plaintext = plaintextClients(samples)
	}
	return a
}

func seconds(d time.Duration) int64 { return int64(math.Ceil(d.Seconds())) }

// count reads an increase(): extrapolated, so a single request may read 0.9 or 1.2.
func count(v float64) int64 {
	if math.IsNaN(v) || v <= 0.01 {
		return 0
	}
	return max(int64(math.Round(v)), 1)
}

// deniedCalls are the samples of deniedQuery, the most frequent first, at most
// MaxDeniedCalls.
func deniedCalls(samples []providers.Sample) []meshv1.DeniedCall {
	var out []meshv1.DeniedCall
	for _, s := range samples {
		if n := count(s.Value); n > 0 {
			out = append(out, meshv1.DeniedCall{
				SourcePrincipal: strings.TrimPrefix(orUnknown(s.Labels["source_principal"]), "spiffe://"),
				Method:          s.Labels["request_method"], Path: s.Labels["request_path"], Count: n,
			})
		}
	}
	slices.SortFunc(out, func(a, b meshv1.DeniedCall) int {
		if a.Count != b.Count {
			return int(b.Count - a.Count)
		}
		return strings.Compare(a.SourcePrincipal+a.Method+a.Path, b.SourcePrincipal+b.Method+b.Path)
	})
	if len(out) > meshv1.MaxDeniedCalls {
		out = out[:meshv1.MaxDeniedCalls]
	}
	return out
}

func plaintextClients(samples []providers.Sample) []meshv1.PlaintextClient {
	var out []meshv1.PlaintextClient
	for _, s := range samples {
		if n := count(s.Value); n > 0 {
			out = append(out, meshv1.PlaintextClient{
				Workload: orUnknown(s.Labels["source_workload"]), Namespace: orUnknown(s.Labels["source_workload_namespace"]), Count: n,
			})
		}
	}
	slices.SortFunc(out, func(a, b meshv1.PlaintextClient) int {
		if a.Count != b.Count {
			return int(b.Count - a.Count)
		}
		return strings.Compare(a.Namespace+"/"+a.Workload, b.Namespace+"/"+b.Workload)
	})
	if len(out) > meshv1.MaxDeniedCalls {
		out = out[:meshv1.MaxDeniedCalls]
	}
	return out
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// rollout is the reconcile step of spec.rollout: while a change of the authorization (or
// a move to STRICT) waits, the rules in force are kept, read from the cluster, and the
// new AuthorizationPolicies run beside them in dry-run; once enforced, the rendered set
// goes out as it is and prune removes the dry-run copies.
func (r *MeshPolicyReconciler) rollout(ctx context.Context, s *policyScope) (bool, error) {
	p := s.policy
	if p.Spec.Rollout == nil {
		return false, nil
	}
	settings, err := parseRolloutSettings(p.Spec.Rollout)
	if err != nil {
		s.block(meshv1.ReasonInvalidSpec, err.Error(), true)
		return true, err
	}
	old, err := r.readInForce(ctx, p)
	if err != nil {
		return true, err
	}
	in := rolloutStep{now: s.now, settings: settings, change: desired.PolicyChangeOf(old, &s.set), hash: desired.PolicyRolloutHash(p), request: p.Annotations[meshv1.AnnotationRequest]}
	st := &meshv1.PolicyRolloutStatus{}
	if p.Status.Rollout != nil {
		st = p.Status.Rollout.DeepCopy()
	}
	v := advance(st, in)
	if v.analyze {
		judged := judge(st, in, r.analyze(ctx, p, st, in))
		if judged.eventNote == "" {
			judged.eventType, judged.eventNote = v.eventType, v.eventNote
		}
		v = judged
	}
	s.rollout = st
	s.rolloutCond = &metav1.Condition{Type: meshv1.ConditionPolicyRollout, Status: boolCondition(st.Phase == meshv1.PolicyPhaseEnforced), Reason: v.reason, Message: v.message}
	if v.eventNote != "" {
		r.Recorder.Eventf(p, nil, v.eventType, v.reason, "Rollout", "%s", eventNote(v.eventNote))
	}
	if st.Phase == meshv1.PolicyPhaseEnforced {
		return false, nil
	}
	// Waiting: what is in force stays; the new authorization runs in dry-run unless held
	// for good (would deny, aborted).
	desired.PolicyWhileWaiting(&s.set, old, in.change, st)
	if v.reason != reasonWouldDeny && v.reason != reasonPolicyAborted {
		s.rolloutRequeue = settings.interval
		if end := windowEnd(st, settings); end.After(s.now) && end.Sub(s.now) < settings.interval {
			s.rolloutRequeue = end.Sub(s.now) + time.Second
		}
	}
	return false, nil
}

// rolloutStatus puts the rollout's status and condition into st.
func (s *policyScope) rolloutStatus(st *meshv1.MeshPolicyStatus) {
	if s.policy.Spec.Rollout == nil {
		st.Rollout = nil
		meta.RemoveStatusCondition(&st.Conditions, meshv1.ConditionPolicyRollout)
		return
	}
	if s.rollout == nil {
		return // the step did not run: what status said stays
	}
	st.Rollout = s.rollout
	meta.SetStatusCondition(&st.Conditions, *s.rolloutCond)
}
