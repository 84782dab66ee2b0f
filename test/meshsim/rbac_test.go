package meshsim

import (
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// The shape istiod gives a dry-run ALLOW policy: shadow rules, no rules in force.
func TestShadowResult(t *testing.T) {
	exact := func(s string) *matcherv3.StringMatcher {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
	}
	allowWebGet := &rbacfilterv3.RBAC{
		ShadowRulesStatPrefix: "istio_dry_run_allow_",
		ShadowRules: &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{
			"ns[shop]-policy[reviews-dry-run]-rule[0]": {
				Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: []*rbacv3.Permission{
					{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: []*rbacv3.Permission{
						{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("GET")}}}},
					}}}},
					{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: []*rbacv3.Permission{
						{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: exact("/api")}}}},
					}}}},
				}}}}},
				Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: []*rbacv3.Principal{
					{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: []*rbacv3.Principal{
						{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: exact("spiffe://cluster.local/ns/shop/sa/web")}}},
					}}}},
				}}}}},
			},
		}},
	}
	web := "spiffe://cluster.local/ns/shop/sa/web"
	for _, tc := range []struct {
		name      string
		rbacs     []*rbacfilterv3.RBAC
		req       request
		principal string
		want      string
	}{
		{"no dry-run policy", []*rbacfilterv3.RBAC{{}}, request{Method: "GET", Path: "/api"}, web, ""},
		{"allowed", []*rbacfilterv3.RBAC{allowWebGet}, request{Method: "GET", Path: "/api?x=1"}, web, shadowAllowed},
		{"other path", []*rbacfilterv3.RBAC{allowWebGet}, request{Method: "GET", Path: "/admin"}, web, shadowDenied},
		{"other caller", []*rbacfilterv3.RBAC{allowWebGet}, request{Method: "GET", Path: "/api"}, "spiffe://cluster.local/ns/shop/sa/cron", shadowDenied},
		{"plaintext", []*rbacfilterv3.RBAC{allowWebGet}, request{Method: "GET", Path: "/api"}, "", shadowDenied},
	} {
		if got := shadowResult(tc.rbacs, tc.req, tc.principal, 9080); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
