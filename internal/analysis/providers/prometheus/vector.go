package prometheus

import (
	"context"
	"encoding/json"

	"canopy.dev/canopy/internal/analysis/providers"
)

var _ providers.VectorProvider = (*Client)(nil)

// maxSeries bounds the series QueryVector returns; a query answering more is refused.
const maxSeries = 1000

// QueryVector runs an instant query and returns every series of its vector.
func (c *Client) QueryVector(ctx context.Context, query string) ([]providers.Sample, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, body, err := c.exchange(ctx, query)
	if err != nil {
		return nil, err
	}
	raw, err := readData(resp, body)
	if err != nil {
		return nil, err
	}
	var data queryData
	if err := json.Unmarshal(raw, &data); err != nil {
		return nil, providers.Errorf(providers.Other, "decoding the query result: %w", err)
	}
	if data.ResultType != "vector" {
		return nil, providers.Errorf(providers.BadQuery, "the query returned a %s, want a vector", data.ResultType)
	}
	var samples []vectorSample
	if err := json.Unmarshal(data.Result, &samples); err != nil {
		return nil, providers.Errorf(providers.Other, "decoding a vector: %w", err)
	}
	if len(samples) > maxSeries {
		return nil, providers.Errorf(providers.BadQuery, "the query returned %d series, more than %d: aggregate it", len(samples), maxSeries)
	}
	out := make([]providers.Sample, 0, len(samples))
	for _, s := range samples {
		if s.Value == nil {
			return nil, providers.Errorf(providers.BadQuery, "a series without a number (a native histogram?)")
		}
		v, err := parseSample(s.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, providers.Sample{Labels: s.Metric, Value: v})
	}
	return out, nil
}
