package render

import (
	"slices"
	"testing"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

const testJWKS = `{"keys":[{"kty":"RSA","e":"AQAB","kid":"k1","n":"xAE7eB6qugXyCAG3yhh7pkDkT65pHymX-P7KfIupjf59vsdo91bSP9C8H07pSAGQO1MV_xFj9VswgsCg4R6otmg5PV2He95lZdHtOcU5DXIg_pbhLdKXbi66GlVeK6ABZOUW3WYtnNHD-91gVuoeJT_DwtGGcp4ignkgXfkiEm4sw-4sfb4qdt5oLbyVpmW6x9cfa7vs2WTfURiCrBoUqgBo_-4WTiULmmHSGZHOjzwa8WtrtOQGsAFjIbno85jp6MnGGGZPYZbDAa_b3y5u-YpW7ypZrvD8BgtKVjgtQgZhLAGezMt0ua3DRrWnKqTZ0BJ_EyxOGuHJrLsn00fnMQ"}]}`

func authnPolicy() *meshv1.MeshPolicy {
	p := paymentPolicy()
	p.Spec.Authentication = &meshv1.Authentication{JWT: []meshv1.JWTRule{
		{Issuer: "https://accounts.example.com", JWKSURI: "https://accounts.example.com/.well-known/jwks.json", Audiences: []string{"shop"}},
		{Issuer: "testing@secure.istio.io", JWKS: testJWKS, ForwardOriginalToken: true, FromHeaders: []meshv1.JWTHeader{{Name: "x-jwt", Prefix: "Bearer "}}},
	}}
	p.Spec.Authorization = &meshv1.Authorization{Rules: []meshv1.AuthorizationRule{{
		From: []meshv1.AuthorizationSource{{RequestPrincipals: []string{"https://accounts.example.com/*"}, NotRequestPrincipals: []string{"*/banned"}}},
		When: []meshv1.AuthorizationCondition{{Key: "request.auth.claims[groups]", Values: []string{"admins"}}},
	}}}
	return p
}

// A RequestAuthentication per workload carries the issuers; authorization rules on request
// principals and claims reach the AuthorizationPolicy.
func TestMeshPolicyAuthenticationGolden(t *testing.T) {
	set := renderPolicy(t, authnPolicy(), MeshPolicyOptions{})
	objs := []Object{set.RequestAuthentications[0], set.AuthorizationPolicies[0]}
	expectGoldenValid(t, "meshpolicy-authentication.yaml", objs)
}

func TestMeshPolicyAuthenticationErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(a *meshv1.Authentication)
		field  string
	}{
		{"both key sources", func(a *meshv1.Authentication) { a.JWT[1].JWKSURI = "https://x.example.com/jwks" }, "spec.authentication.jwt[1]"},
		{"no key source", func(a *meshv1.Authentication) { a.JWT[0].JWKSURI = "" }, "spec.authentication.jwt[0]"},
		{"plain http", func(a *meshv1.Authentication) { a.JWT[0].JWKSURI = "http://accounts.example.com/jwks" }, "spec.authentication.jwt[0].jwksUri"},
		{"not a key set", func(a *meshv1.Authentication) { a.JWT[1].JWKS = `{"kty":"RSA"}` }, "spec.authentication.jwt[1].jwks"},
		{"issuer twice", func(a *meshv1.Authentication) { a.JWT[1].Issuer = a.JWT[0].Issuer }, "spec.authentication.jwt[1].issuer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := authnPolicy()
			tc.mutate(p.Spec.Authentication)
			expectPolicyError(t, p, tc.field, "")
		})
	}
}

// istiod fetches a JWKS URL: its host needs an --allowed-jwks-hosts rule; inline keys need
// none.
func TestTenancyRefusesJWKSHosts(t *testing.T) {
	p := authnPolicy()
	p.Spec.Ingress, p.Spec.ExternalServices = nil, nil
	if got := notAllowedFields(t, (&Tenancy{}).CheckMeshPolicy(p)); !slices.Equal(got, []string{"spec.authentication.jwt[0].jwksUri"}) {
		t.Errorf("refused %v, want the JWKS URL", got)
	}
	other, _ := ParseHostRules([]string{"other:accounts.example.com"})
	if got := notAllowedFields(t, (&Tenancy{JWKSHosts: other}).CheckMeshPolicy(p)); len(got) != 1 {
		t.Errorf("a rule for another namespace allowed it: %v", got)
	}
	rules, _ := ParseHostRules([]string{"shop:*.example.com"})
	if err := (&Tenancy{JWKSHosts: rules}).CheckMeshPolicy(p); err != nil {
		t.Errorf("allowed: %v", err)
	}
}
