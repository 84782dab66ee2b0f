package progress

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

type verdict int

const (
	notRun       verdict = iota // the results are not in this observation
	passed                      // every check passed (or there were none)
	holding                     // no failure, but a check could not be measured and holds the step
	failed                      // a check failed, or held longer than its holdTimeout
	overLimit                   // a check went past its failureLimit or consecutiveErrorLimit
	inconclusive                // a check went past its inconclusiveLimit: the rollout pauses
)

type analysis struct {
	verdict verdict
	// culprit is the check over its limit, else the first failed check, else the first
	// holding one.
	culprit meshv1.CheckStatus
	// limit says which limit the culprit went past (overLimit, inconclusive).
	limit string
	// newHold: a check started holding in this run.
	newHold bool
}

// count adds an outcome to a check's counters, carried over from its previous result in
// this rollout: failures and inconclusive outcomes add up, errors in a row reset on any
// measured value.
func count(c *meshv1.CheckStatus, prev *meshv1.CheckStatus) {
	if prev != nil {
		c.Failures, c.ConsecutiveErrors, c.Inconclusive = prev.Failures, prev.ConsecutiveErrors, prev.Inconclusive
	}
	switch c.Outcome {
	case meshv1.OutcomePass:
		c.ConsecutiveErrors = 0
	case meshv1.OutcomeFail:
		c.Failures++
		c.ConsecutiveErrors = 0
	case meshv1.OutcomeInconclusive:
		c.Inconclusive++
		c.ConsecutiveErrors = 0
	case meshv1.OutcomeNoData, meshv1.OutcomeNaN, meshv1.OutcomeTooFewRequests, meshv1.OutcomeUnreachable,
		meshv1.OutcomeTimeout, meshv1.OutcomeBadQuery, meshv1.OutcomeError:
		c.ConsecutiveErrors++
	default:
		c.ConsecutiveErrors++
	}
}

// pastLimit says which of the check's limits its counters went past, "" for none, and
// whether it pauses (inconclusiveLimit) rather than rolls back.
func pastLimit(e expectedCheck, c *meshv1.CheckStatus) (string, bool) {
	switch {
	case e.failureLimit != nil && c.Failures > *e.failureLimit:
		return fmt.Sprintf("failed %d times, more than its failureLimit %d", c.Failures, *e.failureLimit), false
	case e.errorLimit != nil && c.ConsecutiveErrors > *e.errorLimit:
		return fmt.Sprintf("not measurable %d times in a row, more than its consecutiveErrorLimit %d", c.ConsecutiveErrors, *e.errorLimit), false
	case e.inconclusiveLimit != nil && c.Inconclusive > *e.inconclusiveLimit:
		return fmt.Sprintf("inconclusive %d times, more than its inconclusiveLimit %d", c.Inconclusive, *e.inconclusiveLimit), true
	}
	return "", false
}

// evaluate judges this reconcile's results of the expected checks (the metrics when metrics,
// and the webhooks of type hook) and stores them in the status. A check that was expected but
// not reported counts as an Error outcome.
func (m *machine) evaluate(expected []expectedCheck, metrics bool, hook meshv1.WebhookType) analysis {
	if len(expected) == 0 {
		return analysis{verdict: passed}
	}
	if m.obs.Checks == nil || m.checksUsed || !m.mayUse(metrics, hook, "") {
		return analysis{verdict: notRun}
	}
	m.checksUsed = true
	m.changed = true

	res := analysis{verdict: passed}
	var failures, holds []meshv1.CheckStatus
	var over, pause *analysis
	out := make([]meshv1.CheckStatus, 0, len(expected))
	for _, e := range expected {
		c := meshv1.CheckStatus{Name: e.name, Outcome: meshv1.OutcomeError, Message: "not reported"}
		if got := findCheck(m.obs.Checks, e.name); got != nil {
			c = *got.DeepCopy()
		}
		c.LastMeasured = m.stampPtr()
		c.HoldingSince = nil
		c.DryRun = e.dryRun
		count(&c, findCheck(m.st.Checks, e.name))
		if e.dryRun {
			// Measured and shown, never deciding.
			out = append(out, c)
			continue
		}
		if why, pauses := pastLimit(e, &c); why != "" {
			switch {
			case !pauses && over == nil:
				over = &analysis{verdict: overLimit, culprit: c, limit: why}
			case pauses && pause == nil:
				pause = &analysis{verdict: inconclusive, culprit: c, limit: why}
				// The pause takes what was counted; a resume counts afresh.
				c.Inconclusive = 0
				out = append(out, c)
				continue
			}
		}
		switch {
		case c.Outcome == meshv1.OutcomePass:
		case c.Outcome == meshv1.OutcomeFail || !e.hold:
			failures = append(failures, c)
		default:
			expired, newHold := m.hold(e, &c)
			res.newHold = res.newHold || newHold
			if expired != nil {
				failures = append(failures, *expired)
			} else {
				holds = append(holds, c)
			}
		}
		out = append(out, c)
	}
	m.st.Checks = out

	switch {
	case over != nil:
		res.verdict, res.culprit, res.limit = over.verdict, over.culprit, over.limit
	case len(failures) > 0:
		res.verdict, res.culprit = failed, failures[0]
	case pause != nil:
		res.verdict, res.culprit, res.limit = pause.verdict, pause.culprit, pause.limit
	case len(holds) > 0:
		res.verdict, res.culprit = holding, holds[0]
	}
	return res
}

// hold marks a check that holds the step since its hold began (now, when newHold), and
// returns it as a failure when it held longer than its holdTimeout.
func (m *machine) hold(e expectedCheck, c *meshv1.CheckStatus) (expired *meshv1.CheckStatus, newHold bool) {
	since := m.stamp
	if prev := findCheck(m.st.Checks, e.name); prev != nil && prev.HoldingSince != nil {
		since = *prev.HoldingSince
	} else {
		newHold = true
	}
	c.HoldingSince = &since
	if !m.elapsed(&since, e.holdTimeout) {
		return nil, newHold
	}
	failure := *c
	if failure.Message != "" {
		failure.Message += "; "
	}
	failure.Message += fmt.Sprintf("not measurable for longer than the hold timeout %s", e.holdTimeout)
	return &failure, newHold
}

// gate consumes this reconcile's results of the confirm-* webhooks of type t and records them.
// open is true when every webhook of the type answered open (or there are none); reported is
// false when none of them was called.
func (m *machine) gate(t meshv1.WebhookType) (open, reported bool) {
	hooks := m.spec.hooks(t)
	if len(hooks) == 0 {
		return true, true
	}
	m.needGate(t)
	if m.gatesUsed[t] || !m.mayUse(false, "", t) {
		return false, false
	}
	open = true
	for _, h := range hooks {
		g := findGate(m.obs.Gates, h.Name, t)
		if g == nil {
			open = false
			continue
		}
		reported = true
		open = open && g.Open
		m.recordGate(*g)
	}
	if !reported {
		return false, false
	}
	m.gatesUsed[t] = true
	m.changed = true
	return open, true
}

// rollbackAsked polls the rollback webhooks, as Flagger does while a rollout waits or
// analyses: one that answers 2xx rolls the rollout back and marks its revision failed. They
// are called once an interval (their own clock: the last call of this rollout), from the
// moment the rollout starts; a webhook that does not answer 2xx, or cannot be reached, asks
// for nothing. It reports whether the rollout was rolled back.
func (m *machine) rollbackAsked() bool {
	t := meshv1.WebhookRollback
	hooks := m.spec.hooks(t)
	if len(hooks) == 0 {
		return false
	}
	last := m.lastGateAttempt(t)
	if !m.elapsed(last, m.spec.interval()) {
		m.after(m.until(last, m.spec.interval()))
		return false
	}
	m.needGate(t)
	if m.gatesUsed[t] || !m.mayUse(false, "", t) {
		return false
	}
	var asked *meshv1.GateStatus
	for _, h := range hooks {
		g := findGate(m.obs.Gates, h.Name, t)
		if g == nil {
			continue
		}
		m.gatesUsed[t] = true
		m.recordGate(*g)
		if g.Open && asked == nil {
			asked = g
		}
	}
	if asked == nil {
		if m.gatesUsed[t] {
			m.after(m.until(m.stampPtr(), m.spec.interval())) // the next call, on the stored clock
		}
		return false
	}
	m.changed = true
	m.rollBack(meshv1.ReasonRollbackWebhook, true, "Rollback webhook %s asked for a rollback: rolled back revision %s",
		asked.Name, m.st.CurrentRevision)
	return true
}

// lastGateAttempt is when the webhooks of type t were last called in this rollout (nil:
// never).
func (m *machine) lastGateAttempt(t meshv1.WebhookType) *metav1.Time {
	var last *metav1.Time
	for i := range m.st.Gates {
		if g := &m.st.Gates[i]; g.Type == t && g.LastAttempt != nil && (last == nil || last.Before(g.LastAttempt)) {
			last = g.LastAttempt
		}
	}
	return last
}

func (m *machine) recordGate(g meshv1.GateStatus) {
	rec := meshv1.GateStatus{Name: g.Name, Type: g.Type, Open: g.Open, Message: g.Message, LastAttempt: m.stampPtr()}
	for i := range m.st.Gates {
		if m.st.Gates[i].Name == g.Name {
			rec.Attempts = m.st.Gates[i].Attempts
			if !g.Open {
				rec.Attempts++
			}
			m.st.Gates[i] = rec
			return
		}
	}
	if !g.Open {
		rec.Attempts = 1
	}
	m.st.Gates = append(m.st.Gates, rec)
}

// closedGate is the first gate of type t whose last answer, in the current step, was closed.
func (m *machine) closedGate(t meshv1.WebhookType) *meshv1.GateStatus {
	for i := range m.st.Gates {
		g := &m.st.Gates[i]
		if g.Type == t && !g.Open && g.LastAttempt != nil && m.st.LastStepTime != nil && !g.LastAttempt.Before(m.st.LastStepTime) {
			return g
		}
	}
	return nil
}

// lastAttempt is when the analysis of the current rollout last ran: the latest check
// measured or progression gate called.
func (m *machine) lastAttempt() *metav1.Time {
	var last *metav1.Time
	later := func(t *metav1.Time) {
		if t != nil && (last == nil || last.Before(t)) {
			last = t
		}
	}
	for i := range m.st.Checks {
		later(m.st.Checks[i].LastMeasured)
	}
	for i := range m.st.Gates {
		// Neither the confirm-rollout gate (called before the rollout) nor the rollback
		// webhooks (called with the analysis, or before it) time the analysis.
		if g := &m.st.Gates[i]; g.Type != meshv1.WebhookConfirmRollout && g.Type != meshv1.WebhookRollback {
			later(g.LastAttempt)
		}
	}
	return last
}

// analysisDue says whether the analysis of the current step runs now, else how long until it
// does. The first step (before the canary gets traffic) runs as soon as the canary is ready;
// every later run waits an interval after the step began and after the previous run.
func (m *machine) analysisDue() (bool, time.Duration) {
	step := m.st.LastStepTime
	if step == nil {
		step = m.st.RolloutStarted
	}
	last := m.lastAttempt()
	if m.st.StepIndex == 0 && (last == nil || (step != nil && last.Before(step))) {
		return true, 0
	}
	from := step
	if from == nil || (last != nil && from.Before(last)) {
		from = last
	}
	if m.elapsed(from, m.spec.interval()) {
		return true, 0
	}
	return false, m.until(from, m.spec.interval())
}

// nextGate is the gate that holds the advance a passing analysis of the current step leads
// to, "" for none.
func (m *machine) nextGate() meshv1.WebhookType {
	st := &m.st
	switch {
	case m.spec.SkipAnalysis:
		return meshv1.WebhookConfirmPromotion
	case m.spec.strategy() == stepped:
		return m.steppedGate()
	case m.spec.strategy() == weighted && st.StepIndex == 0:
		return meshv1.WebhookConfirmTrafficIncrease
	case m.spec.strategy() == weighted && st.CanaryWeight >= m.spec.maxWeight():
		return meshv1.WebhookConfirmPromotion
	case m.spec.strategy() == weighted:
		return meshv1.WebhookConfirmTrafficIncrease
	case st.StepIndex > 0 && st.Iterations+1 >= m.spec.iterations():
		return meshv1.WebhookConfirmPromotion
	default:
		return ""
	}
}

func findCheck(checks []meshv1.CheckStatus, name string) *meshv1.CheckStatus {
	for i := range checks {
		if checks[i].Name == name {
			return &checks[i]
		}
	}
	return nil
}

func findGate(gates []meshv1.GateStatus, name string, t meshv1.WebhookType) *meshv1.GateStatus {
	for i := range gates {
		if gates[i].Name == name && gates[i].Type == t {
			return &gates[i]
		}
	}
	return nil
}
