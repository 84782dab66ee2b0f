package render

import (
	"fmt"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/api/annotation"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// The names Envoy and Istio give what the rate limit EnvoyFilter patches.
const (
	// LocalRateLimitFilter is the name of Envoy's local rate limit HTTP filter.
	LocalRateLimitFilter = "envoy.filters.http.local_ratelimit"
	// RateLimitPathKey is the descriptor key of a per-path limit; its value is the prefix.
	RateLimitPathKey = "canopy-path-prefix"
	// RateLimitStatPrefix prefixes the filter's statistics.
	RateLimitStatPrefix = "canopy_local_rate_limit"
	// rateLimitPriority orders the EnvoyFilter after Istio's own (priority 0) and keeps
	// istioctl analyze quiet about its relative insert (IST0151).
	rateLimitPriority = 10
	minFillInterval   = 50 * time.Millisecond
	hcmFilter         = "envoy.filters.network.http_connection_manager"
	routerFilter      = "envoy.filters.http.router"
)

// rateLimits renders spec.rateLimit as one EnvoyFilter per workload: Envoy's local rate
// limit filter inserted into the inbound HTTP filter chain of the workload's sidecars,
// right before the router (after authorization: a denied request takes no token), the
// form Istio's local rate limit task documents. canopy builds the filter from the typed
// fields only, selects the Service's pods and writes it in the policy's namespace: a
// tenant cannot reach any other part of the proxies' configuration through it.
func (r *policyRenderer) rateLimits() []*networkingv1alpha3.EnvoyFilter {
	rl := r.p.Spec.RateLimit
	if rl == nil {
		return nil
	}
	cfg := r.localRateLimit(rl)
	if cfg == nil {
		return nil
	}
	value, err := filterValue(cfg)
	if err != nil {
		r.e.invalid("spec.rateLimit", "cannot be rendered: %v", err)
		return nil
	}
	var out []*networkingv1alpha3.EnvoyFilter
	for _, w := range r.workloads() {
		ef := &networkingv1alpha3.EnvoyFilter{
			TypeMeta:   metav1.TypeMeta{APIVersion: networkingv1alpha3.SchemeGroupVersion.String(), Kind: "EnvoyFilter"},
			ObjectMeta: r.meta(w.name + "-ratelimit"),
		}
		// istioctl analyze warns of every EnvoyFilter (IST0133: it reaches into Envoy's
		// configuration, which may change with Istio's versions). This one is built from
		// typed fields, in the form Istio's task documents, and canopy's tests run it
		// through the istiod it supports: the warning is acknowledged here, and
		// docs/security.md says what it means for upgrades.
		ef.Annotations = map[string]string{annotation.GalleyAnalyzeSuppress.Name: "IST0133"}
		ef.Spec.WorkloadSelector = &networking.WorkloadSelector{Labels: copyMap(w.selector.GetMatchLabels())}
		ef.Spec.Priority = rateLimitPriority
		ef.Spec.ConfigPatches = []*networking.EnvoyFilter_EnvoyConfigObjectPatch{{
			ApplyTo: networking.EnvoyFilter_HTTP_FILTER,
			Match: &networking.EnvoyFilter_EnvoyConfigObjectMatch{
				Context: networking.EnvoyFilter_SIDECAR_INBOUND,
				ObjectTypes: &networking.EnvoyFilter_EnvoyConfigObjectMatch_Listener{Listener: &networking.EnvoyFilter_ListenerMatch{
					FilterChain: &networking.EnvoyFilter_ListenerMatch_FilterChainMatch{
						Filter: &networking.EnvoyFilter_ListenerMatch_FilterMatch{
							Name:      hcmFilter,
							SubFilter: &networking.EnvoyFilter_ListenerMatch_SubFilterMatch{Name: routerFilter},
						},
					},
				}},
			},
			Patch: &networking.EnvoyFilter_Patch{
				Operation: networking.EnvoyFilter_Patch_INSERT_BEFORE,
				Value:     cloneMsg(value),
			},
		}}
		out = append(out, ef)
	}
	return out
}

// localRateLimit is the filter's configuration: the service's bucket, and a descriptor
// with a bucket of its own per path prefix, which the filter's own rate_limits actions
// generate from the request's :path.
func (r *policyRenderer) localRateLimit(rl *meshv1.RateLimit) *localratelimitv3.LocalRateLimit {
	const path = "spec.rateLimit"
	interval := r.fillInterval(path+".interval", rl.Interval, "1s")
	status := rl.StatusCode
	if status == 0 {
		status = 429
	}
	if status < 400 || status > 599 {
		r.e.invalid(path+".statusCode", "%d is not an HTTP error status (400-599)", status)
	}
	all := &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}}
	cfg := &localratelimitv3.LocalRateLimit{
		StatPrefix:     RateLimitStatPrefix,
		Status:         &typev3.HttpStatus{Code: typev3.StatusCode(status)},
		TokenBucket:    r.tokenBucket(path, rl.Requests, rl.Burst, interval),
		FilterEnabled:  all,
		FilterEnforced: cloneMsg(all),
	}
	if len(rl.Paths) > 0 {
		// A request on a listed path takes a token from that path's bucket only.
		cfg.AlwaysConsumeDefaultTokenBucket = wrapperspb.Bool(false)
	}
	prefixes := map[string]int{}
	for i, pl := range rl.Paths {
		pp := fmt.Sprintf("%s.paths[%d]", path, i)
		if !strings.HasPrefix(pl.Prefix, "/") || strings.ContainsAny(pl.Prefix, " \t\n?#") {
			r.e.invalid(pp+".prefix", "%q is not a path prefix: it starts with / and has no spaces, ? or #", pl.Prefix)
		}
		if j, dup := prefixes[pl.Prefix]; dup {
			r.e.invalid(pp+".prefix", "%q is listed twice (paths[%d])", pl.Prefix, j)
		}
		prefixes[pl.Prefix] = i
		iv := interval
		if pl.Interval != "" {
			iv = r.fillInterval(pp+".interval", pl.Interval, "")
		}
		cfg.Descriptors = append(cfg.Descriptors, &ratelimitv3.LocalRateLimitDescriptor{
			Entries:     []*ratelimitv3.RateLimitDescriptor_Entry{{Key: RateLimitPathKey, Value: pl.Prefix}},
			TokenBucket: r.tokenBucket(pp, pl.Requests, pl.Burst, iv),
		})
		cfg.RateLimits = append(cfg.RateLimits, pathAction(pl.Prefix, rl.Paths))
	}
	return cfg
}

// pathAction generates the descriptor of prefix for the requests whose path starts with
// it and with none of the longer prefixes listed: those count against their own.
func pathAction(prefix string, all []meshv1.PathRateLimit) *routev3.RateLimit {
	headers := []*routev3.HeaderMatcher{pathPrefix(prefix, false)}
	for _, o := range all {
		if len(o.Prefix) > len(prefix) && strings.HasPrefix(o.Prefix, prefix) {
			headers = append(headers, pathPrefix(o.Prefix, true))
		}
	}
	return &routev3.RateLimit{Actions: []*routev3.RateLimit_Action{{
		ActionSpecifier: &routev3.RateLimit_Action_HeaderValueMatch_{HeaderValueMatch: &routev3.RateLimit_Action_HeaderValueMatch{
			DescriptorKey:   RateLimitPathKey,
			DescriptorValue: prefix,
			ExpectMatch:     wrapperspb.Bool(true),
			Headers:         headers,
		}},
	}}}
}

func pathPrefix(prefix string, invert bool) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{
		Name:                 ":path",
		InvertMatch:          invert,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: prefix}}},
	}
}

// fillInterval parses a bucket's interval: Envoy refuses one under 50ms.
func (r *policyRenderer) fillInterval(path string, d meshv1.Duration, def meshv1.Duration) *durationpb.Duration {
	if d == "" {
		d = def
	}
	v := duration(r.e, path, d)
	if v != nil && v.AsDuration() < minFillInterval {
		r.e.invalid(path, "%q is shorter than Envoy's shortest fill interval, %v", d, minFillInterval)
	}
	return v
}

func (r *policyRenderer) tokenBucket(path string, requests int32, burst *int32, interval *durationpb.Duration) *typev3.TokenBucket {
	if requests < 1 {
		r.e.invalid(path+".requests", "%d: at least one request per interval", requests)
	}
	size := requests
	if burst != nil {
		size = *burst
		if size < requests {
			r.e.inconsistent(path+".burst", "%d is the bucket's size: it cannot be smaller than requests (%d)", size, requests)
		}
	}
	return &typev3.TokenBucket{
		MaxTokens:     uint32(max(size, 0)),
		TokensPerFill: wrapperspb.UInt32(uint32(max(requests, 0))),
		FillInterval:  cloneMsg(interval),
	}
}

// filterValue is the HTTP filter as an EnvoyFilter patch value: its name and its typed
// configuration in Envoy's JSON form, which istiod reads back into the typed message.
func filterValue(cfg *localratelimitv3.LocalRateLimit) (*structpb.Struct, error) {
	a, err := anypb.New(cfg)
	if err != nil {
		return nil, err
	}
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(a)
	if err != nil {
		return nil, err
	}
	typed := &structpb.Struct{}
	if err := protojson.Unmarshal(js, typed); err != nil {
		return nil, err
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		"name":         structpb.NewStringValue(LocalRateLimitFilter),
		"typed_config": structpb.NewStructValue(typed),
	}}, nil
}
