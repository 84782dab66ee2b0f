// Package hooks calls a Canary's webhooks and decides whether their URLs may be called at all.
package hooks

import (
	"context"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// Payload is the JSON body POSTed to every webhook.
type Payload struct {
	Name      string             `json:"name"`
	Namespace string             `json:"namespace"`
	Phase     meshv1.CanaryPhase `json:"phase"`
	Weight    int32              `json:"weight"`
	Revision  string             `json:"revision,omitempty"`
	Type      meshv1.WebhookType `json:"type"`
	Message   string             `json:"message,omitempty"`
	Metadata  map[string]string  `json:"metadata,omitempty"`
}

// Caller calls one webhook, with its timeout and retries. A nil error means the hook
// answered 2xx (for a confirm-* gate: the gate is open).
type Caller interface {
	Call(ctx context.Context, hook meshv1.CanaryWebhook, payload Payload) error
}
