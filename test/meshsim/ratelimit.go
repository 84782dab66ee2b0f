package meshsim

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/types/known/anypb"
	corev1 "k8s.io/api/core/v1"
)

// This file models the destination's inbound sidecar (Options.InboundSidecars): the
// local rate limit filter of the HTTP connection manager istiod sends for the endpoint's
// port, with its token buckets, descriptors and per-route configuration.

const localRateLimitType = "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"

// podNode is the sidecar of a Pod as istiod knows it: its address, labels and identity,
// so that istiod sends it the Pod's inbound listeners and the EnvoyFilters selecting it.
func podNode(p *corev1.Pod) node {
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return node{Type: "sidecar", Namespace: p.Namespace, Name: p.Name, IP: p.Status.PodIP, Labels: p.Labels, ServiceAccount: sa}
}

// inboundHCM is the HTTP connection manager of the inbound filter chain for a port: the
// first chain matching the port with one (plaintext chains first: the simulator speaks no
// TLS), else one matching any port.
func inboundHCM(cfg *envoyConfig, port uint32) *hcmv3.HttpConnectionManager {
	var anyPort *hcmv3.HttpConnectionManager
	for _, name := range slices.Sorted(maps.Keys(cfg.Listeners)) {
		l := cfg.Listeners[name]
		if l.GetTrafficDirection() != corev3.TrafficDirection_INBOUND {
			continue
		}
		chains := append([]*listenerv3.FilterChain(nil), l.GetFilterChains()...)
		// Plaintext chains first.
		for pass := 0; pass < 2; pass++ {
			for _, fc := range chains {
				m := fc.GetFilterChainMatch()
				if (m.GetTransportProtocol() == "tls") != (pass == 1) {
					continue
				}
				hcm := chainHCM(fc)
				if hcm == nil {
					continue
				}
				switch dp := m.GetDestinationPort(); {
				case dp != nil && dp.GetValue() == port:
					return hcm
				case dp == nil && anyPort == nil:
					anyPort = hcm
				}
			}
		}
	}
	return anyPort
}

// chainHCM is the HTTP connection manager of a filter chain, nil when it has none.
func chainHCM(fc *listenerv3.FilterChain) *hcmv3.HttpConnectionManager {
	for _, f := range fc.GetFilters() {
		if hcm := httpManager(f); hcm != nil {
			return hcm
		}
	}
	return nil
}

// localRateLimit is the local rate limit in force for a request: the filter's, unless the
// inbound route (or its virtual host) carries a configuration of its own for it. nil when
// there is none.
func localRateLimit(hcm *hcmv3.HttpConnectionManager, req request) (*localratelimitv3.LocalRateLimit, string) {
	var filter *anypb.Any
	var name string
	for _, f := range hcm.GetHttpFilters() {
		if a := f.GetTypedConfig(); a != nil && strings.HasSuffix(a.GetTypeUrl(), localRateLimitType) {
			filter, name = a, f.GetName()
			break
		}
	}
	if filter == nil {
		return nil, ""
	}
	scope := "filter"
	if vh := virtualHost(hcm.GetRouteConfig(), req.Authority); vh != nil {
		if r, i := matchRoute(vh, req, func(int, float64) bool { return true }); r != nil {
			if a := r.GetTypedPerFilterConfig()[name]; a != nil {
				filter, scope = a, "route|"+vh.GetName()+"|"+strconv.Itoa(i)
			} else if a := vh.GetTypedPerFilterConfig()[name]; a != nil {
				filter, scope = a, "vhost|"+vh.GetName()
			}
		}
	}
	cfg := &localratelimitv3.LocalRateLimit{}
	if err := filter.UnmarshalTo(cfg); err != nil {
		return nil, ""
	}
	return cfg, scope
}

// bucket is one token bucket, on the simulator's clock.
type bucket struct {
	config string // the token bucket's configuration: a change starts a new bucket
	tokens uint32
	last   time.Duration // when it was last refilled
}

// take refills the bucket for the time passed and takes a token, if there is one.
func (b *bucket) take(tb *typev3.TokenBucket, now time.Duration) bool {
	if iv := tb.GetFillInterval().AsDuration(); iv > 0 {
		fills := (now - b.last) / iv
		perFill := uint32(1)
		if tb.GetTokensPerFill() != nil {
			perFill = tb.GetTokensPerFill().GetValue()
		}
		b.tokens = uint32(min(int64(b.tokens)+int64(fills)*int64(perFill), int64(tb.GetMaxTokens())))
		b.last += fills * iv
	}
	if b.tokens == 0 {
		return false
	}
	b.tokens--
	return true
}

// rateLimited says whether the destination's inbound sidecar answers the request itself
// because a token bucket is empty, and with which status. Each request takes a token from
// the bucket of every descriptor its rate_limits generate that the filter lists, and from
// the filter's own bucket when none matched or always_consume_default_token_bucket holds
// (its default).
func (e *engine) rateLimited(proxy string, hcm *hcmv3.HttpConnectionManager, req request) (int, bool) {
	cfg, scope := localRateLimit(hcm, req)
	if cfg == nil || cfg.GetFilterEnabled() == nil || cfg.GetFilterEnforced() == nil {
		return 0, false // not enabled, or counting without enforcing: Envoy's defaults
	}
	key := proxy + "|" + scope
	if !e.bernoulli(key+"|enabled", fractionOf(cfg.GetFilterEnabled().GetDefaultValue())) ||
		!e.bernoulli(key+"|enforced", fractionOf(cfg.GetFilterEnforced().GetDefaultValue())) {
		return 0, false
	}
	var buckets []*typev3.TokenBucket
	var names []string
	for _, d := range matchingDescriptors(cfg, req) {
		buckets = append(buckets, d.GetTokenBucket())
		names = append(names, prototext.Format(d))
	}
	if len(buckets) == 0 || cfg.GetAlwaysConsumeDefaultTokenBucket() == nil || cfg.GetAlwaysConsumeDefaultTokenBucket().GetValue() {
		if cfg.GetTokenBucket() != nil {
			buckets = append(buckets, cfg.GetTokenBucket())
			names = append(names, "default")
		}
	}
	limited := false
	for i, tb := range buckets {
		bk := key + "|" + names[i]
		b, conf := e.buckets[bk], prototext.Format(tb)
		if b == nil || b.config != conf {
			b = &bucket{config: conf, tokens: tb.GetMaxTokens(), last: e.clock}
			e.buckets[bk] = b
		}
		if !b.take(tb, e.clock) {
			limited = true
		}
	}
	if !limited {
		return 0, false
	}
	code := 429
	if c := cfg.GetStatus().GetCode(); c != 0 {
		code = int(c)
	}
	return code, true
}

// matchingDescriptors are the filter's descriptors that the request's rate_limits
// generate. Only header_value_match and generic_key actions are modelled; a rate limit with
// another action generates nothing.
func matchingDescriptors(cfg *localratelimitv3.LocalRateLimit, req request) []*ratelimitv3.LocalRateLimitDescriptor {
	var out []*ratelimitv3.LocalRateLimitDescriptor
	for _, rl := range cfg.GetRateLimits() {
		entries, ok := descriptorOf(rl, req)
		if !ok {
			continue
		}
		for _, d := range cfg.GetDescriptors() {
			if sameEntries(d, entries) {
				out = append(out, d)
			}
		}
	}
	return out
}

func descriptorOf(rl *routev3.RateLimit, req request) ([][2]string, bool) {
	var entries [][2]string
	for _, a := range rl.GetActions() {
		switch x := a.GetActionSpecifier().(type) {
		case *routev3.RateLimit_Action_HeaderValueMatch_:
			m := x.HeaderValueMatch
			all := true
			for _, h := range m.GetHeaders() {
				all = all && headerMatches(h, req)
			}
			expect := m.GetExpectMatch() == nil || m.GetExpectMatch().GetValue()
			if all != expect {
				return nil, false
			}
			k := m.GetDescriptorKey()
			if k == "" {
				k = "header_match"
			}
			entries = append(entries, [2]string{k, m.GetDescriptorValue()})
		case *routev3.RateLimit_Action_GenericKey_:
			k := x.GenericKey.GetDescriptorKey()
			if k == "" {
				k = "generic_key"
			}
			entries = append(entries, [2]string{k, x.GenericKey.GetDescriptorValue()})
		default:
			return nil, false
		}
	}
	return entries, len(entries) > 0
}

func sameEntries(d *ratelimitv3.LocalRateLimitDescriptor, entries [][2]string) bool {
	if len(d.GetEntries()) != len(entries) {
		return false
	}
	for i, e := range d.GetEntries() {
		if e.GetKey() != entries[i][0] || e.GetValue() != entries[i][1] {
			return false
		}
	}
	return true
}

// inbound applies the destination sidecar's local rate limit to a request sent to the
// endpoint ep of workload wl: the status it answers with, and whether it did.
func (e *engine) inbound(t *tick, wl workload, ep lbEndpoint, req request) (int, bool) {
	if !e.opts.InboundSidecars || t.px == nil {
		return 0, false
	}
	n := podNode(wl.Pod)
	cfg := t.px.config(n, nil)
	if cfg == nil {
		return 0, false // not connected yet: no filter in force
	}
	hcm := inboundHCM(cfg, ep.Port)
	if hcm == nil {
		return 0, false
	}
	return e.rateLimited(n.ID(), hcm, req)
}
