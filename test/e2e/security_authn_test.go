package e2e

import (
	"fmt"
	"testing"

	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

// A JWKS URL is fetched by istiod, from inside the cluster: a namespace editor cannot have
// it fetch one the operator did not allow (--allowed-jwks-hosts, empty by default); inline
// keys need no allowance, and the RequestAuthentication is applied (istioctl analyze
// finds nothing in the namespace at the end).
func TestNamespaceEditorCannotHaveIstiodFetchJWKS(t *testing.T) {
	testenv.SkipIfShort(t)
	tn := newTenant(t, "")
	op := startOperator(t, manager.Options{})
	p := &meshv1.MeshPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: tn.ns, Name: "web"}}
	p.Spec.TargetRef.Name = "web"
	p.Spec.Authentication = &meshv1.Authentication{JWT: []meshv1.JWTRule{
		{Issuer: "https://metadata.internal", JWKSURI: "https://169.254.169.254/latest/meta-data/jwks"},
	}}
	p.Spec.Authorization = &meshv1.Authorization{Rules: []meshv1.AuthorizationRule{{
		From: []meshv1.AuthorizationSource{{RequestPrincipals: []string{"*"}}},
	}}}
	tn.create(t, newDeployment(tn.ns, "web", "web:v1", 1), webService(tn.ns, "web"), p)
	waitPolicy(t, tn.ns, "web", func(p *meshv1.MeshPolicy) error {
		return expectPolicyCondition(p, meshv1.ConditionStalled, metav1.ConditionTrue, meshv1.ReasonNotAllowed, "spec.authentication.jwt[0].jwksUri", "--allowed-jwks-hosts")
	})
	ra := &istiosecv1.RequestAuthenticationList{}
	if err := env.Client.List(t.Context(), ra, client.InNamespace(tn.ns)); err != nil {
		t.Fatal(err)
	}
	if len(ra.Items) != 0 {
		t.Fatalf("a refused policy wrote %d RequestAuthentications", len(ra.Items))
	}

	// Inline keys: applied.
	live := &meshv1.MeshPolicy{}
	if err := tn.c.Get(t.Context(), client.ObjectKeyFromObject(p), live); err != nil {
		t.Fatal(err)
	}
	live.Spec.Authentication.JWT[0] = meshv1.JWTRule{Issuer: "testing@secure.istio.io", JWKS: e2eJWKS}
	if err := tn.c.Update(t.Context(), live); err != nil {
		t.Fatal(err)
	}
	waitPolicy(t, tn.ns, "web", func(p *meshv1.MeshPolicy) error {
		if err := expectPolicyCondition(p, meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonReconciled); err != nil {
			return err
		}
		got := &istiosecv1.RequestAuthentication{}
		if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: tn.ns, Name: "web"}, got); err != nil {
			return err
		}
		if rules := got.Spec.GetJwtRules(); len(rules) != 1 || rules[0].GetJwks() != e2eJWKS {
			return fmt.Errorf("the RequestAuthentication's rules: %v", rules)
		}
		return nil
	})
	op.stop(t)
}

// e2eJWKS is the public key set of Istio's JWT task (testing@secure.istio.io).
const e2eJWKS = `{"keys":[{"e":"AQAB","kid":"DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ","kty":"RSA","n":"xAE7eB6qugXyCAG3yhh7pkDkT65pHymX-P7KfIupjf59vsdo91bSP9C8H07pSAGQO1MV_xFj9VswgsCg4R6otmg5PV2He95lZdHtOcU5DXIg_pbhLdKXbi66GlVeK6ABZOUW3WYtnNHD-91gVuoeJT_DwtGGcp4ignkgXfkiEm4sw-4sfb4qdt5oLbyVpmW6x9cfa7vs2WTfURiCrBoUqgBo_-4WTiULmmHSGZHOjzwa8WtrtOQGsAFjIbno85jp6MnGGGZPYZbDAa_b3y5u-YpW7ypZrvD8BgtKVjgtQgZhLAGezMt0ua3DRrWnKqTZ0BJ_EyxOGuHJrLsn00fnMQ"}]}`
