package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// requestAction is one of the manual controls.
type requestAction struct {
	name  string
	short string
	// applies says whether the controller acts on the request in the Canary's state, and
	// if not why; the request is sent anyway (the state may change before it is handled).
	applies func(c *meshv1.Canary) string
	// took says whether the status, once the request is handled, shows its effect.
	took func(before, after *meshv1.Canary) bool
}

// The actions, as internal/progress (requests.go) handles them.
var requestActions = []requestAction{
	{
		name:  "promote",
		short: "Promote the rollout in progress now, skipping its remaining steps",
		applies: func(c *meshv1.Canary) string {
			if !rolling(c.Status.Phase) {
				return fmt.Sprintf("there is no rollout in progress to promote (phase %s)", orDash(string(c.Status.Phase)))
			}
			return ""
		},
		took: func(before, after *meshv1.Canary) bool {
			ph := after.Status.Phase
			return rolling(before.Status.Phase) && !rolling(ph) && ph != meshv1.PhaseRollingBack && ph != meshv1.PhaseFailed
		},
	},
	{
		name:  "abort",
		short: "Abort the rollout in progress: route all traffic back to the primary",
		applies: func(c *meshv1.Canary) string {
			if !rolling(c.Status.Phase) {
				return fmt.Sprintf("there is no rollout in progress to abort (phase %s)", orDash(string(c.Status.Phase)))
			}
			return ""
		},
		took: func(before, after *meshv1.Canary) bool {
			return rolling(before.Status.Phase) && (after.Status.Phase == meshv1.PhaseRollingBack || after.Status.Phase == meshv1.PhaseFailed)
		},
	},
	{
		name:  "pause",
		short: "Hold the rollout at its current step until resumed",
		applies: func(c *meshv1.Canary) string {
			if c.Status.Paused {
				return "it is already paused"
			}
			return ""
		},
		took: func(_, after *meshv1.Canary) bool { return after.Status.Paused },
	},
	{
		name:  "resume",
		short: "Resume a paused rollout",
		applies: func(c *meshv1.Canary) string {
			if !c.Status.Paused {
				return "it is not paused"
			}
			return ""
		},
		took: func(_, after *meshv1.Canary) bool { return !after.Status.Paused },
	},
	{
		name:  "retry",
		short: "Roll out again the revision that was rolled back",
		applies: func(c *meshv1.Canary) string {
			if c.Status.Phase != meshv1.PhaseFailed || c.Status.LastFailedRevision == "" {
				return fmt.Sprintf("no revision was rolled back (phase %s)", orDash(string(c.Status.Phase)))
			}
			return ""
		},
		took: func(before, after *meshv1.Canary) bool {
			return before.Status.Phase == meshv1.PhaseFailed && (after.Status.Phase != meshv1.PhaseFailed || after.Status.LastFailedRevision == "")
		},
	},
	{
		name:  "confirm-deletion",
		short: "Let a Canary being deleted hand its target over with a revision that was not promoted",
		applies: func(c *meshv1.Canary) string {
			if c.DeletionTimestamp.IsZero() {
				return "it is not being deleted"
			}
			return ""
		},
		took: func(_, after *meshv1.Canary) bool {
			return after.Status.DeletionConfirmedRevision != "" && after.Status.DeletionConfirmedRevision == after.Status.CurrentRevision
		},
	},
}

// rolling: a rollout that promote and abort act on.
func rolling(p meshv1.CanaryPhase) bool {
	return p == meshv1.PhaseWaiting || p == meshv1.PhaseProgressing
}

type requestOptions struct {
	*rootOptions
	action  requestAction
	wait    bool
	timeout time.Duration
}

func (o *rootOptions) requestCommand(a requestAction) *cobra.Command {
	r := &requestOptions{rootOptions: o, action: a}
	cmd := &cobra.Command{
		Use:   a.name + " NAME",
		Short: a.short,
		Long: a.short + `.

The request is the annotation ` + meshv1.AnnotationRequest + `=` + a.name + `:<token> on the Canary,
set with a merge patch of its metadata only: GitOps tools do not revert it. canopy acts on
each distinct value once and records it in status.lastHandledRequest. With --wait the
command waits for that, and exits 1 when canopy ignored the request.` + policyRequestHelp(a.name),
		Example: fmt.Sprintf("  kubectl canopy %s reviews -n bookinfo\n  kubectl canopy %s reviews -n bookinfo --wait", a.name, a.name),
		Args:    exactlyOneName(a.name),
		RunE:    func(cmd *cobra.Command, args []string) error { return r.run(cmd.Context(), args[0]) },
	}
	cmd.Flags().BoolVar(&r.wait, "wait", false, "Wait until canopy has handled the request; exit 1 if it ignored it")
	cmd.Flags().DurationVar(&r.timeout, "timeout", 2*time.Minute, "How long --wait waits for canopy to handle the request")
	return cmd
}

func (r *requestOptions) run(ctx context.Context, name string) error {
	cl, err := r.client()
	if err != nil {
		return err
	}
	ns := r.namespace()
	if policy, ok := policyName(name); ok {
		return r.policyRequest(ctx, cl, client.ObjectKey{Namespace: ns, Name: policy})
	}
	key := client.ObjectKey{Namespace: ns, Name: name}
	before := &meshv1.Canary{}
	if err := cl.Get(ctx, key, before); err != nil {
		if apierrors.IsNotFound(err) {
			return notFound(ns, name)
		}
		return err
	}
	ep := r.paletteFor(r.streams.ErrOut)
	if before.Spec.Suspend {
		printLine(r.streams.ErrOut, ep.yellow(fmt.Sprintf("warning: %s/%s is suspended (spec.suspend): canopy handles no request until that is cleared", ns, name)))
	} else if why := r.action.applies(before); why != "" {
		printLine(r.streams.ErrOut, ep.yellow(fmt.Sprintf("warning: canopy will probably ignore %s on %s/%s: %s", r.action.name, ns, name, why)))
	}

	value := r.action.name + ":" + r.settings.token(r.now())
	if err := sendRequest(ctx, cl, before, value); err != nil {
		if apierrors.IsNotFound(err) {
			return notFound(ns, name)
		}
		return fmt.Errorf("requesting %s: %w", r.action.name, err)
	}
	printf(r.streams.Out, "%s requested for %s/%s (%s=%s)\n", r.action.name, ns, name, meshv1.AnnotationRequest, value)
	if !r.wait {
		return nil
	}
	return r.await(ctx, cl, before, value)
}

// sendRequest writes the request annotation with a merge patch of the Canary's or
// MeshPolicy's metadata only, which GitOps tools do not revert; the apiserver's error is
// returned as it is.
func sendRequest(ctx context.Context, cl client.Client, obj client.Object, value string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{meshv1.AnnotationRequest: value}}})
	if err != nil {
		return err
	}
	return cl.Patch(ctx, obj.DeepCopyObject().(client.Object), client.RawPatch(types.MergePatchType, patch))
}

// await waits until the controller recorded value as handled, then says whether it acted.
func (r *requestOptions) await(ctx context.Context, cl client.Client, before *meshv1.Canary, value string) error {
	key := client.ObjectKeyFromObject(before)
	return r.poll(ctx, "is the operator running? (kubectl get pods -A -l app.kubernetes.io/name=canopy)", func() (bool, error) {
		c := &meshv1.Canary{}
		err := cl.Get(ctx, key, c)
		switch {
		case err == nil && c.Status.LastHandledRequest == value:
			return true, r.outcome(ctx, cl, before, c, value)
		case err == nil && c.Annotations[meshv1.AnnotationRequest] != value:
			return true, failed("another request (%s) replaced this one before canopy handled it", c.Annotations[meshv1.AnnotationRequest])
		case apierrors.IsNotFound(err) && r.action.name == "confirm-deletion":
			printf(r.streams.Out, "canopy handled %s: %s/%s is gone\n", r.action.name, key.Namespace, key.Name)
			return true, nil
		case apierrors.IsNotFound(err):
			return true, fmt.Errorf("%s/%s was deleted before canopy handled the request", key.Namespace, key.Name)
		case err != nil && ctx.Err() == nil:
			return true, err
		}
		return false, nil
	})
}

// poll calls check every poll interval until it is done, --timeout passes (hint says what
// to look at then) or ctx ends.
func (r *requestOptions) poll(ctx context.Context, hint string, check func() (done bool, err error)) error {
	// A timer rather than a context deadline: requests made close to a deadline fail with
	// the client's rate limiter's error instead of a clean timeout.
	timeout := time.NewTimer(r.timeout)
	defer timeout.Stop()
	tick := time.NewTicker(r.settings.poll)
	defer tick.Stop()
	for {
		if done, err := check(); done {
			return err
		}
		select {
		case <-timeout.C:
			return &exitError{code: ExitError, msg: fmt.Sprintf("canopy did not handle the request within %s: %s", r.timeout, hint)}
		case <-ctx.Done():
			return &exitError{code: ExitError, msg: "interrupted before canopy handled the request"}
		case <-tick.C:
		}
	}
}

// outcome reports what the handled request did. The status shows most effects; a request
// canopy ignored leaves a Warning event that quotes it (the events are written before the
// status, but the recorder sends them asynchronously, hence a short wait for it).
func (r *requestOptions) outcome(ctx context.Context, cl client.Client, before, after *meshv1.Canary, value string) error {
	ref := after.Namespace + "/" + after.Name
	if r.action.took(before, after) {
		printf(r.streams.Out, "canopy handled %s: %s is %s\n", r.action.name, ref, phaseText(after))
		return nil
	}
	// An unreadable event list (RBAC) only costs the explanation: the request was handled.
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(200 * time.Millisecond) {
		if evs, err := canaryEvents(ctx, cl, after); err == nil {
			if e := ignoredEvent(evs, value); e != nil {
				return failed("canopy ignored %s on %s: %s", r.action.name, ref, e.Note)
			}
		}
	}
	printf(r.streams.Out, "canopy handled %s: %s is %s\n", r.action.name, ref, phaseText(after))
	return nil
}

func ignoredEvent(evs []eventsv1.Event, value string) *eventsv1.Event {
	quoted := fmt.Sprintf("%q", value)
	for i := range evs {
		if e := &evs[i]; e.Type == "Warning" && strings.Contains(e.Note, quoted) && strings.Contains(e.Note, "ignored") {
			return e
		}
	}
	return nil
}
