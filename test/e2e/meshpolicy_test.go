package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	networking "istio.io/api/networking/v1alpha3"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/testenv"
)

// TestMeshPolicyIngressCertificateFromACAChain: the real cert-manager issues the ingress
// certificate from a SelfSigned -> CA chain; the Gateway names its Secret only once the
// Certificate is Ready, and until then the policy says what cert-manager waits for.
func TestMeshPolicyIngressCertificateFromACAChain(t *testing.T) {
	testenv.SkipIfShort(t)
	ctx := t.Context()
	ns, gwNS := env.CreateNamespace(t), env.CreateNamespace(t)
	caName := ns + "-ca" // ClusterIssuers are cluster-wide: named after the test's namespace
	history := watchIngress(t, gwNS)
	startOperator(t, manager.Options{AllowedGatewayNamespaces: gwNS, AllowedClusterIssuers: caName, AllowedHosts: ns + ":*.shop.example.com," + ns + ":shop.example.com"})

	for _, obj := range []client.Object{
		newDeployment(ns, "product-catalog", "ghcr.io/example-shop/product-catalog:1.8.0", 1),
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "product-catalog"},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "product-catalog"},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(9080)}},
			},
		},
		&meshv1.MeshPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "product-catalog"},
			Spec: meshv1.MeshPolicySpec{
				TargetRef: meshv1.ServiceRef{Kind: "Service", Name: "product-catalog"},
				MTLS:      &meshv1.MTLS{Mode: meshv1.MTLSStrict},
				Routes:    []meshv1.Route{{Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Prefix: ptrTo("/products")}}}},
				Ingress: &meshv1.Ingress{
					Gateway: meshv1.IngressGateway{Namespace: gwNS, Selector: map[string]string{"istio": "ingressgateway"}},
					Hosts:   []string{"shop.example.com", "www.shop.example.com"},
					// The issuer does not exist yet.
					TLS: &meshv1.IngressTLS{IssuerRef: meshv1.IssuerRef{Kind: "ClusterIssuer", Name: caName}},
				},
			},
		},
	} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
	}

	// cert-manager cannot issue: the policy says why, and the Gateway serves plain HTTP.
	p := waitPolicy(t, ns, "product-catalog", func(p *meshv1.MeshPolicy) error {
		if len(p.Status.Certificates) == 0 || !strings.Contains(p.Status.Certificates[0].Message, `Referenced "ClusterIssuer" not found`) {
			return fmt.Errorf("certificates %+v", p.Status.Certificates)
		}
		return expectPolicyCondition(p, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonCertificatePending, `Referenced "ClusterIssuer" not found`, "serves HTTP only")
	})
	gwName, secretName := render.GatewayName(p), render.CertificateSecretName(p)
	gw := &istionetv1.Gateway{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: gwNS, Name: gwName}, gw); err != nil {
		t.Fatal(err)
	}
	if len(gw.Spec.Servers) != 1 || gw.Spec.Servers[0].GetTls().GetCredentialName() != "" {
		t.Fatalf("the Gateway names a Secret that cannot exist yet: %v", gw.Spec.String())
	}

	// The CA chain appears; cert-manager issues; the Gateway terminates TLS.
	caCN := "canopy e2e CA " + ns
	createCAChain(t, ns+"-selfsigned", caName, caCN)
	p = waitPolicy(t, ns, "product-catalog", func(p *meshv1.MeshPolicy) error {
		return expectPolicyCondition(p, meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonReconciled)
	})
	cert := &cmv1.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: gwNS, Name: gwName}}
	if err := certificateReady(t, cert); err != nil {
		t.Fatal(err)
	}
	cs := p.Status.Certificates[0]
	if !cs.Ready || cs.NotAfter == nil || !cs.NotAfter.Equal(cert.Status.NotAfter) || cs.RenewalTime == nil || !cs.RenewalTime.Equal(cert.Status.RenewalTime) {
		t.Fatalf("certificate status %+v, want Ready with cert-manager's notAfter %v and renewalTime %v", cs, cert.Status.NotAfter, cert.Status.RenewalTime)
	}
	testenv.Eventually(t, time.Minute, func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(gw), gw); err != nil {
			return err
		}
		if n := len(gw.Spec.Servers); n != 2 || gw.Spec.Servers[1].GetTls().GetCredentialName() != secretName {
			return fmt.Errorf("Gateway servers: %v", gw.Spec.String())
		}
		return nil
	})

	// The order of events as the API server stored them: the Gateway gained its
	// credentialName only after the Certificate was Ready, and had none before.
	gotReady, sawPlain, credentialAt := history.order()
	if gotReady == 0 || !sawPlain || credentialAt == 0 {
		t.Fatalf("watch history incomplete: Certificate Ready at revision %d, Gateway without credentialName seen %v, with it at %d", gotReady, sawPlain, credentialAt)
	}
	if credentialAt < gotReady {
		t.Fatalf("the Gateway named the Secret at revision %d, before the Certificate was Ready at %d", credentialAt, gotReady)
	}

	// The issued Secret: the leaf for the hosts, signed by the CA.
	secret := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: gwNS, Name: secretName}, secret); err != nil {
		t.Fatal(err)
	}
	chain := parseChain(t, secret.Data[corev1.TLSCertKey])
	leaf := chain[0]
	if want := []string{"shop.example.com", "www.shop.example.com"}; !slices.Equal(leaf.DNSNames, want) {
		t.Errorf("leaf DNS names %v, want %v", leaf.DNSNames, want)
	}
	if leaf.Issuer.CommonName != caCN {
		t.Errorf("leaf issued by %q, want %q", leaf.Issuer.CommonName, caCN)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(secret.Data["ca.crt"]) {
		t.Fatalf("ca.crt holds no certificate")
	}
	intermediates := x509.NewCertPool()
	for _, c := range chain[1:] {
		intermediates.AddCert(c)
	}
	for _, host := range leaf.DNSNames {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, DNSName: host}); err != nil {
			t.Errorf("the leaf does not verify for %s: %v", host, err)
		}
	}

	// Deleting the policy removes the Gateway and Certificate of the gateway's namespace.
	if err := env.Client.Delete(ctx, p); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, func() error {
		for _, obj := range []client.Object{&meshv1.MeshPolicy{ObjectMeta: p.ObjectMeta}, gw, cert} {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); !apierrors.IsNotFound(err) {
				return fmt.Errorf("%T %s still there (%v)", obj, obj.GetName(), err)
			}
		}
		return nil
	})
}

// TestMeshPolicyShopSample applies config/samples/shop-ca.yaml and shop.yaml, the e-commerce
// mesh, and checks what canopy generated for it.
func TestMeshPolicyShopSample(t *testing.T) {
	testenv.SkipIfShort(t)
	ctx := t.Context()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	startOperator(t, shopAllowances)
	applySample(t, "shop-ca.yaml")
	applySample(t, "shop.yaml")
	const ns = "shop"

	testenv.Eventually(t, 3*time.Minute, func() error {
		for name, image := range map[string]string{
			"product-catalog":    "ghcr.io/example-shop/product-catalog:1.8.0",
			"order-management":   "ghcr.io/example-shop/order-management:3.2.1",
			"payment-processing": "ghcr.io/example-shop/payment-processing:2.0.4",
		} {
			if n := readyPods(t, ns, map[string]string{"app": name}, image); n != 2 {
				return fmt.Errorf("%s has %d ready pods, want 2", name, n)
			}
		}
		return nil
	})
	policies := map[string]*meshv1.MeshPolicy{}
	for name, objects := range map[string]int{"product-catalog": 7, "order-management": 4, "payment-processing": 7} {
		policies[name] = waitPolicy(t, ns, name, func(p *meshv1.MeshPolicy) error {
			if err := expectPolicyCondition(p, meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonReconciled, fmt.Sprintf("Applied %d objects", objects)); err != nil {
				return err
			}
			if strings.Contains(meta.FindStatusCondition(p.Status.Conditions, meshv1.ConditionReady).Message, "warning") {
				return fmt.Errorf("unexpected warnings: %+v", p.Status.Conditions)
			}
			for _, o := range p.Status.Objects {
				if o.State != "Applied" {
					return fmt.Errorf("object %+v", o)
				}
			}
			return nil
		})
		if p := policies[name]; len(p.Status.Objects) != objects || p.Status.ObservedGeneration != p.Generation {
			t.Fatalf("%s: %d objects in status (want %d), observedGeneration %d of %d", name, len(p.Status.Objects), objects, p.Status.ObservedGeneration, p.Generation)
		}
	}

	// The generated objects, as the mesh would read them.
	get := func(namespace, name string, obj client.Object) {
		t.Helper()
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj); err != nil {
			t.Fatalf("%T %s/%s: %v", obj, namespace, name, err)
		}
	}
	gwName := render.GatewayName(policies["product-catalog"])
	vs := &istionetv1.VirtualService{}
	get(ns, "product-catalog", vs)
	if !slices.Equal(vs.Spec.Hosts, []string{"product-catalog", "shop.example.com"}) || !slices.Contains(vs.Spec.Gateways, "istio-system/"+gwName) ||
		!slices.Equal(vs.Spec.ExportTo, []string{".", "istio-system"}) ||
		vs.Spec.Http[0].GetMatch()[0].GetUri().GetPrefix() != "/products" || vs.Spec.Http[0].GetRetries().GetAttempts() != 2 || vs.Spec.Http[0].GetTimeout().AsDuration() != 10*time.Second {
		t.Errorf("VirtualService product-catalog: %v", vs.Spec.String())
	}
	gw := &istionetv1.Gateway{}
	get("istio-system", gwName, gw)
	if len(gw.Spec.Servers) != 2 || !gw.Spec.Servers[0].GetTls().GetHttpsRedirect() || gw.Spec.Servers[1].GetTls().GetCredentialName() != gwName+"-tls" {
		t.Errorf("Gateway: %v", gw.Spec.String())
	}
	secret := &corev1.Secret{}
	get("istio-system", gwName+"-tls", secret)
	if leaf := parseChain(t, secret.Data[corev1.TLSCertKey])[0]; leaf.Issuer.CommonName != "shop CA" || !slices.Equal(leaf.DNSNames, []string{"shop.example.com"}) {
		t.Errorf("ingress certificate for %v issued by %q", leaf.DNSNames, leaf.Issuer.CommonName)
	}
	ap := &istiosecv1.AuthorizationPolicy{}
	get(ns, "product-catalog", ap)
	if from := ap.Spec.GetRules()[0].GetFrom()[0].GetSource().GetPrincipals(); !slices.Equal(from, []string{"cluster.local/ns/shop/sa/order-management"}) ||
		!slices.Equal(ap.Spec.GetRules()[0].GetTo()[0].GetOperation().GetPaths(), []string{"/products*"}) {
		t.Errorf("AuthorizationPolicy product-catalog: %v", ap.Spec.String())
	}
	for _, name := range []string{"product-catalog", "order-management", "payment-processing"} {
		pa := &istiosecv1.PeerAuthentication{}
		get(ns, name, pa)
		if pa.Spec.GetMtls().GetMode().String() != "STRICT" || pa.Spec.GetSelector().GetMatchLabels()["app"] != name {
			t.Errorf("PeerAuthentication %s: %v", name, pa.Spec.String())
		}
		dr := &istionetv1.DestinationRule{}
		get(ns, name, dr)
		if dr.Spec.GetTrafficPolicy().GetTls().GetMode().String() != "ISTIO_MUTUAL" || dr.Spec.GetTrafficPolicy().GetOutlierDetection() == nil {
			t.Errorf("DestinationRule %s: %v", name, dr.Spec.String())
		}
	}
	se := &istionetv1.ServiceEntry{}
	get(ns, "payment-processing-card-processor", se)
	if !slices.Equal(se.Spec.Hosts, []string{"api.card-processor.example.com"}) || se.Spec.GetLocation().String() != "MESH_EXTERNAL" || se.Spec.Ports[1].GetTargetPort() != 443 {
		t.Errorf("ServiceEntry: %v", se.Spec.String())
	}
	origin := &istionetv1.DestinationRule{}
	get(ns, "payment-processing-card-processor", origin)
	if tls := origin.Spec.GetTrafficPolicy().GetPortLevelSettings()[0].GetTls(); tls.GetMode().String() != "SIMPLE" || tls.GetSni() != "api.card-processor.example.com" || tls.GetCaCertificates() != "system" {
		t.Errorf("TLS origination: %v", origin.Spec.String())
	}

	// Istio's analyzers judge what canopy wrote for the shop, as a user running istioctl
	// analyze would: at 186e319 they reported IST0112 (a route to the two-port
	// payment-processing Service without a port) and IST0129 (TLS origination to the card
	// processor without a CA to verify it).
	msgs, err := env.AnalyzeIstio(ctx, ns, "istio-system")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		t.Errorf("istioctl analyze: %s", m)
	}

	// Deleting the policies removes what they generated, in istio-system too.
	for _, p := range policies {
		if err := env.Client.Delete(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, time.Minute, func() error {
		for _, obj := range []client.Object{gw, &cmv1.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: gwName}}, se} {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); !apierrors.IsNotFound(err) {
				return fmt.Errorf("%T %s still there (%v)", obj, obj.GetName(), err)
			}
		}
		return nil
	})
}

// shopAllowances are the tenancy flags config/samples/shop.yaml needs (docs/security.md):
// the storefront's ingress on istio-system's gateway, its certificate from the shop-ca
// ClusterIssuer, and the card processor payment-processing calls. The demo (test/demo)
// runs with the same.
var shopAllowances = manager.Options{
	AllowedGatewayNamespaces: "istio-system",
	AllowedClusterIssuers:    "shop-ca",
	AllowedHosts:             "shop:shop.example.com",
	AllowedExternalHosts:     "shop:api.card-processor.example.com",
}

// waitPolicy waits until check accepts the MeshPolicy and returns it.
func waitPolicy(t *testing.T, ns, name string, check func(*meshv1.MeshPolicy) error) *meshv1.MeshPolicy {
	t.Helper()
	var p *meshv1.MeshPolicy
	testenv.Eventually(t, 3*time.Minute, func() error {
		p = &meshv1.MeshPolicy{}
		if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
			return err
		}
		if err := check(p); err != nil {
			return fmt.Errorf("MeshPolicy %s/%s: %w", ns, name, err)
		}
		return nil
	})
	return p
}

func expectPolicyCondition(p *meshv1.MeshPolicy, typ string, status metav1.ConditionStatus, reason string, contains ...string) error {
	c := meta.FindStatusCondition(p.Status.Conditions, typ)
	if c == nil || c.Status != status || c.Reason != reason || c.ObservedGeneration != p.Generation {
		return fmt.Errorf("condition %s is %+v, want %s/%s", typ, c, status, reason)
	}
	for _, s := range contains {
		if !strings.Contains(c.Message, s) {
			return fmt.Errorf("condition %s message %q lacks %q", typ, c.Message, s)
		}
	}
	return nil
}

// createCAChain creates a SelfSigned ClusterIssuer, a CA Certificate it signs (in the
// cluster resource namespace, where a CA ClusterIssuer reads its key pair) and the CA
// ClusterIssuer; the test's cleanup deletes them.
func createCAChain(t *testing.T, selfSignedName, caName, commonName string) {
	t.Helper()
	issuer := func(name string) cmmeta.IssuerReference {
		return cmmeta.IssuerReference{Name: name, Kind: cmv1.ClusterIssuerKind, Group: "cert-manager.io"}
	}
	objs := []client.Object{
		&cmv1.ClusterIssuer{
			ObjectMeta: metav1.ObjectMeta{Name: selfSignedName},
			Spec:       cmv1.IssuerSpec{IssuerConfig: cmv1.IssuerConfig{SelfSigned: &cmv1.SelfSignedIssuer{}}},
		},
		&cmv1.Certificate{
			ObjectMeta: metav1.ObjectMeta{Name: caName, Namespace: testenv.DefaultClusterResourceNamespace},
			Spec: cmv1.CertificateSpec{
				IsCA: true, CommonName: commonName, SecretName: caName,
				PrivateKey: &cmv1.CertificatePrivateKey{Algorithm: cmv1.ECDSAKeyAlgorithm, Size: 256},
				IssuerRef:  issuer(selfSignedName),
			},
		},
		&cmv1.ClusterIssuer{
			ObjectMeta: metav1.ObjectMeta{Name: caName},
			Spec:       cmv1.IssuerSpec{IssuerConfig: cmv1.IssuerConfig{CA: &cmv1.CAIssuer{SecretName: caName}}},
		},
	}
	for _, obj := range objs {
		if err := env.Client.Create(t.Context(), obj); err != nil {
			t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
	}
	objs = append(objs, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: caName, Namespace: testenv.DefaultClusterResourceNamespace}})
	t.Cleanup(func() {
		for i := len(objs) - 1; i >= 0; i-- {
			if err := client.IgnoreNotFound(env.Client.Delete(context.Background(), objs[i])); err != nil {
				t.Errorf("deleting %T %s: %v", objs[i], objs[i].GetName(), err)
			}
		}
	})
}

// parseChain parses every certificate of a PEM bundle, the leaf first.
func parseChain(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("parsing the certificate chain: %v", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatal("tls.crt holds no certificate")
	}
	return out
}

// ingressHistory records, from watches, the revisions at which a namespace's Gateways and
// Certificates changed. Revisions of one etcd order every write, whatever the kind.
type ingressHistory struct {
	mu sync.Mutex
	// certReady is the first revision at which a Certificate was Ready.
	certReady uint64
	// plain says a Gateway was seen without credentialName; credential is the first
	// revision at which one had it.
	plain      bool
	credential uint64
}

func (h *ingressHistory) order() (certReady uint64, plain bool, credential uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.certReady, h.plain, h.credential
}

func watchIngress(t *testing.T, ns string) *ingressHistory {
	t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h := &ingressHistory{}
	record := func(list client.ObjectList, seen func(runtime.Object, uint64)) {
		w, err := wc.Watch(ctx, list, client.InNamespace(ns))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer w.Stop()
			for ev := range w.ResultChan() {
				o, ok := ev.Object.(client.Object)
				if !ok {
					continue
				}
				rv, err := strconv.ParseUint(o.GetResourceVersion(), 10, 64)
				if err != nil {
					continue
				}
				h.mu.Lock()
				seen(ev.Object, rv)
				h.mu.Unlock()
			}
		}()
	}
	record(&cmv1.CertificateList{}, func(o runtime.Object, rv uint64) {
		cert, ok := o.(*cmv1.Certificate)
		if !ok || h.certReady != 0 {
			return
		}
		for _, c := range cert.Status.Conditions {
			if c.Type == cmv1.CertificateConditionReady && c.Status == cmmeta.ConditionTrue {
				h.certReady = rv
			}
		}
	})
	record(&istionetv1.GatewayList{}, func(o runtime.Object, rv uint64) {
		gw, ok := o.(*istionetv1.Gateway)
		if !ok {
			return
		}
		named := slices.ContainsFunc(gw.Spec.Servers, func(s *networking.Server) bool { return s.GetTls().GetCredentialName() != "" })
		switch {
		case !named:
			h.plain = true
		case h.credential == 0:
			h.credential = rv
		}
	})
	return h
}

// applySample server-side applies every object of a file of config/samples.
func applySample(t *testing.T, file string) {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "config", "samples", file))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			t.Fatalf("%s: %v", file, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := env.Client.Apply(t.Context(), client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("e2e"), client.ForceOwnership); err != nil {
			t.Fatalf("%s: applying %s %s: %v", file, u.GetKind(), u.GetName(), err)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
