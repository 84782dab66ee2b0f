package prometheus

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"

	"canopy.dev/canopy/internal/analysis/providers"
)

// newTransport returns a transport with cfg's TLS settings.
func newTransport(cfg providers.Config) (*http.Transport, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(cfg.Credentials.CA) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.Credentials.CA) {
			return nil, errors.New("the CA bundle holds no PEM certificate")
		}
		tlsConfig.RootCAs = pool
	}
	// The user asked for it on the MetricTemplate, for a Prometheus with a self-signed
	// certificate and no CA to give.
	tlsConfig.InsecureSkipVerify = cfg.InsecureSkipVerify //nolint:gosec // explicit opt-in per MetricTemplate
	t.TLSClientConfig = tlsConfig
	return t, nil
}

// maxTransports bounds the factory's cache; past it the cache starts over, which costs
// only new connections.
const maxTransports = 64

// Factory builds Clients that share one transport per TLS configuration, so that checks
// run every interval reuse their connections instead of opening new ones.
type Factory struct {
	mu         sync.Mutex
	transports map[transportKey]*http.Transport
}

type transportKey struct {
	ca       [sha256.Size]byte
	insecure bool
}

// NewFactory returns an empty Factory.
func NewFactory() *Factory {
	return &Factory{transports: map[transportKey]*http.Transport{}}
}

// New builds a Client for cfg. Its signature is a providers.Factory:
//
//	analysis.New(reader, prometheus.NewFactory().New, opts)
func (f *Factory) New(cfg providers.Config) (providers.Provider, error) {
	t, err := f.transport(cfg)
	if err != nil {
		return nil, err
	}
	return newClient(cfg, t)
}

func (f *Factory) transport(cfg providers.Config) (*http.Transport, error) {
	key := transportKey{insecure: cfg.InsecureSkipVerify}
	if len(cfg.Credentials.CA) > 0 {
		key.ca = sha256.Sum256(cfg.Credentials.CA)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.transports[key]; ok {
		return t, nil
	}
	t, err := newTransport(cfg)
	if err != nil {
		return nil, err
	}
	if len(f.transports) >= maxTransports {
		for k, old := range f.transports {
			old.CloseIdleConnections()
			delete(f.transports, k)
		}
	}
	f.transports[key] = t
	return t, nil
}

// classifyTransportError tells a query that timed out from a server that cannot be
// reached from everything else. ctx is the query's own context.
func classifyTransportError(ctx context.Context, err error) error {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var netErr net.Error
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return providers.Errorf(providers.Timeout, "the query timed out: %w", err)
	case errors.Is(err, context.Canceled):
		return providers.Errorf(providers.Other, "the query was cancelled: %w", err)
	case errors.As(err, &dnsErr):
		return providers.Errorf(providers.Unreachable, "cannot reach Prometheus: %w", err)
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return providers.Errorf(providers.Unreachable, "cannot reach Prometheus: %w", err)
	case errors.As(err, &netErr) && netErr.Timeout():
		return providers.Errorf(providers.Timeout, "the query timed out: %w", err)
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return providers.Errorf(providers.Unreachable, "cannot reach Prometheus: %w", err)
	default:
		return providers.Errorf(providers.Other, "querying Prometheus: %w", err)
	}
}

// String keeps a Client's credentials out of logs that print it.
func (c *Client) String() string {
	return fmt.Sprintf("prometheus(%s)", c.endpoint.Redacted())
}
