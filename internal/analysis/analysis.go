// Package analysis measures a Canary's health checks through metric providers and turns every
// measurement, or the failure to make one, into an outcome.
package analysis

import (
	"context"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// Analyzer runs a Canary's checks. It never returns an error: a provider that cannot be
// reached, a query that times out or returns nothing are outcomes, not errors, and none of
// them is ever a pass. Each result has Name, Outcome, Value, Threshold, Message and
// LastMeasured set; HoldingSince is the progression's business and is left nil.
type Analyzer interface {
	Run(ctx context.Context, canary *meshv1.Canary) []meshv1.CheckStatus
}
