package hooks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
)

// TransportError is a call that got no answer. Its message says what went wrong in words
// that name no address and no URL: it lands in a Canary's status and events, which the
// tenant reads, and a dial error quotes the address a name resolved to, a URL its query
// string (tokens). Unwrap gives the cause, for errors.Is and the operator's own logic.
type TransportError struct {
	Reason string
	Err    error
}

func (e *TransportError) Error() string { return e.Reason }
func (e *TransportError) Unwrap() error { return e.Err }

// SafeTransportError wraps a failed request's error in a TransportError; a refusal of the
// URL policy (dialing checks it again) is returned as is, being already fit to show.
func SafeTransportError(err error) error {
	var na *NotAllowedError
	if errors.As(err, &na) {
		return na
	}
	return &TransportError{Reason: describeTransportError(err), Err: err}
}

func describeTransportError(err error) string {
	var dnsErr *net.DNSError
	var netErr net.Error
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	var badCert x509.CertificateInvalidError
	var notTLS tls.RecordHeaderError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in time (timed out)"
	case errors.Is(err, context.Canceled):
		return "the call was cancelled"
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return "the host name does not resolve (no such host)"
	case errors.As(err, &dnsErr):
		return "resolving the host name failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to the host"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection was closed before an answer"
	case errors.As(err, &unknownCA):
		return "TLS: the server's certificate is not signed by a trusted CA"
	case errors.As(err, &badHost):
		return "TLS: the server's certificate is not valid for the host name"
	case errors.As(err, &badCert):
		return "TLS: the server's certificate is invalid or expired"
	case errors.As(err, &notTLS):
		return "TLS: the server does not speak TLS"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "no answer in time (timed out)"
	}
	return "the request failed"
}

// DialContext returns a dial function that lets a connection be made only to an address
// the policy allows for the host being dialed: it resolves the host, checks every address
// and dials those very addresses. Transports that reuse connections (metric providers,
// queried every interval) use it, so that the policy holds for each new connection.
func (p *Policy) DialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		// The scheme only names the default port, which addr already carries.
		target, err := p.Check(ctx, "http://"+net.JoinHostPort(host, port))
		if err != nil {
			return nil, err
		}
		return dialAny(ctx, d, network, target.Addrs, mustPort(port))
	}
}

// dialAny dials addrs in order until one answers.
func dialAny(ctx context.Context, d *net.Dialer, network string, addrs []netip.Addr, port uint16) (net.Conn, error) {
	var errs []error
	for _, a := range addrs {
		conn, err := d.DialContext(ctx, network, netip.AddrPortFrom(a, port).String())
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}
