package hooks

import (
	"context"
	"fmt"
	"net/url"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// CredentialPolicy decides where canopy may send credentials it reads from a tenant's
// Secret (a metric provider's secretRef, a webhook's header). canopy reads Secrets with its
// own rights, so without it anyone who may write a Canary could send any Secret of their
// namespace, a ServiceAccount token say, to a host of their choosing, without the right
// to read it themselves. Three rules hold:
//
//   - the URL's host is on AllowedHosts (empty: credentials go nowhere);
//   - the Secret opts in, with the label mesh.canopy.dev/credentials=true;
//   - the Secret is not a ServiceAccount token (kubernetes.io/service-account-token).
type CredentialPolicy struct {
	// AllowedHosts are host names (exact, or "*.example.com") or literal addresses.
	AllowedHosts []string
}

// ParseHosts normalizes an allow-list of host names, refusing misplaced wildcards.
func ParseHosts(hosts []string) ([]string, error) {
	var out []string
	for _, h := range hosts {
		h = normalizeHost(h)
		if h == "" {
			continue
		}
		if err := checkWildcard(h); err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

// ParseCredentialPolicy builds a CredentialPolicy from --credential-allowed-hosts.
func ParseCredentialPolicy(hosts []string) (*CredentialPolicy, error) {
	h, err := ParseHosts(hosts)
	if err != nil {
		return nil, err
	}
	return &CredentialPolicy{AllowedHosts: h}, nil
}

// CheckHost refuses rawURL as a destination of credentials unless its host is allowed.
func (c *CredentialPolicy) CheckHost(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return &NotAllowedError{URL: "(unparsable)", Reason: "not a URL"}
	}
	host := normalizeHost(u.Hostname())
	if c == nil || len(c.AllowedHosts) == 0 {
		return refusal(u, "credentials from a Secret are sent to no host: the operator allows none (--credential-allowed-hosts)")
	}
	if !hostInList(c.AllowedHosts, host, false) {
		return refusal(u, "%s is not a host credentials may be sent to (--credential-allowed-hosts)", host)
	}
	return nil
}

// ReadSecret reads the Secret key names, refusing one that has not opted in or that holds
// a ServiceAccount token. reader should be uncached (the manager's APIReader).
func ReadSecret(ctx context.Context, reader client.Reader, key types.NamespacedName) (*corev1.Secret, error) {
	var s corev1.Secret
	if err := reader.Get(ctx, key, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("the Secret %s is not found", key)
		}
		// The API error names nothing the tenant does not know; keep it short anyway.
		return nil, fmt.Errorf("reading Secret %s: %s", key, apierrors.ReasonForError(err))
	}
	if s.Type == corev1.SecretTypeServiceAccountToken {
		return nil, fmt.Errorf("the Secret %s is a ServiceAccount token (%s): canopy never sends one", key, s.Type)
	}
	if s.Labels[meshv1.LabelCredentials] != "true" {
		return nil, fmt.Errorf("the Secret %s is not labelled %s=true: label it to let canopy send its credentials", key, meshv1.LabelCredentials)
	}
	return &s, nil
}
