package metrics

import (
	"context"
	"errors"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/hooks"
)

// InstrumentCaller counts every call of next in canopy_webhook_calls_total.
func InstrumentCaller(next hooks.Caller) hooks.Caller {
	return instrumented{next: next}
}

type instrumented struct{ next hooks.Caller }

func (i instrumented) Call(ctx context.Context, hook meshv1.CanaryWebhook, payload hooks.Payload) error {
	err := i.next.Call(ctx, hook, payload)
	webhookCalls.WithLabelValues(string(hook.Type), CallOutcome(err)).Inc()
	return err
}

// CallOutcome classifies a webhook call's error: success (2xx), rejected (answered, but not
// 2xx: for a gate, "not yet"), refused (the URL policy refused the address) or error (no
// answer: timeout, connection refused, bad configuration).
func CallOutcome(err error) string {
	var status *hooks.StatusError
	var refused *hooks.NotAllowedError
	switch {
	case err == nil:
		return "success"
	case errors.As(err, &status):
		return "rejected"
	case errors.As(err, &refused):
		return "refused"
	default:
		return "error"
	}
}
