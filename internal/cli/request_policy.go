package cli

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// policyRequest sends promote or abort to a MeshPolicy whose change waits (spec.rollout):
// the same annotation as a Canary's, recorded in status.rollout.lastHandledRequest.
func (r *requestOptions) policyRequest(ctx context.Context, cl client.Client, key client.ObjectKey) error {
	if r.action.name != "promote" && r.action.name != "abort" {
		return fmt.Errorf("%s applies to Canaries only: a MeshPolicy's rollout takes promote and abort", r.action.name)
	}
	p := &meshv1.MeshPolicy{}
	if err := cl.Get(ctx, key, p); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("no MeshPolicy %s in namespace %s; list them with kubectl get meshpolicies -A", key.Name, key.Namespace)
		}
		return err
	}
	ep := r.paletteFor(r.streams.ErrOut)
	switch ro := p.Status.Rollout; {
	case p.Spec.Rollout == nil:
		printLine(r.streams.ErrOut, ep.yellow(fmt.Sprintf("warning: MeshPolicy %s/%s has no spec.rollout: its changes are enforced at once, canopy ignores %s", key.Namespace, key.Name, r.action.name)))
	case ro == nil || ro.Phase == meshv1.PolicyPhaseEnforced:
		printLine(r.streams.ErrOut, ep.yellow(fmt.Sprintf("warning: no change of MeshPolicy %s/%s waits: canopy will probably ignore %s", key.Namespace, key.Name, r.action.name)))
	}
	value := r.action.name + ":" + r.settings.token(r.now())
	if err := sendRequest(ctx, cl, p, value); err != nil {
		return fmt.Errorf("requesting %s: %w", r.action.name, err)
	}
	ref := "meshpolicy/" + key.Name
	printf(r.streams.Out, "%s requested for %s/%s (%s=%s)\n", r.action.name, key.Namespace, ref, meshv1.AnnotationRequest, value)
	if !r.wait {
		return nil
	}
	return r.poll(ctx, "is the operator running, and does the policy have spec.rollout?", func() (bool, error) {
		err := cl.Get(ctx, key, p)
		switch {
		case err == nil && p.Status.Rollout != nil && p.Status.Rollout.LastHandledRequest == value:
			printf(r.streams.Out, "canopy handled %s: %s/%s is %s: %s\n", r.action.name, key.Namespace, ref, p.Status.Rollout.Phase, p.Status.Rollout.Message)
			return true, nil
		case err == nil && p.Annotations[meshv1.AnnotationRequest] != value:
			return true, failed("another request (%s) replaced this one before canopy handled it", p.Annotations[meshv1.AnnotationRequest])
		case apierrors.IsNotFound(err):
			return true, fmt.Errorf("%s/%s was deleted before canopy handled the request", key.Namespace, ref)
		case err != nil && ctx.Err() == nil:
			return true, err
		}
		return false, nil
	})
}

// policyRequestHelp is what the help of promote and abort says of MeshPolicies.
func policyRequestHelp(action string) string {
	switch action {
	case "promote":
		return `

promote meshpolicy/NAME enforces a MeshPolicy's change that waits in dry-run or is held
(spec.rollout) without the rest of its analysis window.`
	case "abort":
		return `

abort meshpolicy/NAME drops a MeshPolicy's change in dry-run (spec.rollout): the rules
in force stay until the spec changes or a promote is requested.`
	}
	return ""
}
