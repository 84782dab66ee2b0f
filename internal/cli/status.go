package cli

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/internal/workload"
)

type statusOptions struct {
	*rootOptions
	watch   bool
	wait    bool
	timeout time.Duration
	events  int
}

func (o *rootOptions) statusCommand() *cobra.Command {
	s := &statusOptions{rootOptions: o}
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show a rollout: progress, checks, gates, conditions and the last events",
		Long: `Show a rollout: progress, checks, gates, conditions and the last events.

With --wait, wait until the rollout of the target Deployment's current revision ends:
exit 0 when it is promoted (or was already), 1 when it is rolled back or the Canary is
stalled, 2 on --timeout or an error. Made for pipelines: run it after the deploy step.

meshpolicy/NAME shows a MeshPolicy instead: where a change of its authorization or mTLS
stands (spec.rollout), the calls it would deny, the clients calling without mTLS.`,
		Example: `  kubectl canopy status reviews -n bookinfo
  kubectl canopy status reviews -n bookinfo --watch
  kubectl canopy status reviews -n bookinfo --wait --timeout 30m
  kubectl canopy status meshpolicy/reviews -n bookinfo`,
		Args: exactlyOneName("status"),
		RunE: func(cmd *cobra.Command, args []string) error { return s.run(cmd.Context(), args[0]) },
	}
	cmd.Flags().BoolVarP(&s.watch, "watch", "w", false, "Redraw the view as the rollout changes (Ctrl-C to stop)")
	cmd.Flags().BoolVar(&s.wait, "wait", false, "Wait for the rollout to end: exit 0 when promoted, 1 when rolled back or stalled")
	cmd.Flags().DurationVar(&s.timeout, "timeout", 0, "Give up waiting after this long (exit 2); 0 waits as long as the rollout takes")
	cmd.Flags().IntVar(&s.events, "events", 5, "How many of the last events to show")
	return cmd
}

func exactlyOneName(verb string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return &exitError{code: ExitError, msg: fmt.Sprintf(
				"error: %s needs the name of one Canary, e.g. kubectl canopy %s reviews -n bookinfo; list them with kubectl canopy get -A", verb, verb)}
		}
		return nil
	}
}

func (s *statusOptions) run(ctx context.Context, name string) error {
	cl, err := s.client()
	if err != nil {
		return err
	}
	ns := s.namespace()
	if policy, ok := policyName(name); ok {
		return s.policyStatus(ctx, cl, client.ObjectKey{Namespace: ns, Name: policy})
	}
	key := client.ObjectKey{Namespace: ns, Name: name}
	if !s.watch && !s.wait {
		v, err := s.view(ctx, cl, key)
		if err != nil {
			return err
		}
		writeStatus(s.streams.Out, v, s.palette())
		return nil
	}
	return s.follow(ctx, cl, key)
}

// view reads the Canary and its events.
func (s *statusOptions) view(ctx context.Context, cl client.Client, key client.ObjectKey) (statusView, error) {
	c := &meshv1.Canary{}
	if err := cl.Get(ctx, key, c); err != nil {
		if apierrors.IsNotFound(err) {
			return statusView{}, notFound(key.Namespace, key.Name)
		}
		return statusView{}, err
	}
	evs, evErr := canaryEvents(ctx, cl, c)
	return statusView{canary: c, events: evs, eventsErr: evErr, maxEvents: s.events, now: s.now()}, nil
}

// canaryEvents lists the Canary's events (events.k8s.io, which also serves those recorded
// through core/v1). Events of an older Canary of the same name are left out.
func canaryEvents(ctx context.Context, cl client.Client, c *meshv1.Canary) ([]eventsv1.Event, error) {
	list := &eventsv1.EventList{}
	sel := fields.SelectorFromSet(fields.Set{"regarding.kind": "Canary", "regarding.name": c.Name})
	if err := cl.List(ctx, list, client.InNamespace(c.Namespace), client.MatchingFieldsSelector{Selector: sel}); err != nil {
		return nil, explain(err)
	}
	out := list.Items[:0]
	for _, e := range list.Items {
		if e.Regarding.UID == "" || e.Regarding.UID == c.UID {
			out = append(out, e)
		}
	}
	return out, nil
}

// follow redraws (--watch) and/or waits for the end of the rollout (--wait). It polls:
// the view shows relative times and events, which a watch on the Canary alone would miss.
func (s *statusOptions) follow(ctx context.Context, cl client.Client, key client.ObjectKey) error {
	tty := isTerminal(s.streams.Out)
	p := s.palette()
	var lastFrame, lastLine string
	tick := time.NewTicker(s.settings.poll)
	defer tick.Stop()
	// A timer rather than a context deadline: requests made close to a deadline fail with
	// the client's rate limiter's error instead of a clean timeout.
	var timeout <-chan time.Time
	if s.timeout > 0 {
		t := time.NewTimer(s.timeout)
		defer t.Stop()
		timeout = t.C
	}
	for {
		v, err := s.view(ctx, cl, key)
		if err != nil {
			if ctx.Err() != nil {
				return s.interrupted()
			}
			return err
		}
		c := v.canary
		if s.watch {
			var b bytes.Buffer
			writeStatus(&b, v, p)
			// On a terminal redraw every tick (times move); in a log, print a frame only
			// when something changed.
			frame := c.ResourceVersion + "/" + lastEventKey(v.events)
			if tty {
				// Overwrite in place (home, clear each line's rest, clear below), which
				// does not flicker as clearing the whole screen every second would.
				home := "\x1b[H"
				if lastFrame == "" {
					home += "\x1b[2J"
				}
				printText(s.streams.Out, home+strings.ReplaceAll(b.String(), "\n", "\x1b[K\n")+"\x1b[J")
			} else if frame != lastFrame {
				if lastFrame != "" {
					printLine(s.streams.Out)
				}
				printText(s.streams.Out, b.String())
			}
			lastFrame = frame
		} else if line := progressLine(c, s.now()); line != lastLine {
			printLine(s.streams.Out, line)
			lastLine = line
		}
		if s.wait {
			target := targetRevision(ctx, cl, c)
			if done, err := rolloutEnded(c, target); done {
				if err != nil {
					return err
				}
				printLine(s.streams.Out, p.green(fmt.Sprintf("%s/%s: revision %s promoted", c.Namespace, c.Name, c.Status.LastPromotedRevision)))
				return nil
			}
		}
		select {
		case <-timeout:
			return &exitError{code: ExitError, msg: fmt.Sprintf("timed out after %s waiting for %s/%s to finish its rollout; see kubectl canopy status %s -n %s",
				s.timeout, key.Namespace, key.Name, key.Name, key.Namespace)}
		case <-ctx.Done():
			return s.interrupted()
		case <-tick.C:
		}
	}
}

// interrupted is the exit on Ctrl-C: the normal way out of --watch, an error for --wait.
func (s *statusOptions) interrupted() error {
	if s.wait {
		return &exitError{code: ExitError, msg: "interrupted before the rollout ended"}
	}
	return nil
}

func lastEventKey(evs []eventsv1.Event) string {
	var latest *eventsv1.Event
	for i := range evs {
		if latest == nil || eventTime(&evs[i]).After(eventTime(latest)) {
			latest = &evs[i]
		}
	}
	if latest == nil {
		return ""
	}
	return latest.Name + "/" + latest.ResourceVersion
}

// progressLine is one line of --wait without --watch: enough for a CI log.
func progressLine(c *meshv1.Canary, now time.Time) string {
	st := &c.Status
	line := fmt.Sprintf("%s %s/%s %s weight %d%% step %s failed checks %d/%d",
		now.Format("15:04:05"), c.Namespace, c.Name, phaseText(c), st.CanaryWeight, stepText(c), st.FailedChecks, thresholdOf(&c.Spec.Analysis))
	if msg := readyMessage(c); msg != "" {
		line += ": " + msg
	}
	return line
}

// targetRevision is the revision of the target Deployment as the controller computes it
// (pod template and the ConfigMaps it reads), or "" when it cannot be read; --wait then
// judges by the phase alone.
func targetRevision(ctx context.Context, cl client.Client, c *meshv1.Canary) string {
	d, _, err := workload.Get(ctx, workload.ReaderLookup(cl), c.Spec.TargetRef.KindOrDefault(), client.ObjectKey{Namespace: c.Namespace, Name: c.Spec.TargetRef.Name})
	if err != nil || d == nil {
		return ""
	}
	tracked, err := workload.TrackedConfigs(ctx, cl, c.Namespace, &d.Spec.Template.Spec)
	if err != nil {
		return ""
	}
	return render.Revision(&d.Spec.Template, tracked...)
}

// rolloutEnded says whether the rollout of revision target (the target's, "" when unknown)
// is over, and with an error when it did not end promoted. A Canary the controller has not
// caught up with (a new spec, or a new revision it has not seen) is not done, so that a
// pipeline that runs --wait right after its deploy step does not read the previous
// rollout's result.
func rolloutEnded(c *meshv1.Canary, target string) (bool, error) {
	st := &c.Status
	ref := c.Namespace + "/" + c.Name
	if cond := stalled(c); cond != nil {
		return true, failed("%s is stalled (%s): %s", ref, cond.Reason, cond.Message)
	}
	if st.ObservedGeneration < c.Generation || !isIdle(st.Phase) {
		return false, nil
	}
	if target == "" {
		target = st.CurrentRevision
	}
	switch {
	case target != "" && st.LastPromotedRevision == target:
		return true, nil
	case st.Phase == meshv1.PhaseFailed && (target == "" || st.LastFailedRevision == target):
		msg := readyMessage(c)
		if msg == "" {
			msg = "rolled back"
		}
		return true, failed("%s: revision %s failed: %s (%d failed checks); kubectl canopy status %s -n %s shows why",
			ref, orDash(st.LastFailedRevision), msg, st.FailedChecks, c.Name, c.Namespace)
	default:
		return false, nil
	}
}
