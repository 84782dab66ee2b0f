package providers

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
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"canopy.dev/canopy/internal/hooks"
)

// MaxResponseBytes bounds what is read of an answer: a check needs one number, and a query
// returning millions of series must not take the operator's memory with it.
const MaxResponseBytes = 8 << 20

// NewTransport returns a transport with cfg's TLS settings whose every connection, when cfg
// has a URL policy, goes to an address the policy allows. Every provider dials through one.
func NewTransport(cfg Config) (*http.Transport, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(cfg.Credentials.CA) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.Credentials.CA) {
			return nil, errors.New("the CA bundle holds no PEM certificate")
		}
		tlsConfig.RootCAs = pool
	}
	// The user asked for it on the MetricTemplate, for a provider with a self-signed
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

// NewHTTPClient is the client every provider queries with: it follows no redirect, since a
// redirect could lead anywhere (the metadata service, the API server) and its answer is not
// the provider's.
func NewHTTPClient(t http.RoundTripper) *http.Client {
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// maxTransports bounds a TransportCache; past it the cache starts over, which costs only
// new connections.
const maxTransports = 64

// TransportCache shares one transport per TLS configuration and URL policy, so that checks
// run every interval reuse their connections instead of opening new ones.
type TransportCache struct {
	mu         sync.Mutex
	transports map[transportKey]*http.Transport
}

type transportKey struct {
	ca       [sha256.Size]byte
	insecure bool
	policy   *hooks.Policy
}

// Get returns the cached transport for cfg's TLS settings and policy, building it once.
func (c *TransportCache) Get(cfg Config) (*http.Transport, error) {
	key := transportKey{insecure: cfg.InsecureSkipVerify, policy: cfg.URLPolicy}
	if len(cfg.Credentials.CA) > 0 {
		key.ca = sha256.Sum256(cfg.Credentials.CA)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.transports[key]; ok {
		return t, nil
	}
	t, err := NewTransport(cfg)
	if err != nil {
		return nil, err
	}
	if c.transports == nil || len(c.transports) >= maxTransports {
		for k, old := range c.transports {
			old.CloseIdleConnections()
			delete(c.transports, k)
		}
		c.transports = map[transportKey]*http.Transport{}
	}
	c.transports[key] = t
	return t, nil
}

// Len is the number of transports cached.
func (c *TransportCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.transports)
}

// ClassifyTransportError tells a query that timed out from a server that cannot be reached
// from everything else; backend names the provider ("Prometheus", "Datadog"). ctx is the
// query's own context. The message names neither the URL nor the address dialed
// (hooks.SafeTransportError): it lands in the Canary's status, which the tenant reads.
func ClassifyTransportError(ctx context.Context, backend string, err error) error {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var netErr net.Error
	var refused *hooks.NotAllowedError
	safe := hooks.SafeTransportError(err)
	switch {
	case errors.As(err, &refused):
		return &Error{Kind: Other, Err: fmt.Errorf("the metric provider's %w", refused)}
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return Errorf(Timeout, "the query timed out: %w", safe)
	case errors.Is(err, context.Canceled):
		return Errorf(Other, "the query was cancelled: %w", safe)
	case errors.As(err, &dnsErr):
		return Errorf(Unreachable, "cannot reach %s: %w", backend, safe)
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(Unreachable, "cannot reach %s: %w", backend, safe)
	case errors.As(err, &netErr) && netErr.Timeout():
		return Errorf(Timeout, "the query timed out: %w", safe)
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return Errorf(Unreachable, "cannot reach %s: %w", backend, safe)
	default:
		return Errorf(Other, "querying %s: %w", backend, safe)
	}
}

// Do sends req with client and reads at most MaxResponseBytes of the answer; failures are
// classified for backend.
func Do(ctx context.Context, client *http.Client, backend string, req *http.Request) (*http.Response, []byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, ClassifyTransportError(ctx, backend, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, nil, ClassifyTransportError(ctx, backend, fmt.Errorf("reading the answer: %w", err))
	}
	if len(body) > MaxResponseBytes {
		return nil, nil, Errorf(BadQuery, "the answer is larger than %d bytes: aggregate the query to one value", MaxResponseBytes)
	}
	return resp, body, nil
}

// Get sends a GET of endpoint with params as its query and header (besides Accept:
// application/json) through Do.
func Get(ctx context.Context, client *http.Client, backend string, endpoint *url.URL, params url.Values, header http.Header) (*http.Response, []byte, error) {
	u := *endpoint
	u.RawQuery = params.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, Errorf(Other, "building the request: %w", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	return Do(ctx, client, backend, req)
}

// ParseAddress checks a provider's base URL: http or https, a host, and no credentials
// in it (they belong in a Secret). backend names the provider in errors.
func ParseAddress(backend, address string) (*url.URL, error) {
	if address == "" {
		return nil, fmt.Errorf("no %s address", backend)
	}
	base, err := url.Parse(address)
	if err != nil {
		return nil, fmt.Errorf("the %s address: %w", backend, err)
	}
	if base.Scheme != "http" && base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("the %s address %q is not an http:// or https:// URL", backend, base.Redacted())
	}
	if base.User != nil {
		return nil, fmt.Errorf("the %s address %q carries credentials: put them in a Secret", backend, base.Redacted())
	}
	return base, nil
}

// SetAuth sets the Secret's bearer token or basic auth on req, if it has either.
func SetAuth(req *http.Request, c Credentials) {
	switch {
	case c.BearerToken != "":
		req.Header.Set("Authorization", "Bearer "+c.BearerToken)
	case c.Username != "":
		req.SetBasicAuth(c.Username, c.Password)
	}
}

// AuthHeader is the header SetAuth sets, for Get.
func AuthHeader(c Credentials) http.Header {
	req := &http.Request{Header: http.Header{}}
	SetAuth(req, c)
	return req.Header
}

// StatusKind is the kind of an HTTP error status with no better explanation: 400 and 422
// are a bad query, 504 a timeout, 502 and 503 an unreachable backend.
func StatusKind(code int) Kind {
	switch code {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return BadQuery
	case http.StatusGatewayTimeout:
		return Timeout
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return Unreachable
	}
	return Other
}

// DescribeAnswer says what an answer that is not the provider's API answer was, without its
// content: the address may be any service the operator can reach, and its answer none of the
// tenant's business.
func DescribeAnswer(backend string, resp *http.Response, body []byte) string {
	ct := resp.Header.Get("Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	if len(ct) > 64 || strings.IndexFunc(ct, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		ct = "an unusual content type"
	}
	if ct == "" {
		ct = "no content type"
	}
	article := "a"
	if backend != "" && strings.ContainsRune("AEIOU", rune(backend[0])) {
		article = "an"
	}
	return fmt.Sprintf("not %s %s API answer (%d bytes, %s)", article, backend, len(body), ct)
}

// QuoteError is a provider's own error message (a parse error, a bad metric name), bounded.
func QuoteError(msg string) string {
	const limit = 256
	if len(msg) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "..."
	}
	return strconv.Quote(msg)
}

// DefaultTimeout bounds a query whose configuration sets no timeout.
const DefaultTimeout = 5 * time.Second

// Base checks that cfg is of type typ and returns its base URL (ParseAddress) and its
// timeout, DefaultTimeout when unset. backend names the provider in errors.
func Base(cfg Config, typ, backend string) (*url.URL, time.Duration, error) {
	if cfg.Type != typ {
		return nil, 0, fmt.Errorf("provider type %q is not %q", cfg.Type, typ)
	}
	base, err := ParseAddress(backend, cfg.Address)
	if err != nil {
		return nil, 0, err
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return base, timeout, nil
}

// StatusError is a non-2xx answer of backend as an error of the status' kind, quoting own,
// the backend's own error message, when its answer had one, else describing the answer.
func StatusError(backend string, resp *http.Response, body []byte, own string) error {
	msg := DescribeAnswer(backend, resp, body)
	if own != "" {
		msg = QuoteError(own)
	}
	kind := StatusKind(resp.StatusCode)
	if resp.StatusCode == http.StatusTooManyRequests {
		// Rate limited: the backend is there but will not answer now.
		kind = Unreachable
	}
	return Errorf(kind, "answer %d from %s: %s", resp.StatusCode, backend, msg)
}
