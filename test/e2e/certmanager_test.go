package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"canopy.dev/canopy/test/testenv"
)

// TestCertManagerIssuesFromACA proves the cert-manager runner works the way canopy's
// mTLS setup uses it: a SelfSigned ClusterIssuer signs a CA Certificate, a CA
// ClusterIssuer signs with it, and a leaf Certificate becomes Ready with a Secret that
// verifies against the CA.
func TestCertManagerIssuesFromACA(t *testing.T) {
	testenv.SkipIfShort(t)
	ctx := t.Context()
	ns := env.CreateNamespace(t)
	// ClusterIssuers are cluster-wide: name them after the test's namespace.
	selfSignedName, caName := ns+"-selfsigned", ns+"-ca"
	issuer := func(name string) cmmeta.IssuerReference {
		// No webhook runs to default kind and group.
		return cmmeta.IssuerReference{Name: name, Kind: cmv1.ClusterIssuerKind, Group: "cert-manager.io"}
	}

	selfSigned := &cmv1.ClusterIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: selfSignedName},
		Spec:       cmv1.IssuerSpec{IssuerConfig: cmv1.IssuerConfig{SelfSigned: &cmv1.SelfSignedIssuer{}}},
	}
	// A CA ClusterIssuer reads its key pair from the cluster resource namespace.
	caCert := &cmv1.Certificate{
		ObjectMeta: metav1.ObjectMeta{Name: caName, Namespace: testenv.DefaultClusterResourceNamespace},
		Spec: cmv1.CertificateSpec{
			IsCA:       true,
			CommonName: "canopy test CA",
			SecretName: caName,
			PrivateKey: &cmv1.CertificatePrivateKey{Algorithm: cmv1.ECDSAKeyAlgorithm, Size: 256},
			IssuerRef:  issuer(selfSignedName),
		},
	}
	ca := &cmv1.ClusterIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: caName},
		Spec:       cmv1.IssuerSpec{IssuerConfig: cmv1.IssuerConfig{CA: &cmv1.CAIssuer{SecretName: caName}}},
	}
	dnsName := "podinfo." + ns + ".svc.cluster.local"
	leaf := &cmv1.Certificate{
		ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns},
		Spec: cmv1.CertificateSpec{
			SecretName: "podinfo-tls",
			DNSNames:   []string{dnsName},
			Duration:   &metav1.Duration{Duration: 24 * time.Hour},
			IssuerRef:  issuer(caName),
		},
	}
	caSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: caName, Namespace: testenv.DefaultClusterResourceNamespace}}
	for _, obj := range []client.Object{selfSigned, caCert, ca, leaf} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
	}
	t.Cleanup(func() {
		for _, obj := range []client.Object{leaf, ca, caSecret, caCert, selfSigned} {
			if err := client.IgnoreNotFound(env.Client.Delete(context.Background(), obj)); err != nil {
				t.Errorf("deleting %T %s: %v", obj, obj.GetName(), err)
			}
		}
	})

	start := time.Now()
	testenv.Eventually(t, 2*time.Minute, func() error { return certificateReady(t, leaf) })
	t.Logf("leaf certificate Ready %s after creation", time.Since(start).Round(time.Millisecond))

	var secret corev1.Secret
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: leaf.Spec.SecretName}, &secret); err != nil {
		t.Fatal(err)
	}
	cert, err := parseCertificate(secret.Data[corev1.TLSCertKey])
	if err != nil {
		t.Fatalf("tls.crt: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(secret.Data["ca.crt"]) {
		t.Fatalf("ca.crt holds no certificate: %q", secret.Data["ca.crt"])
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: dnsName}); err != nil {
		t.Errorf("the leaf does not verify against the CA for %s: %v", dnsName, err)
	}
	if cert.Issuer.CommonName != caCert.Spec.CommonName {
		t.Errorf("leaf issued by %q, want %q", cert.Issuer.CommonName, caCert.Spec.CommonName)
	}
}

func certificateReady(t *testing.T, cert *cmv1.Certificate) error {
	if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(cert), cert); err != nil {
		return err
	}
	for _, c := range cert.Status.Conditions {
		if c.Type == cmv1.CertificateConditionReady {
			if c.Status == cmmeta.ConditionTrue {
				return nil
			}
			return fmt.Errorf("certificate %s not Ready: %s: %s", cert.Name, c.Reason, c.Message)
		}
	}
	return fmt.Errorf("certificate %s has no Ready condition yet", cert.Name)
}

func parseCertificate(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}
