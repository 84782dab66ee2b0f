package controllers

import "time"

// staleRetry is how soon a reconcile that met a stale cache looks again if the watch event
// that brings the awaited write (see apply.Writes) did not wake it first: a safety net, which
// the event almost always beats.
//
// Why wait rather than decide from what the write returned, which would be as correct: so
// that canopy has at most one write of an object that its watch has not delivered yet, and
// its writes go no faster than the apiserver hands them to its watchers. Deciding from the
// written object was tried and measured (docs/scaling.md, "Waiting for the watch").
const staleRetry = 2 * time.Second
