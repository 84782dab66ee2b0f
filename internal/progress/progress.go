package progress

import (
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// maxPasses bounds the transitions of one Step. A rollout needs at most a handful in a row
// (a request, a new rollout, a gate opening); more means a bug, and stopping keeps the
// operator alive while the property tests catch it.
const maxPasses = 16

// Plan says what the controller must observe before it calls Step: which checks to run and
// which webhooks to call. obs.Checks and obs.Gates are ignored. Plan runs the same decisions
// as Step, so it asks for exactly what Step will consume with the same status, observation
// and time; whatever Step is given beyond that is ignored.
func Plan(spec *meshv1.CanarySpec, st *meshv1.CanaryStatus, obs Observation, now time.Time) Needs {
	obs.Checks, obs.Gates = nil, nil
	m := newMachine(spec, *st, obs, now)
	m.run()
	return m.needs
}

// Step decides the next status, routing and workload from the current status, this
// reconcile's observation and the time. It never mutates st.
func Step(spec *meshv1.CanarySpec, st meshv1.CanaryStatus, obs Observation, now time.Time) Decision {
	// Results are consumed only where Plan asked for them: where Step goes on from a
	// transition Plan could not foresee (a gate that opened), it waits for the next reconcile.
	needs := Plan(spec, &st, obs, now)
	m := newMachine(spec, st, obs, now)
	m.allowed = &needs
	m.run()
	return m.decision()
}

// machine is one evaluation of Plan or Step: a copy of the status it advances and what it
// collected on the way.
type machine struct {
	spec  specView
	st    meshv1.CanaryStatus
	obs   Observation
	now   time.Time
	stamp metav1.Time // now as the status stores it: to the second

	needs   Needs
	events  []Event
	notify  []meshv1.WebhookType
	requeue time.Duration

	// changed records a transition in the current pass; run repeats until a pass has none.
	changed bool
	// allowed is what Plan asked for: Step consumes no other result (nil in Plan itself).
	allowed *Needs
	// checksUsed and gatesUsed make each result count once, however many passes run.
	checksUsed bool
	gatesUsed  map[meshv1.WebhookType]bool
	// retrying marks the rollout started by a retry request.
	retrying bool
}

func newMachine(spec *meshv1.CanarySpec, st meshv1.CanaryStatus, obs Observation, now time.Time) *machine {
	return &machine{
		spec:      specView{spec},
		st:        *st.DeepCopy(),
		obs:       obs,
		now:       now,
		stamp:     metav1.NewTime(now).Rfc3339Copy(),
		gatesUsed: map[meshv1.WebhookType]bool{},
	}
}

func (m *machine) run() {
	if m.obs.TargetRevision == "" || m.st.Phase == meshv1.PhaseTerminating {
		return
	}
	if m.spec.Suspend {
		m.suspended()
		return
	}
	m.unsuspended()
	m.request()
	for range maxPasses {
		m.changed = false
		m.requeue = 0
		m.phase()
		if !m.changed {
			return
		}
	}
}

func (m *machine) phase() {
	switch m.st.Phase {
	case meshv1.PhaseInitializing:
		m.initializing()
	case meshv1.PhaseInitialized, meshv1.PhaseSucceeded, meshv1.PhaseFailed:
		m.idle()
	case meshv1.PhaseWaiting:
		m.waiting()
	case meshv1.PhaseProgressing:
		m.progressing()
	case meshv1.PhasePromoting:
		m.promoting()
	case meshv1.PhaseFinalising:
		m.finalising()
	case meshv1.PhaseRollingBack:
		m.rollingBack()
	case meshv1.PhaseTerminating:
		// The controller's business; run never gets here.
	default:
		// "" (a new Canary) or a phase this version does not know: start over.
		m.initializing()
	}
}

func (m *machine) decision() Decision {
	if len(m.events) > 0 {
		m.fire(meshv1.WebhookEvent)
	}
	routing := routingFor(m.spec, &m.st)
	if m.obs.RoutingHeld != "" {
		routing = Routing{PrimaryWeight: 100}
	}
	return Decision{
		Status:       m.st,
		Routing:      routing,
		Workload:     workloadFor(m.spec, &m.st, m.obs, m.now),
		Notify:       m.notify,
		Events:       m.events,
		RequeueAfter: m.requeue,
	}
}

// enter moves to phase p: the phase and step clocks restart.
func (m *machine) enter(p meshv1.CanaryPhase) {
	m.st.Phase = p
	m.st.LastTransitionTime = m.stampPtr()
	m.restartStep()
}

// restartStep restarts the clock of the current step (intervals and deadlines count from it).
func (m *machine) restartStep() {
	m.st.LastStepTime = m.stampPtr()
	m.changed = true
}

func (m *machine) stampPtr() *metav1.Time {
	t := m.stamp
	return &t
}

// elapsed reports whether d has passed since t (a nil t is long past).
func (m *machine) elapsed(t *metav1.Time, d time.Duration) bool {
	return t == nil || !m.now.Before(t.Add(d))
}

// until is the time left until d has passed since t.
func (m *machine) until(t *metav1.Time, d time.Duration) time.Duration {
	if t == nil {
		return 0
	}
	return t.Add(d).Sub(m.now)
}

// after asks to be called again after d, keeping the earliest request of the pass.
func (m *machine) after(d time.Duration) {
	d = max(d, minPoll)
	if m.requeue == 0 || d < m.requeue {
		m.requeue = d
	}
}

func (m *machine) needChecks(metrics bool, hook meshv1.WebhookType) {
	if metrics {
		m.needs.RunChecks = true
	}
	if m.spec.hasHooks(hook) && !slices.Contains(m.needs.Hooks, hook) {
		m.needs.Hooks = append(m.needs.Hooks, hook)
	}
}

// mayUse says whether Plan asked for the metrics (when metrics) and the webhooks of type hook.
func (m *machine) mayUse(metrics bool, hook meshv1.WebhookType, gate meshv1.WebhookType) bool {
	a := m.allowed
	if a == nil {
		return true
	}
	if metrics && !a.RunChecks {
		return false
	}
	if hook != "" && m.spec.hasHooks(hook) && !slices.Contains(a.Hooks, hook) {
		return false
	}
	return gate == "" || slices.Contains(a.Gates, gate)
}

func (m *machine) needGate(t meshv1.WebhookType) {
	if m.spec.hasHooks(t) && !slices.Contains(m.needs.Gates, t) {
		m.needs.Gates = append(m.needs.Gates, t)
	}
}

// fire asks for the non-gating webhooks of type t to be called, if there are any.
func (m *machine) fire(t meshv1.WebhookType) {
	if m.spec.hasHooks(t) && !slices.Contains(m.notify, t) {
		m.notify = append(m.notify, t)
	}
}

// isActive: a rollout that has not yet reached its promotion.
func isActive(p meshv1.CanaryPhase) bool {
	return p == meshv1.PhaseWaiting || p == meshv1.PhaseProgressing
}

// isIdle: no rollout under way.
func isIdle(p meshv1.CanaryPhase) bool {
	return p == meshv1.PhaseInitialized || p == meshv1.PhaseSucceeded || p == meshv1.PhaseFailed
}
