package meshsim

import (
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
)

// This file reads the RBAC filters istiod sends a destination's sidecar (its
// AuthorizationPolicies) as Envoy does, for their shadow rules only: the policies
// annotated istio.io/dry-run, which Envoy evaluates and reports without enforcing.

// The results of a shadow evaluation, as Envoy's shadow_engine_result metadata says them.
const (
	shadowAllowed = "allowed"
	shadowDenied  = "denied"
)

// inboundRBAC are the HTTP RBAC filters of the destination sidecar's inbound listener
// ("virtualInbound") for a port: those of the filter chain of that destination port,
// else those of a chain for any port.
func (c *envoyConfig) inboundRBAC(port uint32) []*rbacfilterv3.RBAC {
	l := c.Listeners["virtualInbound"]
	if l == nil {
		return nil
	}
	var anyPort []*rbacfilterv3.RBAC
	for _, fc := range l.GetFilterChains() {
		p := fc.GetFilterChainMatch().GetDestinationPort().GetValue()
		if p != 0 && p != port {
			continue
		}
		rbacs, ok := chainRBAC(fc.GetFilters())
		if !ok {
			continue
		}
		if p == port {
			return rbacs
		}
		if anyPort == nil {
			anyPort = rbacs
		}
	}
	return anyPort
}

// chainRBAC reads the RBAC filters of a filter chain's HTTP connection manager; ok is
// false when the chain has none (TCP).
func chainRBAC(filters []*listenerv3.Filter) ([]*rbacfilterv3.RBAC, bool) {
	for _, f := range filters {
		hcm := httpManager(f)
		if hcm == nil {
			continue
		}
		var out []*rbacfilterv3.RBAC
		for _, hf := range hcm.GetHttpFilters() {
			tc := hf.GetTypedConfig()
			if tc == nil || !strings.HasSuffix(tc.GetTypeUrl(), "filters.http.rbac.v3.RBAC") {
				continue
			}
			r := &rbacfilterv3.RBAC{}
			if err := tc.UnmarshalTo(r); err == nil {
				out = append(out, r)
			}
		}
		return out, true
	}
	return nil, false
}

// shadowResult evaluates the shadow rules of the RBAC filters for a request: denied when
// one of them would deny it (an ALLOW engine no policy of which matches, a DENY engine
// one of whose policies does), allowed when they all allow it, "" when none has shadow
// rules (no dry-run policy). principal is the caller's mTLS identity, "" for plaintext.
func shadowResult(rbacs []*rbacfilterv3.RBAC, req request, principal string, port uint32) string {
	result := ""
	for _, f := range rbacs {
		rules := f.GetShadowRules()
		if rules == nil {
			continue
		}
		matched := false
		for _, p := range rules.GetPolicies() {
			if policyMatches(p, req, principal, port) {
				matched = true
				break
			}
		}
		switch rules.GetAction() {
		case rbacv3.RBAC_ALLOW:
			if !matched {
				return shadowDenied
			}
		case rbacv3.RBAC_DENY:
			if matched {
				return shadowDenied
			}
		default:
			continue // LOG: never denies
		}
		result = shadowAllowed
	}
	return result
}

// policyMatches: one of its permissions and one of its principals match.
func policyMatches(p *rbacv3.Policy, req request, principal string, port uint32) bool {
	perm := false
	for _, x := range p.GetPermissions() {
		if permissionMatches(x, req, port) {
			perm = true
			break
		}
	}
	if !perm {
		return false
	}
	for _, x := range p.GetPrincipals() {
		if principalMatches(x, req, principal) {
			return true
		}
	}
	return false
}

// permissionMatches applies an RBAC permission; those the simulator cannot evaluate
// (destination IPs, metadata, server names, CEL) do not match.
func permissionMatches(p *rbacv3.Permission, req request, port uint32) bool {
	switch r := p.GetRule().(type) {
	case *rbacv3.Permission_Any:
		return r.Any
	case *rbacv3.Permission_AndRules:
		for _, x := range r.AndRules.GetRules() {
			if !permissionMatches(x, req, port) {
				return false
			}
		}
		return true
	case *rbacv3.Permission_OrRules:
		for _, x := range r.OrRules.GetRules() {
			if permissionMatches(x, req, port) {
				return true
			}
		}
		return false
	case *rbacv3.Permission_NotRule:
		return !permissionMatches(r.NotRule, req, port)
	case *rbacv3.Permission_Header:
		return headerMatches(r.Header, req)
	case *rbacv3.Permission_UrlPath:
		return stringMatches(r.UrlPath.GetPath(), urlPath(req.Path))
	case *rbacv3.Permission_DestinationPort:
		return r.DestinationPort == port
	case *rbacv3.Permission_DestinationPortRange:
		return int64(port) >= int64(r.DestinationPortRange.GetStart()) && int64(port) < int64(r.DestinationPortRange.GetEnd())
	}
	return false
}

// principalMatches applies an RBAC principal; those the simulator cannot evaluate
// (addresses, metadata, CEL) do not match.
func principalMatches(p *rbacv3.Principal, req request, principal string) bool {
	switch id := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Any:
		return id.Any
	case *rbacv3.Principal_AndIds:
		for _, x := range id.AndIds.GetIds() {
			if !principalMatches(x, req, principal) {
				return false
			}
		}
		return true
	case *rbacv3.Principal_OrIds:
		for _, x := range id.OrIds.GetIds() {
			if principalMatches(x, req, principal) {
				return true
			}
		}
		return false
	case *rbacv3.Principal_NotId:
		return !principalMatches(id.NotId, req, principal)
	case *rbacv3.Principal_Authenticated_:
		// Only a TLS peer is authenticated; an empty matcher matches any of them.
		return principal != "" && stringMatches(id.Authenticated.GetPrincipalName(), principal)
	case *rbacv3.Principal_FilterState:
		// Istio's peer identity in filter state, where it puts it instead.
		return principal != "" && strings.Contains(id.FilterState.GetKey(), "principal") && stringMatches(id.FilterState.GetStringMatch(), principal)
	case *rbacv3.Principal_Header:
		return headerMatches(id.Header, req)
	case *rbacv3.Principal_UrlPath:
		return stringMatches(id.UrlPath.GetPath(), urlPath(req.Path))
	}
	return false
}

// urlPath is a path without its query string, as RBAC's url_path sees it.
func urlPath(p string) string {
	path, _, _ := strings.Cut(p, "?")
	return path
}

// dryRun is the shadow result of the answering workload's sidecar for a request: ""
// until istiod has answered that sidecar (it connects as the Pod, at its address, so
// that istiod sends it the Pod's inbound listeners and AuthorizationPolicies).
func (e *engine) dryRun(t *tick, wl workload, ep lbEndpoint, src source, req request) string {
	p := wl.Pod
	n := node{Type: "sidecar", Namespace: p.Namespace, Name: p.Name, IP: p.Status.PodIP, Labels: p.Labels, ServiceAccount: p.Spec.ServiceAccountName}
	cfg := t.px.config(n, nil)
	if cfg == nil {
		return ""
	}
	principal := src.peer.Principal
	if e.opts.Plaintext {
		principal = ""
	}
	return shadowResult(cfg.inboundRBAC(ep.Port), req, principal, ep.Port)
}
