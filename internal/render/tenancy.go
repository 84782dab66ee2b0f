package render

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// Tenancy is what the operator lets a namespace's Canaries and MeshPolicies claim beyond
// the namespace. canopy writes with cluster-wide rights for whoever may edit one namespace
// (its editor role is aggregated into edit): unchecked, a namespace editor could put a
// Gateway and a Certificate into any namespace, have any ClusterIssuer sign any name,
// serve it on a shared gateway, and route other namespaces' hosts. The zero value allows
// nothing beyond the namespace: its Services' names, Issuers in the namespace, gateways in
// the namespace. The admission webhooks and both controllers check with the same Tenancy,
// built from the manager's flags (docs/security.md). A nil Tenancy is the zero value.
type Tenancy struct {
	// GatewayNamespaces are the namespaces besides its own where a MeshPolicy may put its
	// ingress Gateway and Certificate, and whose Gateways a Canary may bind its
	// VirtualService to; "*" allows every namespace.
	GatewayNamespaces []string
	// ClusterIssuers are the ClusterIssuers a MeshPolicy's ingress certificate may name:
	// "name" for cert-manager.io's, "group/name" for an external issuer's; "*" allows
	// every ClusterIssuer.
	ClusterIssuers []string
	// Hosts are the names a namespace may route and serve besides its own Services': the
	// hosts of a Canary's VirtualService (spec.service.hosts) and of a MeshPolicy's ingress
	// (its VirtualService, Gateway and Certificate).
	Hosts []HostRule
	// ExternalHosts are the names a namespace may declare as external services
	// (ServiceEntries): with an outbound policy of REGISTRY_ONLY, what its workloads may call.
	ExternalHosts []HostRule
	// JWKSHosts are the hosts of the JWKS URLs a MeshPolicy's authentication may name, which
	// istiod fetches from inside the cluster: none by default (inline keys only).
	JWKSHosts []HostRule
	// IngressSelectors are the labels ("key=value") that mark the ingress gateways of the
	// shared gateway namespaces: a MeshPolicy's ingress Gateway put in another namespace
	// than the policy's must select on one of them, so that it lands on ingress gateway
	// pods only, never on an egress gateway's or another team's. Empty: Istio's own,
	// istio=ingressgateway; "*" allows any selector.
	IngressSelectors []string
}

// DefaultIngressSelector is Istio's own ingress gateway's label, the IngressSelectors of
// an operator that set none.
const DefaultIngressSelector = "istio=ingressgateway"

// HostRule gives names to a namespace, or to every namespace.
type HostRule struct {
	// Namespace is the namespace the rule is for, or "*" for every namespace.
	Namespace string
	// Host is a name ("shop.example.com"), every name under a domain
	// ("*.shop.example.com", wildcard hosts under it included) or any name ("*").
	// "{namespace}" in it stands for the namespace, so that one rule gives each namespace
	// its own domain ("*.{namespace}.apps.example.com").
	Host string
}

// NamespacePlaceholder stands for the claiming namespace in a HostRule's Host.
const NamespacePlaceholder = "{namespace}"

func (r HostRule) String() string { return r.Namespace + ":" + r.Host }

// ParseHostRules parses rules written "host" (for every namespace) or "namespace:host".
func ParseHostRules(entries []string) ([]HostRule, error) {
	var out []HostRule
	for _, s := range entries {
		r := HostRule{Namespace: "*", Host: s}
		if ns, host, ok := strings.Cut(s, ":"); ok {
			r = HostRule{Namespace: ns, Host: host}
		}
		if r.Namespace != "*" && len(validation.IsDNS1123Label(r.Namespace)) > 0 {
			return nil, fmt.Errorf("%q: %q is not a namespace name or *", s, r.Namespace)
		}
		if r.Host != "*" {
			name := strings.TrimPrefix(strings.ReplaceAll(r.Host, NamespacePlaceholder, "ns"), "*.")
			if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
				return nil, fmt.Errorf("%q: %q is not a host name, *.domain or *: %s", s, r.Host, strings.Join(errs, "; "))
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// ParseClusterIssuers checks entries written "name", "group/name" or "*".
func ParseClusterIssuers(entries []string) ([]string, error) {
	for _, s := range entries {
		if s == "*" {
			continue
		}
		group, name, ok := strings.Cut(s, "/")
		if !ok {
			group, name = "cert-manager.io", s
		}
		if len(validation.IsDNS1123Subdomain(group)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
			return nil, fmt.Errorf("%q is not a ClusterIssuer name or group/name", s)
		}
	}
	return slices.Clone(entries), nil
}

// ParseIngressSelectors checks entries that are labels "key=value" or "*".
func ParseIngressSelectors(entries []string) ([]string, error) {
	for _, s := range entries {
		if s == "*" {
			continue
		}
		key, value, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not a label key=value or *", s)
		}
		errs := append(validation.IsQualifiedName(key), validation.IsValidLabelValue(value)...)
		if value == "" {
			errs = append(errs, "the value is empty")
		}
		if len(errs) > 0 {
			return nil, fmt.Errorf("%q is not a label key=value or *: %s", s, strings.Join(errs, "; "))
		}
	}
	return slices.Clone(entries), nil
}

// ParseNamespaces checks entries that are namespace names or "*".
func ParseNamespaces(entries []string) ([]string, error) {
	for _, s := range entries {
		if s != "*" && len(validation.IsDNS1123Label(s)) > 0 {
			return nil, fmt.Errorf("%q is not a namespace name or *", s)
		}
	}
	return slices.Clone(entries), nil
}

// CheckMeshPolicy reports, as FieldErrors with reason NotAllowed, every field of p that
// claims more than p's namespace may: an ingress gateway in a namespace the operator does
// not allow, a ClusterIssuer it does not allow or an Issuer of another namespace, ingress
// hosts and external hosts no rule gives the namespace.
func (t *Tenancy) CheckMeshPolicy(p *meshv1.MeshPolicy) error {
	if t == nil {
		t = &Tenancy{}
	}
	e := newErrs()
	t.checkPolicy(e, p)
	return e.err()
}

// CheckCanary reports what a Canary claims beyond its namespace: hosts no rule gives it and
// gateways of namespaces the operator does not allow. policy is the MeshPolicy the Canary
// composes into its VirtualService, if any: its ingress hosts and gateway end up there too.
func (t *Tenancy) CheckCanary(c *meshv1.Canary, policy *meshv1.MeshPolicy) error {
	if t == nil {
		t = &Tenancy{}
	}
	e := newErrs()
	ns := c.Namespace
	for i, h := range c.Spec.Service.Hosts {
		if !ownHost(ns, h, false) && !t.allowed(t.Hosts, ns, h) {
			e.notAllowed(fmt.Sprintf("spec.service.hosts[%d]", i), "%s", t.hostMessage(ns, h, "--allowed-hosts"))
		}
	}
	for i, g := range c.Spec.Service.Gateways {
		if gns := gatewayNamespaceOf(g, ns); gns != ns && !t.gatewayNamespace(gns) {
			e.notAllowed(fmt.Sprintf("spec.service.gateways[%d]", i), "%q is a gateway of namespace %q; %s", g, gns, t.gatewayNamespacesMessage())
		}
	}
	if policy != nil {
		t.checkPolicy(e.about(KindMeshPolicy+"/"+policy.Name), policy)
	}
	return e.err()
}

func (t *Tenancy) checkPolicy(e *errs, p *meshv1.MeshPolicy) {
	ns := p.Namespace
	if in := p.Spec.Ingress; in != nil {
		if gns := in.Gateway.Namespace; gns != "" && gns != ns {
			if !t.gatewayNamespace(gns) {
				e.notAllowed("spec.ingress.gateway.namespace", "%q is another namespace; %s", gns, t.gatewayNamespacesMessage())
			}
			// Istio applies a Gateway to every pod its selector matches, in any namespace:
			// in a namespace others share, a selector of the tenant's choosing could open
			// the tenant's hosts on an egress gateway or on another team's gateway.
			if sel := t.ingressSelectors(); !slices.Contains(sel, "*") && !slices.ContainsFunc(sel, func(l string) bool {
				k, v, _ := strings.Cut(l, "=")
				val, ok := in.Gateway.Selector[k]
				return ok && val == v
			}) {
				e.notAllowed("spec.ingress.gateway.selector", "in namespace %q, another than the policy's, the selector must include a label the operator gives its ingress gateways (--allowed-ingress-selectors: %s): another could put the Gateway on other pods, such as an egress gateway's or another team's", gns, strings.Join(sel, ", "))
			}
		}
		for i, h := range in.Hosts {
			switch {
			case ownHost(ns, h, true) || t.allowed(t.Hosts, ns, h):
			case ownHost(ns, h, false):
				e.notAllowed(fmt.Sprintf("spec.ingress.hosts[%d]", i), "%q is not fully qualified: on a gateway other namespaces share it is nobody's in particular; write <service>.%s.svc.cluster.local, or a host an --allowed-hosts rule gives to namespace %q", h, ns, ns)
			default:
				e.notAllowed(fmt.Sprintf("spec.ingress.hosts[%d]", i), "%s", t.hostMessage(ns, h, "--allowed-hosts"))
			}
		}
		if in.TLS != nil {
			t.checkIssuer(e, p, in.TLS.IssuerRef)
		}
	}
	if a := p.Spec.Authentication; a != nil {
		for i, j := range a.JWT {
			if j.JWKSURI == "" {
				continue
			}
			u, err := url.Parse(j.JWKSURI)
			if err != nil || u.Hostname() == "" {
				continue // the renderer says what is wrong with it
			}
			if h := strings.ToLower(u.Hostname()); !t.allowed(t.JWKSHosts, ns, h) {
				e.notAllowed(fmt.Sprintf("spec.authentication.jwt[%d].jwksUri", i), "istiod would fetch it from inside the cluster, and no rule of --allowed-jwks-hosts gives host %q to namespace %q: give the keys inline (jwks), or ask the operator", h, ns)
			}
		}
	}
	for i := range p.Spec.ExternalServices {
		x := &p.Spec.ExternalServices[i]
		if g := x.EgressGateway; g != nil {
			gns := EgressGatewayNamespace(x)
			if gns != ns && !t.gatewayNamespace(gns) {
				e.notAllowed(fmt.Sprintf("spec.externalServices[%d].egressGateway.namespace", i), "%q is another namespace; %s", gns, t.gatewayNamespacesMessage())
			}
			// In a shared namespace, a selector of the tenant's choosing could attach the
			// Gateway to other pods there, such as the ingress gateway's, and publish the
			// external host on them: only Istio's egress gateway is used there.
			if gns != ns && len(g.Selector) > 0 && !maps.Equal(g.Selector, defaultEgressSelector) {
				e.notAllowed(fmt.Sprintf("spec.externalServices[%d].egressGateway.selector", i), "in namespace %q, another than the policy's, the egress gateway is Istio's own (istio: egressgateway): another selector could attach the Gateway to other pods there, such as the ingress gateway's", gns)
			}
		}
		for j, h := range x.Hosts {
			if !ownHost(ns, h, false) && !t.allowed(t.ExternalHosts, ns, h) {
				e.notAllowed(fmt.Sprintf("spec.externalServices[%d].hosts[%d]", i, j), "%s", t.hostMessage(ns, h, "--allowed-external-hosts"))
			}
		}
	}
}

func (t *Tenancy) checkIssuer(e *errs, p *meshv1.MeshPolicy, ref meshv1.IssuerRef) {
	group := ref.Group
	if group == "" {
		group = "cert-manager.io"
	}
	switch ref.Kind {
	case "ClusterIssuer":
		if !t.clusterIssuer(group, ref.Name) {
			allowed := "none"
			if len(t.ClusterIssuers) > 0 {
				allowed = strings.Join(t.ClusterIssuers, ", ")
			}
			e.notAllowed("spec.ingress.tls.issuerRef.name", "ClusterIssuer %q (group %s) is not one the operator lets namespaces use (--allowed-cluster-issuers: %s); an Issuer of this namespace may sign for a gateway in it", ref.Name, group, allowed)
		}
	default: // Issuer, the API's default
		if gns := GatewayNamespace(p); gns != p.Namespace {
			e.notAllowed("spec.ingress.tls.issuerRef.kind", "an Issuer is read in the Certificate's namespace, the gateway's %q, not this one: name a ClusterIssuer the operator allows (--allowed-cluster-issuers)", gns)
		}
	}
}

func (t *Tenancy) clusterIssuer(group, name string) bool {
	return slices.Contains(t.ClusterIssuers, "*") || slices.Contains(t.ClusterIssuers, group+"/"+name) || (group == "cert-manager.io" && slices.Contains(t.ClusterIssuers, name))
}

func (t *Tenancy) ingressSelectors() []string {
	if len(t.IngressSelectors) == 0 {
		return []string{DefaultIngressSelector}
	}
	return t.IngressSelectors
}

func (t *Tenancy) gatewayNamespace(ns string) bool {
	return slices.Contains(t.GatewayNamespaces, ns) || slices.Contains(t.GatewayNamespaces, "*")
}

func (t *Tenancy) gatewayNamespacesMessage() string {
	if len(t.GatewayNamespaces) == 0 {
		return "the operator allows gateways of the resource's own namespace only (--allowed-gateway-namespaces is empty)"
	}
	return "the operator allows gateways of the resource's own namespace and of " + strings.Join(t.GatewayNamespaces, ", ") + " (--allowed-gateway-namespaces)"
}

func (t *Tenancy) allowed(rules []HostRule, ns, host string) bool {
	return slices.ContainsFunc(rules, func(r HostRule) bool {
		return (r.Namespace == "*" || r.Namespace == ns) && hostWithin(host, strings.ReplaceAll(r.Host, NamespacePlaceholder, ns))
	})
}

func (t *Tenancy) hostMessage(ns, host, flag string) string {
	return fmt.Sprintf("%q is not a name of this namespace's Services (<service>.%s.svc.cluster.local) and no rule of %s gives it to namespace %q", host, ns, flag, ns)
}

// clusterDomain is the cluster's DNS domain, as in Principal's trust domain.
const clusterDomain = "cluster.local"

// ownHost says whether host names Services of namespace ns only: <svc>.<ns>.svc,
// <svc>.<ns>.svc.cluster.local or a wildcard of them (*.<ns>.svc.cluster.local), and,
// unless qualified, also a short name and <svc>.<ns>, which Istio reads in the object's
// namespace. An ingress host is qualified: on a gateway shared by many namespaces a short
// name is nobody's in particular.
func ownHost(ns, host string, qualified bool) bool {
	label, rest, dotted := strings.Cut(host, ".")
	switch {
	case !dotted:
		return !qualified && host != "*"
	case rest == ns:
		return !qualified && label != "*"
	}
	return rest == ns+".svc" || rest == ns+".svc."+clusterDomain
}

// hostWithin says whether every name host stands for is one pattern stands for: pattern is
// a name, "*.domain" (every name under domain) or "*".
func hostWithin(host, pattern string) bool {
	suffix, wild := strings.CutPrefix(pattern, "*")
	switch {
	case pattern == "*":
		return true
	case !wild:
		return host == pattern
	case strings.HasPrefix(host, "*."):
		return host[1:] == suffix || strings.HasSuffix(host[1:], suffix)
	default:
		return strings.HasSuffix(host, suffix)
	}
}

// GatewayNamespaceOf is the namespace of a VirtualService's gateway reference ref, as Istio
// resolves it for a VirtualService of namespace ns.
func GatewayNamespaceOf(ref, ns string) string { return gatewayNamespaceOf(ref, ns) }

// gatewayNamespaceOf is the namespace of a VirtualService's gateway reference as Istio
// resolves it: "ns/name", the legacy "name.ns.svc.cluster.local", or a name of the
// VirtualService's own namespace (and "mesh", the sidecars).
func gatewayNamespaceOf(ref, ns string) string {
	if gns, _, ok := strings.Cut(ref, "/"); ok {
		if gns == "." {
			return ns
		}
		return gns
	}
	if _, rest, ok := strings.Cut(ref, "."); ok {
		gns, _, _ := strings.Cut(rest, ".")
		return gns
	}
	return ns
}

// exportTo is the visibility of routing of namespace ns for hosts, bound to gateways. Routing
// whose hosts are all the namespace's own Services serves every caller of those Services,
// from whatever namespace: it is visible to the whole mesh (nil, Istio's default), as the
// Services are, or callers elsewhere would skip the canary split, retries and circuit
// breaking. Routing for any other host (an ingress host, an external host the operator
// allowed) stays in its namespace and the namespaces of the gateways it is bound to, whose
// workloads must see it to route: visible everywhere, it would also steer other
// namespaces' calls to that host.
func exportTo(ns string, hosts, gateways []string) []string {
	if len(hosts) > 0 && !slices.ContainsFunc(hosts, func(h string) bool { return !ownHost(ns, h, false) || strings.HasPrefix(h, "*") }) {
		return nil
	}
	out := []string{"."}
	var others []string
	for _, g := range gateways {
		if gns := gatewayNamespaceOf(g, ns); gns != ns && !slices.Contains(others, gns) {
			others = append(others, gns)
		}
	}
	slices.Sort(others)
	return append(out, others...)
}
