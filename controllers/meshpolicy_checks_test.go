package controllers

import (
	"slices"
	"strings"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	networking "istio.io/api/networking/v1alpha3"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
)

func TestTLSContradictions(t *testing.T) {
	dr := func(top networking.ClientTLSSettings_TLSmode, ports map[uint32]networking.ClientTLSSettings_TLSmode) *istionetv1.DestinationRule {
		d := &istionetv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "legacy"}}
		d.Spec.TrafficPolicy = &networking.TrafficPolicy{}
		if top != -1 {
			d.Spec.TrafficPolicy.Tls = &networking.ClientTLSSettings{Mode: top}
		}
		for p, m := range ports {
			d.Spec.TrafficPolicy.PortLevelSettings = append(d.Spec.TrafficPolicy.PortLevelSettings, &networking.TrafficPolicy_PortTrafficPolicy{
				Port: &networking.PortSelector{Number: p}, Tls: &networking.ClientTLSSettings{Mode: m},
			})
		}
		return d
	}
	strict := &meshv1.MTLS{Mode: meshv1.MTLSStrict}
	for _, tc := range []struct {
		name string
		dr   *istionetv1.DestinationRule
		mtls *meshv1.MTLS
		want []string
	}{
		{"no TLS setting: auto mTLS", dr(-1, nil), strict, nil},
		{"ISTIO_MUTUAL with STRICT", dr(networking.ClientTLSSettings_ISTIO_MUTUAL, nil), strict, nil},
		{"DISABLE with STRICT", dr(networking.ClientTLSSettings_DISABLE, nil), strict, []string{"trafficPolicy.tls.mode is DISABLE, which cannot reach workloads whose spec.mtls.mode is STRICT"}},
		{"SIMPLE with STRICT", dr(networking.ClientTLSSettings_SIMPLE, nil), strict, []string{"is SIMPLE"}},
		{"anything with PERMISSIVE", dr(networking.ClientTLSSettings_DISABLE, nil), &meshv1.MTLS{Mode: meshv1.MTLSPermissive}, nil},
		{"ISTIO_MUTUAL with DISABLE", dr(networking.ClientTLSSettings_ISTIO_MUTUAL, nil), &meshv1.MTLS{Mode: meshv1.MTLSDisable}, []string{"is ISTIO_MUTUAL, which cannot reach workloads whose spec.mtls.mode is DISABLE"}},
		{
			"a port the policy exempts", dr(-1, map[uint32]networking.ClientTLSSettings_TLSmode{9090: networking.ClientTLSSettings_DISABLE}),
			&meshv1.MTLS{Mode: meshv1.MTLSStrict, PortLevel: []meshv1.PortMTLS{{Port: 9090, Mode: meshv1.MTLSPermissive}}}, nil,
		},
		{
			"a port the policy does not exempt", dr(-1, map[uint32]networking.ClientTLSSettings_TLSmode{8080: networking.ClientTLSSettings_DISABLE}),
			strict, []string{"portLevelSettings[port 8080].tls.mode is DISABLE"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tlsContradictions(tc.dr, tc.mtls)
			if len(got) != len(tc.want) {
				t.Fatalf("got %q, want %d contradictions like %q", got, len(tc.want), tc.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) || !strings.HasPrefix(got[i], "DestinationRule legacy ") {
					t.Errorf("got %q, want it to contain %q", got[i], tc.want[i])
				}
			}
		})
	}
}

func TestHostService(t *testing.T) {
	for host, want := range map[string]string{
		"billing":                          "billing",
		"billing.shop":                     "billing",
		"billing.shop.svc":                 "billing",
		"billing.shop.svc.cluster.local":   "billing",
		"billing.other.svc.cluster.local":  "",
		"api.stripe.com":                   "",
		"*.shop.svc.cluster.local":         "",
		"billing.shop.svc.cluster.local.x": "",
	} {
		if got := hostService(host, "shop"); got != want {
			t.Errorf("hostService(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestCreatedBefore(t *testing.T) {
	at := func(name string, sec int) *meshv1.MeshPolicy {
		return &meshv1.MeshPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Unix(int64(sec), 0))}}
	}
	if !render.CreatedBefore(at("z", 1), at("a", 2)) || render.CreatedBefore(at("a", 2), at("z", 1)) {
		t.Error("the earlier creation must win over the name")
	}
	if !render.CreatedBefore(at("a", 1), at("b", 1)) || render.CreatedBefore(at("b", 1), at("a", 1)) {
		t.Error("the name must break a tie")
	}
}

func TestCertificateProblem(t *testing.T) {
	cert := func(conds ...cmv1.CertificateCondition) *cmv1.Certificate {
		return &cmv1.Certificate{Status: cmv1.CertificateStatus{Conditions: conds}}
	}
	req := func(reason, msg string) *cmv1.CertificateRequest {
		return &cmv1.CertificateRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "shop-1"},
			Status: cmv1.CertificateRequestStatus{Conditions: []cmv1.CertificateRequestCondition{{
				Type: cmv1.CertificateRequestConditionReady, Status: cmmeta.ConditionFalse, Reason: reason, Message: msg,
			}}},
		}
	}
	notReady := cmv1.CertificateCondition{Type: cmv1.CertificateConditionReady, Status: cmmeta.ConditionFalse, Reason: "DoesNotExist", Message: "Issuing certificate as Secret does not exist"}
	failed := cmv1.CertificateCondition{Type: cmv1.CertificateConditionIssuing, Status: cmmeta.ConditionFalse, Reason: "Failed", Message: "The certificate request has failed to complete and will be retried: boom"}
	for _, tc := range []struct {
		name         string
		cert         *cmv1.Certificate
		req          *cmv1.CertificateRequest
		reason, want string
	}{
		{"nothing yet", cert(), nil, meshv1.ReasonCertificatePending, "waiting for cert-manager"},
		{"not issued yet", cert(notReady), nil, meshv1.ReasonCertificatePending, "cert-manager: DoesNotExist: Issuing certificate as Secret does not exist"},
		{"the request waits for its issuer", cert(notReady), req("Pending", `Referenced "ClusterIssuer" not found`), meshv1.ReasonCertificatePending, `CertificateRequest shop-1: Pending: Referenced "ClusterIssuer" not found`},
		{"the request was denied", cert(notReady), req("Denied", "policy says no"), meshv1.ReasonCertificateNotReady, "Denied: policy says no"},
		{"the issuance failed", cert(notReady, failed), req("Failed", "boom"), meshv1.ReasonCertificateNotReady, "cert-manager: Failed: The certificate request has failed to complete and will be retried: boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, msg := certificateProblem(tc.cert, tc.req)
			if reason != tc.reason || !strings.Contains(msg, tc.want) {
				t.Fatalf("got %s %q, want %s containing %q", reason, msg, tc.reason, tc.want)
			}
		})
	}
}

func TestServiceAccountRefs(t *testing.T) {
	p := &meshv1.MeshPolicy{Spec: meshv1.MeshPolicySpec{Authorization: &meshv1.Authorization{Rules: []meshv1.AuthorizationRule{
		{From: []meshv1.AuthorizationSource{{Namespaces: []string{"x"}}, {ServiceAccounts: []string{"shop/a", "shop/b"}}}},
		{From: []meshv1.AuthorizationSource{{ServiceAccounts: []string{"ops/c"}}}},
	}}}}
	var got []string
	for _, r := range serviceAccountRefs(p) {
		got = append(got, r.path+"="+r.ref)
	}
	want := []string{
		"spec.authorization.rules[0].from[1].serviceAccounts[0]=shop/a",
		"spec.authorization.rules[0].from[1].serviceAccounts[1]=shop/b",
		"spec.authorization.rules[1].from[0].serviceAccounts[0]=ops/c",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
