package analysis

import (
	"context"
	"errors"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/analysis/providers"
)

// QueryVector runs an instant query returning several series against the provider p
// names for an object of namespace (owner and path name it in messages), resolved as a
// Canary's analysis.provider is: the operator's default where it names no address, the
// URL policy for an address, credentials from a Secret of namespace.
func (r *Runner) QueryVector(ctx context.Context, namespace, owner, path string, p *meshv1.MetricProvider, query string) ([]providers.Sample, error) {
	if p == nil {
		p = &meshv1.MetricProvider{}
	}
	cfg, fail := r.providerConfig(ctx, namespace, owner, path, p)
	if fail != nil {
		return nil, fail
	}
	prov, err := r.factory(cfg)
	if err != nil {
		return nil, err
	}
	vp, ok := prov.(providers.VectorProvider)
	if !ok {
		return nil, errors.New("the provider cannot answer a query with several series")
	}
	return vp.QueryVector(ctx, query)
}
