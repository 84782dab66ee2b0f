package cli

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
)

// barWidth is the number of cells of the progress bar.
const barWidth = 40

// statusView is everything status shows; writeStatus prints it without a cluster, so that
// the tests pin the output on fixed statuses.
type statusView struct {
	canary *meshv1.Canary
	// events are the Canary's events, in any order; the last maxEvents are shown.
	events    []eventsv1.Event
	maxEvents int
	// eventsErr says why the events could not be read (RBAC, mostly).
	eventsErr error
	now       time.Time
}

func writeStatus(w io.Writer, v statusView, p palette) {
	c := v.canary
	st := &c.Status
	printf(w, "%s %s: %s\n", p.bold("Canary"), p.bold(c.Namespace+"/"+c.Name), p.phase(st.Phase, phaseText(c)))
	var rev string
	switch {
	case st.CurrentRevision == "":
		rev = "-"
	case st.LastPromotedRevision == "" || st.LastPromotedRevision == st.CurrentRevision:
		rev = st.CurrentRevision
	default:
		rev = fmt.Sprintf("%s (the primary runs %s)", st.CurrentRevision, st.LastPromotedRevision)
	}
	printf(w, "  %-10s %s\n", "Revision", rev)
	label, frac, steps := progressOf(c)
	printf(w, "  %-10s %s  %s\n", "Progress", bar(frac, st.Phase, p), label)
	if steps != "" {
		printf(w, "  %-10s %s\n", "", steps)
	}
	failed := fmt.Sprintf("%d %s (a rollback at %d)", st.FailedChecks, plural(st.FailedChecks, "check", "checks"), thresholdOf(&c.Spec.Analysis))
	if st.FailedChecks > 0 {
		failed = p.yellow(failed)
	}
	printf(w, "  %-10s %s\n", "Failed", failed)
	for _, h := range hints(c) {
		printf(w, "  %-10s %s\n", "Next", h)
	}

	if len(st.Checks) > 0 {
		printf(w, "\n%s\n", p.bold("Checks"))
		rows := make([][]cell, 0, len(st.Checks))
		for _, ck := range st.Checks {
			outcome := ck.Outcome
			name := ck.Name
			if ck.DryRun {
				name += " (dry run)" // measured, never deciding
			}
			rows = append(rows, []cell{
				plain(name),
				{text: string(ck.Outcome), style: func(string) string { return p.outcome(outcome) }},
				plain(checkValue(&ck)), plain(orDash(ck.Threshold)), plain(measuredText(&ck, v.now)), plain(ck.Message),
			})
		}
		writeTable(w, []string{colName, "OUTCOME", "VALUE", "THRESHOLD", "MEASURED", colMessage}, rows, "  ")
	}

	if len(st.Gates) > 0 {
		printf(w, "\n%s\n", p.bold("Gates"))
		rows := make([][]cell, 0, len(st.Gates))
		for _, g := range st.Gates {
			state := cell{text: gateState(&g), style: p.yellow}
			switch state.text {
			case gateRolledBack:
				state.style = p.red
			case gateWatching:
				state.style = nil
			case gateOpen:
				state.style = p.green
			}
			rows = append(rows, []cell{
				plain(g.Name), plain(string(g.Type)), state,
				plain(strconv.Itoa(int(g.Attempts))), plain(ago(g.LastAttempt, v.now)), plain(g.Message),
			})
		}
		writeTable(w, []string{colName, colType, "STATE", "ATTEMPTS", "LAST CALL", colMessage}, rows, "  ")
	}

	writeConditions(w, st.Conditions, v.now, p)
	writeEvents(w, v.events, v.eventsErr, v.maxEvents, v.now, p)
}

// writeConditions prints a resource's conditions, when it has any.
func writeConditions(w io.Writer, conds []metav1.Condition, now time.Time, p palette) {
	if len(conds) > 0 {
		printf(w, "\n%s\n", p.bold("Conditions"))
		rows := make([][]cell, 0, len(conds))
		for _, cond := range conds {
			status := plain(string(cond.Status))
			if cond.Type == meshv1.ConditionStalled && cond.Status == metav1.ConditionTrue {
				status.style = p.red
			}
			rows = append(rows, []cell{plain(cond.Type), status, plain(cond.Reason), plain(ago(&cond.LastTransitionTime, now)), plain(cond.Message)})
		}
		writeTable(w, []string{colType, "STATUS", "REASON", "SINCE", colMessage}, rows, "  ")
	}
}

// writeEvents prints the last max events (all when max <= 0), or why they cannot be read.
func writeEvents(w io.Writer, events []eventsv1.Event, eventsErr error, max int, now time.Time, p palette) {
	printf(w, "\n%s\n", p.bold("Events"))
	switch {
	case eventsErr != nil:
		printf(w, "  cannot read the events: %v\n", eventsErr)
	case len(events) == 0:
		printLine(w, "  none")
	default:
		evs := lastEvents(events, max)
		rows := make([][]cell, 0, len(evs))
		for i := range evs {
			e := &evs[i]
			typ := plain(e.Type)
			if e.Type == "Warning" {
				typ.style = p.yellow
			}
			when := eventWhen(e, now)
			rows = append(rows, []cell{plain(when), typ, plain(e.Reason), plain(e.Note)})
		}
		writeTable(w, []string{"LAST SEEN", colType, "REASON", colMessage}, rows, "  ")
	}
}

// progressOf describes where the rollout stands: a label, the part of the bar to fill and,
// for a weighted rollout under way, the steps with the current one bracketed.
func progressOf(c *meshv1.Canary) (label string, frac float64, steps string) {
	st := &c.Status
	a := &c.Spec.Analysis
	how := strategyOf(a)
	top := maxWeightOf(a)
	switch st.Phase {
	case "", meshv1.PhaseInitializing:
		return "initializing: the primary Deployment is being created", 0, ""
	case meshv1.PhaseInitialized:
		return "the primary serves all traffic; no rollout yet", 0, ""
	case meshv1.PhaseTerminating:
		return "the Canary is being deleted", 0, ""
	case meshv1.PhasePromoting:
		if st.LastPromotedRevision == st.CurrentRevision && st.CanaryWeight > 0 {
			return fmt.Sprintf("promoting revision %s gradually: %d%% still on the canary", st.CurrentRevision, st.CanaryWeight),
				float64(100-st.CanaryWeight) / 100, ""
		}
		return fmt.Sprintf("promoting revision %s: the primary rolls it out", st.CurrentRevision), 1, ""
	case meshv1.PhaseFinalising:
		return "promoted: routing all traffic back to the primary", 1, ""
	case meshv1.PhaseSucceeded:
		return fmt.Sprintf("revision %s promoted", orDash(st.LastPromotedRevision)), 1, ""
	case meshv1.PhaseRollingBack:
		return "rolling back: routing all traffic to the primary", 0, ""
	case meshv1.PhaseFailed:
		return fmt.Sprintf("revision %s rolled back", orDash(st.LastFailedRevision)), 0, ""
	case meshv1.PhaseWaiting, meshv1.PhaseProgressing:
	default:
		return "", 0, ""
	}
	waiting := ""
	if st.Phase == meshv1.PhaseWaiting {
		waiting = "waiting for confirm-rollout; "
	}
	if how == progress.Stepped {
		label = fmt.Sprintf("%s%d%% to the canary", waiting, st.CanaryWeight)
		return label, float64(st.StepIndex) / float64(len(a.Steps)), stepsLine(a.Steps, st)
	}
	if how == weighted {
		ws := stepWeights(a)
		label = fmt.Sprintf("%s%d%% to the canary, promoted after %d%%", waiting, st.CanaryWeight, top)
		return label, float64(st.CanaryWeight) / float64(top), fmt.Sprintf("step %d of %d: %s", st.StepIndex, len(ws), stepList(ws, st.StepIndex))
	}
	total := iterationsOf(a)
	mode := "blue/green: analysing the canary without traffic"
	switch {
	case how == abTesting:
		mode = "A/B: matching requests go to the canary"
	case a.Mirror:
		mode = fmt.Sprintf("blue/green: mirroring %d%% of the traffic to the canary", mirrorWeightOf(a))
	}
	label = fmt.Sprintf("%siteration %d of %d, %s", waiting, st.Iterations, total, mode)
	return label, float64(st.Iterations) / float64(total), ""
}

// stepsLine says which of the explicit steps the rollout is at: "step 3 of 7: pause 30s".
func stepsLine(steps []meshv1.CanaryStep, st *meshv1.CanaryStatus) string {
	i := int(st.StepIndex) - 1
	if i < 0 || i >= len(steps) {
		return fmt.Sprintf("step %d of %d: starting", st.StepIndex, len(steps))
	}
	return fmt.Sprintf("step %d of %d: %s", st.StepIndex, len(steps), progress.DescribeStep(&steps[i], st.Iterations))
}

// stepList is "10 20 [30] 40 50"; with many steps, only the ends and around the current one.
func stepList(ws []int32, current int32) string {
	const most = 11
	show := func(i int) string {
		s := strconv.Itoa(int(ws[i]))
		if int32(i+1) == current {
			return "[" + s + "]"
		}
		return s
	}
	var parts []string
	last := -1
	for i := range ws {
		near := i < 2 || i >= len(ws)-2 || (int32(i+1) >= current-1 && int32(i+1) <= current+1)
		if len(ws) > most && !near {
			continue
		}
		if last >= 0 && i > last+1 {
			parts = append(parts, "...")
		}
		parts = append(parts, show(i))
		last = i
	}
	return strings.Join(parts, " ")
}

// bar is "[########--------]", filled frac of the way, coloured by the phase.
func bar(frac float64, phase meshv1.CanaryPhase, p palette) string {
	frac = min(max(frac, 0), 1)
	n := int(math.Round(frac * barWidth))
	return "[" + p.phase(phase, strings.Repeat("#", n)) + strings.Repeat("-", barWidth-n) + "]"
}

// hints say what a person can do next, as commands.
func hints(c *meshv1.Canary) []string {
	st := &c.Status
	ref := c.Name + " -n " + c.Namespace
	var out []string
	if c.Spec.Suspend {
		out = append(out, "suspended by spec.suspend: nothing moves until it is cleared (in Git)")
	}
	if st.Paused {
		out = append(out, "paused: continue with kubectl canopy resume "+ref)
	}
	switch {
	case stalled(c) != nil:
		out = append(out, "stalled: fix the spec (see the Stalled condition); nothing moves until it changes")
	case st.Phase == meshv1.PhaseFailed && st.LastFailedRevision != "" && st.LastFailedRevision == st.CurrentRevision:
		out = append(out, "roll the revision out again with kubectl canopy retry "+ref+", or change the Deployment")
	}
	if st.Phase == meshv1.PhaseTerminating && readyReasonOf(c) == meshv1.ReasonDeletionBlocked {
		out = append(out, "deletion waits for a promoted revision: set the Deployment back to the primary's revision (in Git), or hand the target over as it is with kubectl canopy confirm-deletion "+ref)
	}
	for _, g := range st.Gates {
		if !g.Open && g.Type != meshv1.WebhookRollback {
			out = append(out, fmt.Sprintf("the %s gate %s holds the rollout until its webhook answers 2xx", g.Type, g.Name))
		}
	}
	return out
}

// The states of a gate.
const (
	gateWaiting    = "waiting"
	gateOpen       = "open"
	gateWatching   = "watching"
	gateRolledBack = "rolled back"
)

// gateState is a gate's state in words.
func gateState(g *meshv1.GateStatus) string {
	switch {
	case g.Type == meshv1.WebhookRollback && g.Open:
		return gateRolledBack
	case g.Type == meshv1.WebhookRollback:
		return gateWatching // a rollback webhook holds nothing until it answers 2xx
	case g.Open:
		return gateOpen
	default:
		return gateWaiting
	}
}

// measuredText is when a check was last measured, and since when it holds.
// checkValue is a check's last value, with the primary's beside it for a check that
// compares the two (compareWithPrimary).
func checkValue(ck *meshv1.CheckStatus) string {
	value := orDash(ck.Value)
	if ck.PrimaryValue != "" {
		value += " (primary " + ck.PrimaryValue + ")"
	}
	return value
}

func measuredText(ck *meshv1.CheckStatus, now time.Time) string {
	measured := ago(ck.LastMeasured, now)
	if ck.HoldingSince != nil {
		measured += ", holding since " + ago(ck.HoldingSince, now)
	}
	return measured
}

// lastEvents are the last n events (all when n <= 0), oldest first.
func lastEvents(events []eventsv1.Event, n int) []eventsv1.Event {
	evs := slices.Clone(events)
	slices.SortStableFunc(evs, func(a, b eventsv1.Event) int { return eventTime(&a).Compare(eventTime(&b)) })
	if n > 0 && len(evs) > n {
		evs = evs[len(evs)-n:]
	}
	return evs
}

// eventWhen is "12s ago (x3)".
func eventWhen(e *eventsv1.Event, now time.Time) string {
	t := metav1.NewTime(eventTime(e))
	when := ago(&t, now)
	if n := eventCount(e); n > 1 {
		when += fmt.Sprintf(" (x%d)", n)
	}
	return when
}

// eventTime is when an event last happened.
func eventTime(e *eventsv1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.DeprecatedLastTimestamp.IsZero():
		return e.DeprecatedLastTimestamp.Time
	default:
		return e.CreationTimestamp.Time
	}
}

func eventCount(e *eventsv1.Event) int32 {
	if e.Series != nil {
		return e.Series.Count
	}
	return e.DeprecatedCount
}

func plural(n int32, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
