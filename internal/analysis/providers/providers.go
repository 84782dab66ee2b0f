// Package providers is the contract between the analysis engine and the metric backends:
// a Provider runs one instant query and returns one number, or an error whose Kind tells
// the analysis which outcome the failure is.
package providers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"canopy.dev/canopy/internal/hooks"
)

// Provider runs instant queries against one metrics backend.
type Provider interface {
	// Query returns the single value the query evaluates to now. The value may be NaN or
	// infinite; judging it is the caller's business. Any failure is an *Error.
	Query(ctx context.Context, query string) (float64, error)
}

// Factory builds a Provider from its configuration.
type Factory func(Config) (Provider, error)

// Config is where a provider is and how to talk to it.
type Config struct {
	// Type is the provider's kind, e.g. "prometheus".
	Type string
	// Address is the base URL, e.g. http://prometheus.monitoring:9090.
	Address string
	// Timeout bounds one query.
	Timeout     time.Duration
	Credentials Credentials
	// InsecureSkipVerify turns off TLS certificate verification.
	InsecureSkipVerify bool
	// URLPolicy, when set, decides which addresses every connection may go to, checked when
	// it is dialed: a tenant named Address. Nil for the operator's own --prometheus-address.
	URLPolicy *hooks.Policy
	// Window is the check's look-back, for providers whose API takes a time range
	// (datadog, dynatrace, graphite, cloudwatch) rather than a range in the query; read it
	// with LookBack.
	Window time.Duration
	// AccountID is the account a newrelic query runs in.
	AccountID int64
	// InfluxDB is where an influxdb (Flux) or influxql query runs.
	InfluxDB InfluxDB
	// Region is the AWS region a cloudwatch query runs in.
	Region string
}

// InfluxDB names the organization a Flux query runs in, or the database (and retention
// policy) of an InfluxQL query.
type InfluxDB struct {
	Org             string
	Database        string
	RetentionPolicy string
}

// Credentials authenticate to a provider: a bearer token, or basic auth, and a CA bundle
// to verify its certificate with.
type Credentials struct {
	BearerToken string
	Username    string
	Password    string
	// CA is a PEM bundle; when set, only these CAs are trusted.
	CA []byte
	// APIKey and ApplicationKey are a SaaS API's keys (Datadog's DD-API-KEY and
	// DD-APPLICATION-KEY; New Relic's API-Key).
	APIKey         string
	ApplicationKey string
	// AWS is an AWS access key, for cloudwatch.
	AWS AWSKeys
}

// AWSKeys are an AWS access key (and a session token, for temporary credentials).
type AWSKeys struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
}

// The keys read from a provider's Secret.
const (
	SecretKeyToken    = "token"
	SecretKeyUsername = "username"
	SecretKeyPassword = "password"
	SecretKeyCA       = "ca.crt"
	// SecretKeyAPIKey and SecretKeyApplicationKey are Datadog's keys; New Relic's User key
	// is SecretKeyAPIKey.
	SecretKeyAPIKey         = "api-key"
	SecretKeyApplicationKey = "application-key"
	// SecretKeyAWSAccessKeyID, SecretKeyAWSSecretAccessKey and SecretKeyAWSSessionToken are
	// CloudWatch's AWS access key.
	SecretKeyAWSAccessKeyID     = "aws-access-key-id"
	SecretKeyAWSSecretAccessKey = "aws-secret-access-key"
	SecretKeyAWSSessionToken    = "aws-session-token"
)

// DefaultWindow is the look-back of a query whose check sets no interval.
const DefaultWindow = 5 * time.Minute

// LookBack is the time range a query covers: Window, or DefaultWindow without one.
func (c Config) LookBack() time.Duration {
	if c.Window <= 0 {
		return DefaultWindow
	}
	return c.Window
}

// CredentialsFromSecret reads a Secret with a "token" key (bearer) or "username" and
// "password" keys (basic auth), and optionally "ca.crt"; "api-key" and "application-key"
// for the providers that take API keys.
func CredentialsFromSecret(s *corev1.Secret) (Credentials, error) {
	var c Credentials
	token, hasToken := s.Data[SecretKeyToken]
	user, hasUser := s.Data[SecretKeyUsername]
	pass, hasPass := s.Data[SecretKeyPassword]
	switch {
	case hasToken && (hasUser || hasPass):
		return c, fmt.Errorf("secret %s/%s has both %q and %q/%q: set one kind of credentials", s.Namespace, s.Name, SecretKeyToken, SecretKeyUsername, SecretKeyPassword)
	case hasToken:
		// Secrets written with `echo` end in a newline that is no part of the token.
		c.BearerToken = strings.TrimSpace(string(token))
		if c.BearerToken == "" {
			return c, fmt.Errorf("secret %s/%s has an empty %q", s.Namespace, s.Name, SecretKeyToken)
		}
	case hasUser != hasPass:
		return c, fmt.Errorf("secret %s/%s needs both %q and %q", s.Namespace, s.Name, SecretKeyUsername, SecretKeyPassword)
	case hasUser:
		c.Username = strings.TrimRight(string(user), "\r\n")
		c.Password = strings.TrimRight(string(pass), "\r\n")
	}
	c.CA = s.Data[SecretKeyCA]
	c.APIKey = strings.TrimSpace(string(s.Data[SecretKeyAPIKey]))
	c.ApplicationKey = strings.TrimSpace(string(s.Data[SecretKeyApplicationKey]))
	c.AWS = AWSKeys{AccessKeyID: strings.TrimSpace(string(s.Data[SecretKeyAWSAccessKeyID])),
		SecretAccessKey: strings.TrimSpace(string(s.Data[SecretKeyAWSSecretAccessKey])),
		SessionToken:    strings.TrimSpace(string(s.Data[SecretKeyAWSSessionToken]))}
	return c, nil
}

// Kind is the class of a provider failure. Each maps to one check outcome.
type Kind string

// The kinds of provider failure.
const (
	// NoData: the query returned an empty result.
	NoData Kind = "NoData"
	// Unreachable: no connection could be made (refused, DNS, no route) or the provider
	// said it is unavailable.
	Unreachable Kind = "Unreachable"
	// Timeout: the query did not answer within its timeout.
	Timeout Kind = "Timeout"
	// BadQuery: the provider refused the query, or its result is not a single number.
	BadQuery Kind = "BadQuery"
	// Other: anything else (authentication, TLS, a server error, a cancelled context).
	Other Kind = "Error"
)

// Error is a failed query.
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind.
func Errorf(kind Kind, format string, args ...any) error {
	return &Error{Kind: kind, Err: fmt.Errorf(format, args...)}
}

// KindOf returns the kind of err: that of the *Error it wraps, else Other.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Other
}
