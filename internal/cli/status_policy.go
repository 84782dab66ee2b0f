package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// policyName reads "meshpolicy/NAME" (or mp/NAME): status of a MeshPolicy.
func policyName(name string) (string, bool) {
	kind, n, ok := strings.Cut(name, "/")
	switch strings.ToLower(kind) {
	case "meshpolicy", "meshpolicies", "mp", "meshpolicy.mesh.canopy.dev":
		return n, ok && n != ""
	}
	return "", false
}

// policyStatus prints a MeshPolicy's status: its rollout (what waits in dry-run, what it
// would deny, the plaintext clients), conditions and last events.
func (s *statusOptions) policyStatus(ctx context.Context, cl client.Client, key client.ObjectKey) error {
	p := &meshv1.MeshPolicy{}
	if err := cl.Get(ctx, key, p); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("no MeshPolicy %s in namespace %s; list them with kubectl get meshpolicies -A", key.Name, key.Namespace)
		}
		return err
	}
	list := &eventsv1.EventList{}
	sel := fields.SelectorFromSet(fields.Set{"regarding.kind": "MeshPolicy", "regarding.name": p.Name})
	evErr := cl.List(ctx, list, client.InNamespace(p.Namespace), client.MatchingFieldsSelector{Selector: sel})
	if evErr != nil {
		evErr = explain(evErr)
	}
	writePolicyStatus(s.streams.Out, p, list.Items, evErr, s.events, s.now(), s.palette())
	return nil
}

func writePolicyStatus(w io.Writer, pol *meshv1.MeshPolicy, evs []eventsv1.Event, evErr error, maxEvents int, now time.Time, p palette) {
	ready := "Unknown"
	if c := meta.FindStatusCondition(pol.Status.Conditions, meshv1.ConditionReady); c != nil {
		ready = fmt.Sprintf("Ready=%s (%s)", c.Status, c.Reason)
	}
	printf(w, "%s %s: %s\n", p.bold("MeshPolicy"), p.bold(pol.Namespace+"/"+pol.Name), ready)
	printf(w, "  %-10s %s\n", "Target", "Service "+pol.Spec.TargetRef.Name)
	ro := pol.Status.Rollout
	switch {
	case pol.Spec.Rollout == nil:
		printf(w, "  %-10s %s\n", "Rollout", "none: changes are enforced at once (set spec.rollout to analyse them first)")
	case ro == nil:
		printf(w, "  %-10s %s\n", "Rollout", "not analysed yet")
	default:
		phase := ro.Phase
		switch phase {
		case meshv1.PolicyPhaseHeld:
			phase = p.yellow(phase)
		case meshv1.PolicyPhaseEnforced:
			phase = p.green(phase)
		}
		printf(w, "  %-10s %s: %s\n", "Rollout", phase, ro.Message)
		if ro.Reason != "" {
			printf(w, "  %-10s %s\n", "Reason", ro.Reason)
		}
		if ro.DryRunSince != nil && ro.Phase != meshv1.PolicyPhaseEnforced {
			printf(w, "  %-10s %s\n", "Since", ago(ro.DryRunSince, now))
		}
		if ro.Phase != meshv1.PolicyPhaseEnforced {
			printf(w, "  %-10s %s\n", "Next", fmt.Sprintf("kubectl canopy promote meshpolicy/%s -n %s (enforce now), or abort (keep the rules in force)", pol.Name, pol.Namespace))
		}
	}
	if ro != nil && len(ro.DeniedCalls) > 0 {
		printf(w, "\n%s\n", p.bold("Would deny"))
		rows := make([][]cell, 0, len(ro.DeniedCalls))
		for _, d := range ro.DeniedCalls {
			rows = append(rows, []cell{plain(d.SourcePrincipal), plain(orDash(d.Method)), plain(orDash(d.Path)), plain(strconv.FormatInt(d.Count, 10))})
		}
		writeTable(w, []string{"SOURCE PRINCIPAL", "METHOD", "PATH", "REQUESTS"}, rows, "  ")
	}
	if ro != nil && len(ro.PlaintextClients) > 0 {
		printf(w, "\n%s\n", p.bold("Plaintext clients"))
		rows := make([][]cell, 0, len(ro.PlaintextClients))
		for _, c := range ro.PlaintextClients {
			rows = append(rows, []cell{plain(c.Namespace), plain(c.Workload), plain(strconv.FormatInt(c.Count, 10))})
		}
		writeTable(w, []string{"NAMESPACE", "WORKLOAD", "REQUESTS"}, rows, "  ")
	}
	writeConditions(w, pol.Status.Conditions, now, p)
	writeEvents(w, evs, evErr, maxEvents, now, p)
}
