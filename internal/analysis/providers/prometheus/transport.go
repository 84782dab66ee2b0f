package prometheus

import (
	"context"
	"fmt"

	"canopy.dev/canopy/internal/analysis/providers"
)

// Factory builds Clients that share one transport per TLS configuration, so that checks
// run every interval reuse their connections instead of opening new ones.
type Factory struct {
	transports providers.TransportCache
}

// NewFactory returns an empty Factory.
func NewFactory() *Factory { return &Factory{} }

// New builds a Client for cfg. Its signature is a providers.Factory:
//
//	analysis.New(reader, prometheus.NewFactory().New, opts)
func (f *Factory) New(cfg providers.Config) (providers.Provider, error) {
	return NewWith(cfg, &f.transports)
}

// NewWith builds a Client for cfg on a transport of cache.
func NewWith(cfg providers.Config, cache *providers.TransportCache) (*Client, error) {
	t, err := cache.Get(cfg)
	if err != nil {
		return nil, err
	}
	return newClient(cfg, t)
}

func classifyTransportError(ctx context.Context, err error) error {
	return providers.ClassifyTransportError(ctx, "Prometheus", err)
}

// String keeps a Client's credentials out of logs that print it.
func (c *Client) String() string {
	return fmt.Sprintf("prometheus(%s)", c.endpoint.Redacted())
}
