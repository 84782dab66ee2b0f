package testenv_test

import (
	"strings"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"canopy.dev/canopy/test/testenv"
)

// TestIstioAndCertManagerCRDs proves that the apiserver serves Istio's and cert-manager's
// kinds, with their real schemas, through the typed clients canopy uses.
func TestIstioAndCertManagerCRDs(t *testing.T) {
	testenv.SkipIfShort(t)
	ctx := t.Context()
	ns := env.CreateNamespace(t)

	vs := &istionetv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns}}
	vs.Spec.Hosts = []string{"podinfo"}
	vs.Spec.Http = []*networkingv1alpha3.HTTPRoute{{
		Route: []*networkingv1alpha3.HTTPRouteDestination{
			{Destination: &networkingv1alpha3.Destination{Host: "podinfo-primary"}, Weight: 90},
			{Destination: &networkingv1alpha3.Destination{Host: "podinfo-canary"}, Weight: 10},
		},
	}}
	if err := env.Client.Create(ctx, vs); err != nil {
		t.Fatalf("creating a VirtualService: %v", err)
	}
	var gotVS istionetv1.VirtualService
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(vs), &gotVS); err != nil {
		t.Fatalf("reading the VirtualService back: %v", err)
	}
	if routes := gotVS.Spec.GetHttp(); len(routes) != 1 || len(routes[0].GetRoute()) != 2 ||
		routes[0].GetRoute()[1].GetWeight() != 10 {
		t.Errorf("VirtualService routes read back as %v", routes)
	}

	// Istio's CEL rules run too.
	bad := &istionetv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: ns}}
	bad.Spec.Hosts = []string{"podinfo"}
	bad.Spec.Http = []*networkingv1alpha3.HTTPRoute{{
		Route:   vs.Spec.Http[0].Route,
		Timeout: durationpb.New(500 * time.Microsecond),
	}}
	err := env.Client.Create(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "greater than 1ms") {
		t.Errorf("a VirtualService with a 500µs timeout: got error %v, want Istio's duration rule", err)
	}

	cert := &cmv1.Certificate{
		ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns},
		Spec: cmv1.CertificateSpec{
			SecretName: "podinfo-tls",
			DNSNames:   []string{"podinfo." + ns + ".svc"},
			IssuerRef:  cmmeta.IssuerReference{Name: "mesh-ca", Kind: cmv1.ClusterIssuerKind, Group: "cert-manager.io"},
		},
	}
	if err := env.Client.Create(ctx, cert); err != nil {
		t.Fatalf("creating a Certificate: %v", err)
	}
	// cert-manager's schema is enforced too.
	badCert := cert.DeepCopy()
	badCert.ObjectMeta = metav1.ObjectMeta{Name: "bad", Namespace: ns}
	badCert.Spec.PrivateKey = &cmv1.CertificatePrivateKey{Algorithm: "DSA"}
	err = env.Client.Create(ctx, badCert)
	if err == nil || !strings.Contains(err.Error(), "spec.privateKey.algorithm") {
		t.Errorf("a Certificate with a DSA key: got error %v, want one naming spec.privateKey.algorithm", err)
	}
}
