package providers

import "context"

// Sample is one series of an instant vector: its labels and value.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// VectorProvider runs instant queries whose answer is several series, e.g. one per caller.
type VectorProvider interface {
	// QueryVector returns the series the query evaluates to now; an empty vector is no
	// error. Any failure is an *Error.
	QueryVector(ctx context.Context, query string) ([]Sample, error)
}
