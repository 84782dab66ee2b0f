package controllers

import (
	"context"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// RolloutObserver is told of every Canary status the reconciler wrote, with the status it
// replaced: metrics count the transitions, notifications announce them. It is called only
// after the write succeeded, so a reconcile retried after a failed write reports nothing
// twice, and a restarted operator, whose first reconcile finds the transition already
// written, reports nothing again. It must not block: the reconcile waits for it.
type RolloutObserver interface {
	ObserveRollout(ctx context.Context, before *meshv1.CanaryStatus, after *meshv1.Canary)
}

func (r *CanaryReconciler) observed(ctx context.Context, before *meshv1.CanaryStatus, after *meshv1.Canary) {
	for _, o := range r.Observers {
		o.ObserveRollout(ctx, before, after)
	}
}

// CanaryForgetter is an observer that keeps something per Canary (metric series): it is told
// when a Canary is gone, once canopy removed its finalizer.
type CanaryForgetter interface {
	ForgetCanary(namespace, name string)
}

func (r *CanaryReconciler) forget(c *meshv1.Canary) {
	for _, o := range r.Observers {
		if f, ok := o.(CanaryForgetter); ok {
			f.ForgetCanary(c.Namespace, c.Name)
		}
	}
}
