package progress

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// The harness plays the controller and the cluster around the state machine, on a fake clock:
// a story drives it with deploy, ask and wait, and reads what happened.

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// world is the cluster as the state machine's decisions leave it.
type world struct {
	target      string        // revision of the target Deployment's template
	targetUp    bool          // the target runs its replicas
	targetSince time.Time     // since when the target runs its current template and replicas
	canaryDelay time.Duration // how long the target takes to become available
	canaryDown  bool          // the target's pods crash

	primary      string        // revision the primary was last written from
	primaryAt    time.Time     // when its pods are available (set when it is written)
	primaryDelay time.Duration // how long the primary takes to roll out a new template
	primaryDown  bool

	routingHeld string // why the canary may get no traffic (a MeshPolicy that does not compose)
}

func (w *world) canaryReadyAt() time.Time  { return w.targetSince.Add(w.canaryDelay) }
func (w *world) primaryReadyAt() time.Time { return w.primaryAt }

func (w *world) observe(now time.Time) Observation {
	return Observation{
		TargetRevision:  w.target,
		PrimaryReady:    w.primary != "" && !w.primaryDown && !now.Before(w.primaryReadyAt()),
		PrimaryRevision: w.primary,
		CanaryReady:     w.targetUp && !w.canaryDown && !now.Before(w.canaryReadyAt()),
		RoutingHeld:     w.routingHeld,
	}
}

func (w *world) apply(wl Workload, now time.Time) {
	if (wl.Initialize || wl.PromotePrimary) && w.primary != w.target {
		w.primary, w.primaryAt = w.target, now.Add(w.primaryDelay)
	}
	if wl.ScaleTargetToZero {
		w.targetUp = false
	}
	if wl.CanaryScaledUp && !w.targetUp {
		w.targetUp, w.targetSince = true, now
	}
}

// rollout is one Canary told as a story.
type rollout struct {
	t       *testing.T
	spec    meshv1.CanarySpec
	status  meshv1.CanaryStatus
	now     time.Time
	world   world
	request string

	// metric measures a metric; nil passes everything.
	metric func(name string) meshv1.CheckStatus
	// hookOutcome answers the pre-rollout and rollout webhooks (Pass when absent).
	hookOutcome map[string]meshv1.CheckOutcome
	// gateOpen answers the confirm-* webhooks (closed when absent).
	gateOpen map[string]bool

	last      Decision
	lastAt    time.Time // when last was decided
	events    []Event
	notified  []meshv1.WebhookType
	weights   []int32        // canary weight, each time it changed
	routings  []Routing      // routing, each time it changed
	checkRuns int            // reconciles that ran the metrics
	hookCalls map[string]int // calls of each check-like webhook
	reconcile int
	trace     []string
	// onStep, when set, sees every reconcile: the status it started from, the observation
	// and the decision.
	onStep func(now time.Time, before meshv1.CanaryStatus, obs Observation, d Decision)
}

// newRollout creates the Canary for a Deployment at revision v1 and lets it initialize.
func newRollout(t *testing.T, spec meshv1.CanarySpec) *rollout {
	t.Helper()
	return newObservedRollout(t, spec, nil)
}

// newObservedRollout is newRollout with onStep set from the first reconcile on.
func newObservedRollout(t *testing.T, spec meshv1.CanarySpec, onStep func(time.Time, meshv1.CanaryStatus, Observation, Decision)) *rollout {
	t.Helper()
	r := &rollout{onStep: onStep,
		t: t, spec: spec, now: t0,
		world:       world{target: "v1", targetUp: true, targetSince: t0.Add(-time.Hour), canaryDelay: 20 * time.Second, primaryDelay: 30 * time.Second},
		hookOutcome: map[string]meshv1.CheckOutcome{},
		gateOpen:    map[string]bool{},
		hookCalls:   map[string]int{},
	}
	r.step()
	r.waitFor("initialized", func() bool { return r.status.Phase == meshv1.PhaseInitialized && !r.world.targetUp }, time.Hour)
	r.weights, r.routings, r.events, r.notified = nil, nil, nil, nil
	return r
}

// weightedSpec is a canary moving 10% a minute up to 50%, judged by the success rate.
func weightedSpec() meshv1.CanarySpec {
	return meshv1.CanarySpec{
		TargetRef: meshv1.TargetRef{Name: "podinfo"},
		Service:   meshv1.CanaryService{Port: 9898},
		Analysis: meshv1.CanaryAnalysis{
			Interval:   "1m",
			Threshold:  3,
			StepWeight: ptr[int32](10),
			MaxWeight:  50,
			Metrics:    []meshv1.CanaryMetric{successRate()},
		},
	}
}

func successRate() meshv1.CanaryMetric {
	return meshv1.CanaryMetric{Name: "request-success-rate", ThresholdRange: meshv1.ThresholdRange{Min: ptr(99.0)}}
}

func ptr[T any](v T) *T { return &v }

func passing(name string) meshv1.CheckStatus {
	return meshv1.CheckStatus{Name: name, Outcome: meshv1.OutcomePass, Value: "99.9", Threshold: ">= 99"}
}

func failingWith(value string) func(string) meshv1.CheckStatus {
	return func(name string) meshv1.CheckStatus {
		return meshv1.CheckStatus{Name: name, Outcome: meshv1.OutcomeFail, Value: value, Threshold: ">= 99"}
	}
}

// failingFrom fails the checks from canary weight w on with value; they pass below it.
func (r *rollout) failingFrom(w int32, value string) func(string) meshv1.CheckStatus {
	return func(name string) meshv1.CheckStatus {
		if r.status.CanaryWeight >= w {
			return failingWith(value)(name)
		}
		return passing(name)
	}
}

func unmeasurable(name string) meshv1.CheckStatus {
	return meshv1.CheckStatus{Name: name, Outcome: meshv1.OutcomeNoData, Message: "no samples in 1m"}
}

// step is one reconcile at the current time, as the controller runs it.
func (r *rollout) step() {
	r.t.Helper()
	r.reconcile++
	obs := r.world.observe(r.now)
	obs.Request = r.request
	needs := Plan(&r.spec, &r.status, obs, r.now)
	full := r.measure(obs, needs)
	d := Step(&r.spec, r.status, full, r.now)

	r.checkDecision(d, full)
	// Step consumes only what Plan asked for: results nobody asked for (failing checks, open
	// gates) change nothing.
	if extra := Step(&r.spec, r.status, unasked(&r.spec, full, needs), r.now); !sameDecision(d, extra) {
		r.t.Fatalf("reconcile %d: Step used results Plan did not ask for (%+v)\nwith only planned: %s\nwith more: %s", r.reconcile, needs, dump(d), dump(extra))
	}
	// The same status, observation and time again: nothing moves (a repeated reconcile, or a
	// restarted operator reading the status back).
	again := Step(&r.spec, persisted(d.Status), full, r.now)
	if !sameDecision(d, again) || len(again.Events) > 0 || len(again.Notify) > 0 {
		r.t.Fatalf("reconcile %d: Step is not idempotent\nfirst: %s\nagain: %s", r.reconcile, dump(d), dump(again))
	}

	if r.onStep != nil {
		r.onStep(r.now, r.status, full, d)
	}
	r.status = persisted(d.Status) // what a fresh operator would read back
	r.world.apply(d.Workload, r.now)
	r.last, r.lastAt = d, r.now
	r.events = append(r.events, d.Events...)
	r.notified = append(r.notified, d.Notify...)
	if len(r.routings) == 0 || r.routings[len(r.routings)-1] != d.Routing {
		r.routings = append(r.routings, d.Routing)
	}
	if len(r.weights) == 0 || r.weights[len(r.weights)-1] != d.Routing.CanaryWeight {
		r.weights = append(r.weights, d.Routing.CanaryWeight)
	}
	if needs.RunChecks {
		r.checkRuns++
	}
	for _, h := range r.spec.Analysis.Webhooks {
		if slices.Contains(needs.Hooks, h.Type) {
			r.hookCalls[h.Name]++
		}
	}
	r.trace = append(r.trace, fmt.Sprintf("%s +%-6s %-12s w=%-3d step=%d it=%d failed=%d needs=%+v requeue=%s %s",
		r.now.Format("15:04:05"), r.now.Sub(t0), d.Status.Phase, d.Routing.CanaryWeight, d.Status.StepIndex, d.Status.Iterations,
		d.Status.FailedChecks, needs, d.RequeueAfter, readyMessage(d.Status)))
}

// measure runs what needs asks for, as the controller would.
func (r *rollout) measure(obs Observation, needs Needs) Observation {
	if needs.RunChecks || len(needs.Hooks) > 0 {
		obs.Checks = []meshv1.CheckStatus{}
	}
	if needs.RunChecks {
		for _, m := range r.spec.Analysis.Metrics {
			c := passing(m.Name)
			if r.metric != nil {
				c = r.metric(m.Name)
			}
			obs.Checks = append(obs.Checks, c)
		}
	}
	for _, h := range r.spec.Analysis.Webhooks {
		if slices.Contains(needs.Hooks, h.Type) {
			out, ok := r.hookOutcome[h.Name]
			if !ok {
				out = meshv1.OutcomePass
			}
			obs.Checks = append(obs.Checks, meshv1.CheckStatus{Name: h.Name, Outcome: out})
		}
		if slices.Contains(needs.Gates, h.Type) {
			obs.Gates = append(obs.Gates, meshv1.GateStatus{Name: h.Name, Type: h.Type, Open: r.gateOpen[h.Name]})
		}
	}
	return obs
}

// unasked adds to obs a failing result for every check and an open answer for every gate that
// needs did not ask for.
func unasked(spec *meshv1.CanarySpec, obs Observation, needs Needs) Observation {
	obs.Checks = slices.Clone(obs.Checks)
	obs.Gates = slices.Clone(obs.Gates)
	if !needs.RunChecks {
		for _, m := range spec.Analysis.Metrics {
			obs.Checks = append(obs.Checks, meshv1.CheckStatus{Name: m.Name, Outcome: meshv1.OutcomeFail, Value: "0"})
		}
	}
	for _, h := range spec.Analysis.Webhooks {
		switch h.Type {
		case meshv1.WebhookPreRollout, meshv1.WebhookRollout:
			if !slices.Contains(needs.Hooks, h.Type) {
				obs.Checks = append(obs.Checks, meshv1.CheckStatus{Name: h.Name, Outcome: meshv1.OutcomeFail})
			}
		case meshv1.WebhookConfirmRollout, meshv1.WebhookConfirmTrafficIncrease, meshv1.WebhookConfirmPromotion, meshv1.WebhookRollback:
			if !slices.Contains(needs.Gates, h.Type) {
				obs.Gates = append(obs.Gates, meshv1.GateStatus{Name: h.Name, Type: h.Type, Open: true})
			}
		default:
		}
	}
	return obs
}

// checkDecision asserts what must hold of every decision.
func (r *rollout) checkDecision(d Decision, obs Observation) {
	r.t.Helper()
	if err := invariants(&r.spec, r.status, d); err != nil {
		r.t.Fatalf("reconcile %d at +%s: %v\n%s", r.reconcile, r.now.Sub(t0), err, dump(d))
	}
}

// wait lets d pass, reconciling whenever the controller would: when the decision's requeue
// comes due, or when a Deployment becomes available (a watch event).
func (r *rollout) wait(d time.Duration) {
	r.t.Helper()
	end := r.now.Add(d)
	for {
		next := r.nextReconcile()
		if next.IsZero() || next.After(end) {
			r.now = end
			return
		}
		r.now = next
		r.step()
	}
}

// waitFor reconciles as the controller would until done holds, for at most limit.
func (r *rollout) waitFor(what string, done func() bool, limit time.Duration) {
	r.t.Helper()
	end := r.now.Add(limit)
	for !done() {
		next := r.nextReconcile()
		if next.IsZero() || next.After(end) {
			r.t.Fatalf("still not %s after %s (phase %s, weight %d)\n%s", what, limit, r.status.Phase, r.status.CanaryWeight, strings.Join(r.trace, "\n"))
		}
		r.now = next
		r.step()
	}
}

func (r *rollout) waitForPhase(p meshv1.CanaryPhase, limit time.Duration) {
	r.t.Helper()
	r.waitFor("in phase "+string(p), func() bool { return r.status.Phase == p }, limit)
}

func (r *rollout) nextReconcile() time.Time {
	var next time.Time
	sooner := func(t time.Time) {
		if t.After(r.now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if r.last.RequeueAfter > 0 {
		due := r.lastAt.Add(r.last.RequeueAfter)
		if !due.After(r.now) && r.lastAt.Before(r.now) {
			return r.now // overdue: the clock was moved on without reconciling
		}
		sooner(due)
	}
	if r.world.targetUp && !r.world.canaryDown {
		sooner(r.world.canaryReadyAt())
	}
	if r.world.primary != "" && !r.world.primaryDown {
		sooner(r.world.primaryReadyAt())
	}
	return next
}

// deploy changes the target's template: its pods roll, and the change is seen at once.
func (r *rollout) deploy(rev string) {
	r.t.Helper()
	r.world.target, r.world.targetSince = rev, r.now
	r.step()
}

// ask sets the request annotation.
func (r *rollout) ask(req string) {
	r.t.Helper()
	r.request = req
	r.step()
}

// edit changes the spec.
func (r *rollout) edit(f func(*meshv1.CanarySpec)) {
	r.t.Helper()
	f(&r.spec)
	r.step()
}

func (r *rollout) expect(phase meshv1.CanaryPhase, weight int32) {
	r.t.Helper()
	if r.status.Phase != phase || r.last.Routing.CanaryWeight != weight {
		r.t.Fatalf("want %s at %d%%, got %s at %d%%\n%s", phase, weight, r.status.Phase, r.last.Routing.CanaryWeight, strings.Join(r.trace, "\n"))
	}
}

func (r *rollout) expectWeights(want ...int32) {
	r.t.Helper()
	if !slices.Equal(r.weights, want) {
		r.t.Fatalf("canary weights: want %v, got %v\n%s", want, r.weights, strings.Join(r.trace, "\n"))
	}
}

func (r *rollout) expectCondition(t string, status metav1.ConditionStatus, reason string, contains ...string) {
	r.t.Helper()
	c := meta.FindStatusCondition(r.status.Conditions, t)
	if c == nil {
		r.t.Fatalf("no %s condition in %+v", t, r.status.Conditions)
	}
	if c.Status != status || c.Reason != reason {
		r.t.Fatalf("%s: want %s/%s, got %s/%s: %s", t, status, reason, c.Status, c.Reason, c.Message)
	}
	for _, s := range contains {
		if !strings.Contains(c.Message, s) {
			r.t.Fatalf("%s message %q does not contain %q", t, c.Message, s)
		}
	}
}

// reasons lists the reasons of the events recorded so far.
func (r *rollout) reasons() []string {
	out := make([]string, 0, len(r.events))
	for _, e := range r.events {
		out = append(out, e.Reason)
	}
	return out
}

func (r *rollout) expectEvent(typ, reason string, contains string) {
	r.t.Helper()
	for _, e := range r.events {
		if e.Type == typ && e.Reason == reason && strings.Contains(e.Message, contains) {
			return
		}
	}
	r.t.Fatalf("no %s event %s containing %q in %+v", typ, reason, contains, r.events)
}

func readyReason(st meshv1.CanaryStatus) string {
	if c := meta.FindStatusCondition(st.Conditions, meshv1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

func readyMessage(st meshv1.CanaryStatus) string {
	if c := meta.FindStatusCondition(st.Conditions, meshv1.ConditionReady); c != nil {
		return c.Reason + ": " + c.Message
	}
	return ""
}

// persisted is the status as the API server stores it and a fresh operator reads it back.
func persisted(st meshv1.CanaryStatus) meshv1.CanaryStatus {
	b, err := json.Marshal(st)
	if err != nil {
		panic(err)
	}
	var out meshv1.CanaryStatus
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// sameDecision compares decisions as they are applied and stored: a nil list and an empty
// one are the same status.
func sameDecision(a, b Decision) bool {
	return equality.Semantic.DeepEqual(a.Status, b.Status) &&
		a.Routing == b.Routing && a.Workload == b.Workload && a.RequeueAfter == b.RequeueAfter
}

func dump(d Decision) string {
	b, _ := json.MarshalIndent(struct {
		Status   meshv1.CanaryStatus
		Routing  Routing
		Workload Workload
		Notify   []meshv1.WebhookType
		Events   []Event
		Requeue  string
	}{d.Status, d.Routing, d.Workload, d.Notify, d.Events, d.RequeueAfter.String()}, "", "  ")
	return string(b)
}

func (r *rollout) waitForWeight(w int32, limit time.Duration) {
	r.t.Helper()
	r.waitFor(fmt.Sprintf("at weight %d", w), func() bool { return r.last.Routing.CanaryWeight == w }, limit)
}

// crashCanary makes the canary's pods fail; the Deployment's status change is a watch event.
func (r *rollout) crashCanary() {
	r.t.Helper()
	r.world.canaryDown = true
	r.step()
}

// healCanary lets the canary's pods start again; they take the usual time to be available.
func (r *rollout) healCanary() {
	r.t.Helper()
	r.world.canaryDown, r.world.targetSince = false, r.now
	r.step()
}
