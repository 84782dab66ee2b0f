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
	"time"

	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/hooks"
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
	if cfg.URLPolicy != nil {
		// Every connection goes to an address the policy allows for the host, and never
		// through a proxy, which would dial for us.
		t.Proxy = nil
		t.DialContext = cfg.URLPolicy.DialContext(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second})
	}
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
	policy   *hooks.Policy
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
	key := transportKey{insecure: cfg.InsecureSkipVerify, policy: cfg.URLPolicy}
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
// reached from everything else. ctx is the query's own context. The message names neither
// the URL nor the address dialed (hooks.SafeTransportError): it lands in the Canary's
// status, which the tenant reads.
func classifyTransportError(ctx context.Context, err error) error {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var netErr net.Error
	var refused *hooks.NotAllowedError
	safe := hooks.SafeTransportError(err)
	switch {
	case errors.As(err, &refused):
		return &providers.Error{Kind: providers.Other, Err: fmt.Errorf("the metric provider's %w", refused)}
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return providers.Errorf(providers.Timeout, "the query timed out: %w", safe)
	case errors.Is(err, context.Canceled):
		return providers.Errorf(providers.Other, "the query was cancelled: %w", safe)
	case errors.As(err, &dnsErr):
		return providers.Errorf(providers.Unreachable, "cannot reach Prometheus: %w", safe)
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return providers.Errorf(providers.Unreachable, "cannot reach Prometheus: %w", safe)
	case errors.As(err, &netErr) && netErr.Timeout():
		return providers.Errorf(providers.Timeout, "the query timed out: %w", safe)
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return providers.Errorf(providers.Unreachable, "cannot reach Prometheus: %w", safe)
	default:
		return providers.Errorf(providers.Other, "querying Prometheus: %w", safe)
	}
}

// String keeps a Client's credentials out of logs that print it.
func (c *Client) String() string {
	return fmt.Sprintf("prometheus(%s)", c.endpoint.Redacted())
}
