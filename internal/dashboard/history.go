package dashboard

import "k8s.io/apimachinery/pkg/types"

// ring is a Canary's history, bounded: the last keep weight changes and measurements.
type ring struct {
	uid     types.UID
	keep    int
	weights []WeightPoint
	checks  []CheckPoint
}

// weight records the weight from p.T on, unless it did not change.
func (r *ring) weight(p WeightPoint) {
	if n := len(r.weights); n > 0 && r.weights[n-1].Weight == p.Weight && r.weights[n-1].Phase == p.Phase {
		return
	}
	r.weights = bounded(append(r.weights, p), r.keep)
}

func (r *ring) check(p CheckPoint) {
	r.checks = bounded(append(r.checks, p), r.keep)
}

func bounded[T any](s []T, keep int) []T {
	if keep > 0 && len(s) > keep {
		return append(s[:0:0], s[len(s)-keep:]...)
	}
	return s
}
