package cli

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// isTerminal reports whether w is a terminal: colours and redrawing are for people, not for
// pipes, files and CI logs.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// palette wraps text in ANSI colours when on.
type palette struct{ on bool }

func (p palette) wrap(code, s string) string {
	if !p.on || s == "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (p palette) bold(s string) string   { return p.wrap("1", s) }
func (p palette) red(s string) string    { return p.wrap("31", s) }
func (p palette) green(s string) string  { return p.wrap("32", s) }
func (p palette) yellow(s string) string { return p.wrap("33", s) }
func (p palette) cyan(s string) string   { return p.wrap("36", s) }

// phase colours a phase by what it means for the rollout.
func (p palette) phase(ph meshv1.CanaryPhase, s string) string {
	switch ph {
	case meshv1.PhaseSucceeded, meshv1.PhaseInitialized:
		return p.green(s)
	case meshv1.PhaseFailed, meshv1.PhaseRollingBack:
		return p.red(s)
	case meshv1.PhaseProgressing, meshv1.PhasePromoting, meshv1.PhaseFinalising:
		return p.cyan(s)
	case meshv1.PhaseWaiting, meshv1.PhaseInitializing, meshv1.PhaseTerminating:
		return p.yellow(s)
	default:
		return s
	}
}

// outcome colours a check outcome: only Pass passes; Fail fails; the rest hold or fail
// depending on onError, so they are a warning.
func (p palette) outcome(o meshv1.CheckOutcome) string {
	switch o {
	case meshv1.OutcomePass:
		return p.green(string(o))
	case meshv1.OutcomeFail:
		return p.red(string(o))
	case meshv1.OutcomeInconclusive, meshv1.OutcomeNoData, meshv1.OutcomeNaN, meshv1.OutcomeTooFewRequests, meshv1.OutcomeUnreachable,
		meshv1.OutcomeTimeout, meshv1.OutcomeBadQuery, meshv1.OutcomeError:
		return p.yellow(string(o))
	default:
		return string(o)
	}
}

// printf, printLine and printText write the plugin's output. A write to a terminal or a pipe that
// fails (the reader went away) leaves nothing useful to do, so the error is dropped here
// rather than at every call.
func printf(w io.Writer, format string, args ...any) { _, _ = fmt.Fprintf(w, format, args...) }

func printLine(w io.Writer, args ...any) { _, _ = fmt.Fprintln(w, args...) }

func printText(w io.Writer, args ...any) { _, _ = fmt.Fprint(w, args...) }
