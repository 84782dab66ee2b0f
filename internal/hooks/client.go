package hooks

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/budget"
)

const (
	defaultTimeout = 10 * time.Second
	defaultRetries = 2
	defaultBackoff = 200 * time.Millisecond
	maxBackoff     = 2 * time.Second
	// maxBody is what is kept of an answer: enough for a gate to say why it is closed.
	maxBody = 1024
)

// ClientOptions tune a Client.
type ClientOptions struct {
	// Backoff is the wait before the first retry, doubled for each next one up to 2s
	// (default 200ms).
	Backoff time.Duration
	// RootCAs verify https webhooks; the system's when nil.
	RootCAs *x509.CertPool
	// UserAgent is sent with every call (default "canopy").
	UserAgent string
	// Secrets reads the Secrets of webhook headers (uncached: the manager's APIReader);
	// without it a webhook with a header is refused.
	Secrets client.Reader
	// Credentials decides where a header from a Secret may be sent; nil sends it nowhere.
	Credentials *CredentialPolicy
}

// Client is the Caller: it POSTs a webhook's payload, within the URL policy.
type Client struct {
	policy *Policy
	opts   ClientOptions
}

var _ Caller = (*Client)(nil)

// NewClient returns a Client that calls only the URLs policy allows. A nil policy is the
// default one: everything but loopback, link-local and metadata addresses.
func NewClient(policy *Policy, opts ClientOptions) *Client {
	if policy == nil {
		policy = &Policy{}
	}
	if opts.Backoff <= 0 {
		opts.Backoff = defaultBackoff
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "canopy"
	}
	return &Client{policy: policy, opts: opts}
}

// StatusError is a webhook that answered, but not 2xx. For a confirm-* gate this is the
// normal "not yet"; Body says why, if the hook said.
type StatusError struct {
	StatusCode int
	Body       string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("answered %d", e.StatusCode)
	}
	return fmt.Sprintf("answered %d: %s", e.StatusCode, e.Body)
}

// Call POSTs payload to the hook, retrying failed attempts (no answer, 408, 429, 5xx)
// up to hook.Retries times with a growing backoff. Every attempt dials the addresses the
// policy checked when the call began.
//
// The budget ctx carries (budget.NewContext, a Canary's reconcile) bounds the whole call:
// each attempt's timeout is lowered to the operator's ceiling and to what is left, retries
// stop when nothing is left for one, and a call that starts with the budget spent is not
// made (budget.ErrNotRun). Such an error wraps budget.ErrSpent.
func (c *Client) Call(ctx context.Context, hook meshv1.CanaryWebhook, payload Payload) error {
	timeout, err := Timeout(hook)
	if err != nil {
		return err
	}
	b := budget.FromContext(ctx)
	if b.Spent() {
		return fmt.Errorf("webhook %s: %w", hook.Name, budget.ErrNotRun)
	}
	// What is not granted attempt by attempt (reading the header's Secret, resolving the
	// host) ends with the budget too.
	ctx, cancel := b.Bound(ctx)
	defer cancel()
	retries := defaultRetries
	if hook.Retries != nil {
		retries = max(int(*hook.Retries), 0)
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("webhook %s: encoding the payload: %w", hook.Name, err)
	}
	header, err := c.header(ctx, hook, payload.Namespace)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", hook.Name, err)
	}
	if err := c.post(ctx, hook.URL, body, timeout, retries, header); err != nil {
		return fmt.Errorf("webhook %s: %w", hook.Name, err)
	}
	return nil
}

// Timeout is the timeout of one attempt the hook asks for (default 10s).
func Timeout(hook meshv1.CanaryWebhook) (time.Duration, error) {
	if hook.Timeout == "" {
		return defaultTimeout, nil
	}
	d, err := time.ParseDuration(string(hook.Timeout))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("webhook %s: timeout %q is not a positive duration", hook.Name, hook.Timeout)
	}
	return d, nil
}

// header is the hook's header from its Secret in namespace, within the credential policy.
func (c *Client) header(ctx context.Context, hook meshv1.CanaryWebhook, namespace string) (http.Header, error) {
	h := hook.Header
	if h == nil {
		return nil, nil
	}
	if err := c.opts.Credentials.CheckHost(hook.URL); err != nil {
		return nil, fmt.Errorf("header.secretKeyRef: %w", err)
	}
	if c.opts.Secrets == nil {
		return nil, errors.New("header.secretKeyRef: this caller reads no Secrets")
	}
	key := types.NamespacedName{Namespace: namespace, Name: h.SecretKeyRef.Name}
	secret, err := ReadSecret(ctx, c.opts.Secrets, key)
	if err != nil {
		return nil, fmt.Errorf("header.secretKeyRef: %w", err)
	}
	value, ok := secret.Data[h.SecretKeyRef.Key]
	if !ok {
		return nil, fmt.Errorf("header.secretKeyRef: Secret %s has no key %q", key, h.SecretKeyRef.Key)
	}
	v := strings.TrimRight(string(value), "\r\n")
	if v == "" || strings.ContainsAny(v, "\r\n\x00") {
		return nil, fmt.Errorf("header.secretKeyRef: the value of key %q of Secret %s is empty or has line breaks", h.SecretKeyRef.Key, key)
	}
	return http.Header{http.CanonicalHeaderKey(h.Name): {v}}, nil
}

// Post POSTs a JSON body to rawURL within the policy, with Call's retries and backoff; a
// timeout of 0 is the default 10s. Notifications use it for their own payloads.
func (c *Client) Post(ctx context.Context, rawURL string, body []byte, timeout time.Duration, retries int) error {
	return c.post(ctx, rawURL, body, timeout, retries, nil)
}

func (c *Client) post(ctx context.Context, rawURL string, body []byte, timeout time.Duration, retries int, header http.Header) error {
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	target, err := c.policy.Check(ctx, rawURL)
	if err != nil {
		return err
	}

	transport := c.pinnedTransport(target)
	defer transport.CloseIdleConnections()
	httpClient := &http.Client{
		Transport: transport,
		// A redirect could lead anywhere the policy would refuse: it is an answer, not 2xx.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	b := budget.FromContext(ctx)
	backoff := c.opts.Backoff
	for attempt := 0; ; attempt++ {
		g, spent := b.Grant(budget.Webhook, timeout)
		if spent != nil && err == nil {
			return spent
		}
		if spent != nil {
			return fmt.Errorf("%w (after %d attempts: %w)", budget.ErrSpent, attempt, err)
		}
		err = c.attempt(ctx, httpClient, target, body, g.Timeout, header)
		if err == nil {
			return nil
		}
		if g.Cut && errors.Is(err, context.DeadlineExceeded) {
			// The budget ran out during the attempt: the hook's own timeout never came.
			return fmt.Errorf("%w (%s): %w", err, g.CutNote(), budget.ErrSpent)
		}
		if attempt >= retries || !retryable(err) || ctx.Err() != nil {
			break
		}
		if b != nil && b.Remaining() <= backoff {
			return fmt.Errorf("%w (no retry after %d attempts: %w)", err, attempt+1, budget.ErrSpent)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (after %d attempts: %w)", ctx.Err(), attempt+1, err)
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
	return err
}

func (c *Client) attempt(ctx context.Context, httpClient *http.Client, target *Target, body []byte, timeout time.Duration, header http.Header) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target.URL.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", c.opts.UserAgent)
	resp, err := httpClient.Do(req)
	if err != nil {
		return SafeTransportError(err)
	}
	defer func() { _ = resp.Body.Close() }()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	return &StatusError{StatusCode: resp.StatusCode, Body: printable(answer)}
}

// printable keeps an answer fit for a status message and an event: valid UTF-8, no
// control characters, runs of white space as one space.
func printable(b []byte) string {
	s := strings.ToValidUTF8(string(b), "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

func retryable(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.StatusCode >= 500 || se.StatusCode == http.StatusRequestTimeout || se.StatusCode == http.StatusTooManyRequests
	}
	return true
}

// pinnedTransport dials only target's checked addresses, whatever the name resolves to
// by now, and no proxy: the policy was decided on those addresses.
func (c *Client) pinnedTransport(target *Target) *http.Transport {
	port := target.URL.Port()
	if port == "" {
		port = "80"
		if target.URL.Scheme == "https" {
			port = "443"
		}
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	addrs := target.Addrs
	return &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialAny(ctx, dialer, network, addrs, mustPort(port))
		},
		// TLS still verifies the URL's host name: only the address is pinned.
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.opts.RootCAs},
		TLSHandshakeTimeout: 10 * time.Second,
		DisableKeepAlives:   true,
		ForceAttemptHTTP2:   true,
	}
}

func mustPort(s string) uint16 {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0
	}
	return uint16(p)
}
