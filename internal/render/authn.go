package render

import (
	"encoding/json"
	"fmt"
	"net/url"

	security "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// requestAuthentications renders spec.authentication as one RequestAuthentication per
// workload. The JWKS URLs are checked against the operator's allow-list by Tenancy (istiod
// fetches them); here, only their form.
func (r *policyRenderer) requestAuthentications() []*securityv1.RequestAuthentication {
	a := r.p.Spec.Authentication
	if a == nil {
		return nil
	}
	if len(a.JWT) == 0 {
		r.e.invalid("spec.authentication.jwt", "at least one issuer is required")
	}
	var rules []*security.JWTRule
	issuers := map[string]int{}
	for i, j := range a.JWT {
		path := fmt.Sprintf("spec.authentication.jwt[%d]", i)
		if j.Issuer == "" {
			r.e.invalid(path+".issuer", "is required")
		}
		if k, dup := issuers[j.Issuer]; dup {
			r.e.invalid(path+".issuer", "%q is listed twice (jwt[%d])", j.Issuer, k)
		}
		issuers[j.Issuer] = i
		switch {
		case (j.JWKSURI == "") == (j.JWKS == ""):
			r.e.invalid(path, "set one of jwksUri and jwks")
		case j.JWKSURI != "":
			if u, err := url.Parse(j.JWKSURI); err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
				r.e.invalid(path+".jwksUri", "%q is not an https URL", j.JWKSURI)
			}
		default:
			var set struct {
				Keys []json.RawMessage `json:"keys"`
			}
			if err := json.Unmarshal([]byte(j.JWKS), &set); err != nil || len(set.Keys) == 0 {
				r.e.invalid(path+".jwks", "is not a JSON Web Key Set ({\"keys\": [...]} with at least one key)")
			}
		}
		rule := &security.JWTRule{
			Issuer: j.Issuer, JwksUri: j.JWKSURI, Jwks: j.JWKS,
			Audiences: append([]string(nil), j.Audiences...), ForwardOriginalToken: j.ForwardOriginalToken,
		}
		for _, h := range j.FromHeaders {
			rule.FromHeaders = append(rule.FromHeaders, &security.JWTHeader{Name: h.Name, Prefix: h.Prefix})
		}
		rules = append(rules, rule)
	}
	var out []*securityv1.RequestAuthentication
	for _, w := range r.workloads() {
		ra := &securityv1.RequestAuthentication{
			TypeMeta:   metav1.TypeMeta{APIVersion: securityv1.SchemeGroupVersion.String(), Kind: "RequestAuthentication"},
			ObjectMeta: r.meta(w.name),
		}
		ra.Spec.Selector = cloneMsg(w.selector)
		for _, rule := range rules {
			ra.Spec.JwtRules = append(ra.Spec.JwtRules, cloneMsg(rule))
		}
		out = append(out, ra)
	}
	return out
}
