package testenv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// IstioNamespace is where istiod runs and keeps its configuration, as in a default install.
const IstioNamespace = "istio-system"

// InjectionLabel marks a namespace for istiod's sidecar injector, as users label theirs.
const InjectionLabel = "istio-injection"

// istioToolModule is the Go module of Istio's control plane and CLI (bin/pilot-discovery
// and bin/istioctl): its charts, read from the module cache, configure the test bed's istiod.
const istioToolModule = "istio.io/istio"

// Istiod is Istio's control plane (bin/pilot-discovery, built from istio.io/istio by
// hack/tools/istio) running outside the cluster against its apiserver, as istio-system's
// istiod: it watches every Istio kind and the Services, Pods and EndpointSlices, serves xDS,
// and its validating webhook and sidecar injector are registered with the apiserver.
type Istiod struct {
	// XDSAddress is its plaintext xDS (ADS) gRPC address, host:port on 127.0.0.1: the port a
	// sidecar connects to as istiod.istio-system.svc:15010.
	XDSAddress string
	// DebugAddress is its HTTP address (/ready, /debug/configz, /debug/syncz, ...).
	DebugAddress string
	// MonitoringAddress serves its Prometheus metrics (/metrics): pilot_xds_pushes,
	// pilot_proxy_convergence_time and the rest.
	MonitoringAddress string
	// WebhookAddress is where its admission webhooks (/validate, /inject) listen, with a
	// serving certificate for 127.0.0.1 signed by CABundle.
	WebhookAddress string
	// CABundle is the PEM CA of the webhooks' serving certificate.
	CABundle []byte

	proc *process
}

// StartIstiod installs istio-system's configuration from Istio's own Helm charts (the mesh
// configuration and the injection templates, rendered by bin/helm from the istio.io/istio
// module that built bin/pilot-discovery), starts istiod, waits until it is ready, and then
// registers its webhooks: `istiod-default-validator` judges every Istio object anyone
// writes (failurePolicy Fail, as in a real install once istiod serves), and
// `istio-sidecar-injector` injects istio-proxy into the pods of namespaces labeled
// istio-injection=enabled. Env.Stop stops it.
func (e *Env) StartIstiod() (*Istiod, error) {
	paths, err := binaries("pilot-discovery", "helm")
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	err = e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: IstioNamespace}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating namespace %s: %w", IstioNamespace, err)
	}
	dir := filepath.Join(e.StateDir, "istiod")
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	i := &Istiod{XDSAddress: addr(0), DebugAddress: addr(1), MonitoringAddress: addr(2), WebhookAddress: addr(3)}
	certFile, keyFile, caFile, err := writeServingCert(dir)
	if err != nil {
		return nil, err
	}
	if i.CABundle, err = os.ReadFile(caFile); err != nil {
		return nil, err
	}

	objs, err := renderIstioCharts(paths["helm"], i)
	if err != nil {
		return nil, err
	}
	var config, webhooks []*unstructured.Unstructured
	for _, o := range objs {
		if strings.HasSuffix(o.GetKind(), "WebhookConfiguration") {
			webhooks = append(webhooks, o)
		} else {
			config = append(config, o)
		}
	}
	if err := e.applyAll(ctx, config); err != nil {
		return nil, err
	}

	cmd := exec.Command(paths["pilot-discovery"], "discovery",
		"--kubeconfig="+e.Kubeconfig,
		"--grpcAddr="+i.XDSAddress,
		"--httpAddr="+i.DebugAddress,
		"--monitoringAddr="+i.MonitoringAddress,
		"--httpsAddr="+i.WebhookAddress,
		// No secure xDS: no sidecar here presents a workload certificate.
		"--secureGRPCAddr=",
		"--tlsCertFile="+certFile, "--tlsKeyFile="+keyFile, "--caCertFile="+caFile,
		"--log_output_level=default:info",
	)
	// Its working directory has no ./etc/istio/config/mesh nor ./var/lib/istio/inject, so it
	// reads the mesh configuration and the injection templates from the ConfigMaps "istio"
	// and "istio-sidecar-injector", as a real istiod does when they are not mounted.
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"POD_NAMESPACE="+IstioNamespace,
		"POD_NAME=istiod-local",
		"REVISION=default",
		"KUBECONFIG="+e.Kubeconfig,
		// The webhook configurations carry their CA bundle (the chart's validationCABundle
		// and injectionCABundle): istiod must not patch them with its own CA.
		"VALIDATION_WEBHOOK_CONFIG_NAME=",
		"INJECTION_WEBHOOK_CONFIG_NAME=",
		// The Service of its webhooks does not exist: they are reached by URL.
		"ISTIOD_CUSTOM_HOST=127.0.0.1",
	)
	proc, err := startCommand("istiod", filepath.Join(e.logDir(), "istiod.log"), cmd)
	if err != nil {
		return nil, err
	}
	e.addChild(proc)
	i.proc = proc
	err = waitFor("istiod to be ready", func() error { return httpOK(http.MethodGet, "http://"+i.DebugAddress+"/ready") }, proc)
	if err != nil {
		return nil, err
	}
	if err := e.applyAll(ctx, webhooks); err != nil {
		return nil, err
	}
	// The apiserver reads webhook configurations from an informer: wait until an invalid
	// object is refused, so that no test's write slips past validation.
	err = waitFor("istiod's validating webhook to judge writes", func() error {
		return e.refusedByIstio(ctx)
	}, proc)
	if err != nil {
		return nil, err
	}
	if e.NodeName != "" {
		if err := e.createIngressGateway(ctx); err != nil {
			return nil, err
		}
	}
	return i, nil
}

// IngressGatewayLabels select the test bed's ingress gateway pods, as those of Istio's
// default profile (the selector Gateways name).
var IngressGatewayLabels = map[string]string{"istio": "ingressgateway", "app": "istio-ingressgateway"}

// createIngressGateway runs istio-system's ingress gateway as Istio's gateway chart does: a
// Deployment whose pods istiod's injector fills with the gateway template, and its Service.
// kwok runs the pods; no packet flows through them (the mesh simulator plays Envoy), but
// Istio sees a gateway workload for the Gateways that select it, as in a real mesh.
func (e *Env) createIngressGateway(ctx context.Context) error {
	const name = "istio-ingressgateway"
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: IstioNamespace, Name: name + "-service-account"}}
	podLabels := map[string]string{"sidecar.istio.io/inject": "true"}
	for k, v := range IngressGatewayLabels {
		podLabels[k] = v
	}
	one := int32(1)
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: IstioNamespace, Name: name, Labels: IngressGatewayLabels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: IngressGatewayLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: map[string]string{"inject.istio.io/templates": "gateway"}},
				Spec: corev1.PodSpec{
					ServiceAccountName: sa.Name,
					// "auto": the injector puts the proxy image in, as Istio's gateway chart expects.
					Containers: []corev1.Container{{Name: "istio-proxy", Image: "auto"}},
				},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: IstioNamespace, Name: name, Labels: IngressGatewayLabels},
		Spec: corev1.ServiceSpec{
			Selector: IngressGatewayLabels,
			Ports: []corev1.ServicePort{
				{Name: "http2", Port: 80, TargetPort: intstr.FromInt32(8080)},
				{Name: "https", Port: 443, TargetPort: intstr.FromInt32(8443)},
			},
		},
	}
	for _, o := range []client.Object{sa, deploy, svc} {
		if err := e.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating the ingress gateway's %T: %w", o, err)
		}
	}
	return nil
}

// Stop stops istiod; it returns an error if it had exited on its own.
func (i *Istiod) Stop() error { return i.proc.stop(10 * time.Second) }

// refusedByIstio returns nil once a dry-run create of a VirtualService with a negative weight
// (which Istio's validation refuses, and its CRD schema does not) is refused by istiod's
// webhook.
func (e *Env) refusedByIstio(ctx context.Context) error {
	vs := &unstructured.Unstructured{}
	vs.SetAPIVersion("networking.istio.io/v1")
	vs.SetKind("VirtualService")
	vs.SetNamespace(IstioNamespace)
	vs.SetName("testenv-validation-probe")
	_ = unstructured.SetNestedStringSlice(vs.Object, []string{"probe"}, "spec", "hosts")
	_ = unstructured.SetNestedSlice(vs.Object, []any{map[string]any{"route": []any{map[string]any{
		"destination": map[string]any{"host": "probe"}, "weight": int64(-5)}}}}, "spec", "http")
	err := e.Client.Create(ctx, vs, client.DryRunAll)
	switch {
	case err == nil:
		return errors.New("an invalid VirtualService was accepted")
	case strings.Contains(err.Error(), "validation.istio.io"):
		return nil
	default:
		return err
	}
}

// renderIstioCharts renders Istio's base and istio-discovery charts from the module cache
// the way an operator installs istiod, with the webhooks reached by URL on 127.0.0.1, and
// returns what the test bed needs of them: the mesh configuration and injection templates
// (ConfigMaps) and the webhook configurations. istiod's Deployment, Service and RBAC are
// left out: it runs as a local process with the admin kubeconfig.
// TracingProvider is the tracing provider the test bed's mesh configuration declares (a
// Zipkin in istio-system, which is not deployed: spans go nowhere, the configuration is
// what is checked).
const TracingProvider = "zipkin"

// AuthorizationProvider is the external authorizer the test bed's mesh configuration
// declares (an envoyExtAuthzHttp provider, not deployed either).
const AuthorizationProvider = "ext-authz"

func renderIstioCharts(helm string, i *Istiod) ([]*unstructured.Unstructured, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	istio, err := ModuleDir(filepath.Join(root, "hack", "tools", "istio"), istioToolModule)
	if err != nil {
		return nil, err
	}
	ca := base64.StdEncoding.EncodeToString(i.CABundle)
	common := []string{"--namespace", IstioNamespace,
		"--set", "global.istioNamespace=" + IstioNamespace,
		"--set", "base.validationURL=https://" + i.WebhookAddress + "/validate",
		"--set", "base.validationCABundle=" + ca,
	}
	charts := []struct {
		name, dir string
		args      []string
		keep      map[string]bool // kind/name
	}{
		{"base", "base", nil, map[string]bool{
			"ValidatingWebhookConfiguration/istiod-default-validator": true,
		}},
		{"istiod", "istio-control/istio-discovery", []string{
			"--set", "istiodRemote.injectionURL=https://" + i.WebhookAddress + "/inject",
			"--set", "istiodRemote.injectionCABundle=" + ca,
			// A tracing provider, as a mesh with Zipkin declares it: MeshPolicies name it.
			"--set", "meshConfig.extensionProviders[0].name=" + TracingProvider,
			"--set", "meshConfig.extensionProviders[0].zipkin.service=zipkin." + IstioNamespace + ".svc.cluster.local",
			"--set", "meshConfig.extensionProviders[0].zipkin.port=9411",
			// And an external authorizer, for MeshPolicies whose authorization is CUSTOM.
			"--set", "meshConfig.extensionProviders[1].name=" + AuthorizationProvider,
			"--set", "meshConfig.extensionProviders[1].envoyExtAuthzHttp.service=ext-authz." + IstioNamespace + ".svc.cluster.local",
			"--set", "meshConfig.extensionProviders[1].envoyExtAuthzHttp.port=8000",
		}, map[string]bool{
			"ConfigMap/istio":                                     true,
			"ConfigMap/istio-sidecar-injector":                    true,
			"MutatingWebhookConfiguration/istio-sidecar-injector": true,
		}},
	}
	var out []*unstructured.Unstructured
	for _, c := range charts {
		args := append([]string{"template", c.name, filepath.Join(istio, "manifests", "charts", c.dir)}, common...)
		cmd := exec.Command(helm, append(args, c.args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		manifest, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("helm template %s: %w: %s", c.dir, err, strings.TrimSpace(stderr.String()))
		}
		objs, err := DecodeManifests(manifest)
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", c.dir, err)
		}
		found := 0
		for _, o := range objs {
			if c.keep[o.GetKind()+"/"+o.GetName()] {
				out = append(out, o)
				found++
			}
		}
		if found != len(c.keep) {
			return nil, fmt.Errorf("chart %s rendered %d of the %d objects the test bed needs (%v)", c.dir, found, len(c.keep), c.keep)
		}
	}
	return out, nil
}

// DecodeManifests splits a multi-document YAML stream into objects, skipping empty ones.
func DecodeManifests(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(obj) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: obj})
	}
}

// applyAll server-side applies objects as the test bed.
func (e *Env) applyAll(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		if o.GetNamespace() == "" && o.GetKind() == "ConfigMap" {
			o.SetNamespace(IstioNamespace)
		}
		err := e.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), client.FieldOwner("canopy-testenv"), client.ForceOwnership)
		if err != nil {
			return fmt.Errorf("applying %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return nil
}

// LabelForInjection labels a namespace istio-injection=enabled, as users do for a mesh.
func (e *Env) LabelForInjection(ctx context.Context, namespace string) error {
	var ns corev1.Namespace
	if err := e.Client.Get(ctx, client.ObjectKey{Name: namespace}, &ns); err != nil {
		return err
	}
	patch := client.MergeFrom(ns.DeepCopy())
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	ns.Labels[InjectionLabel] = "enabled"
	return e.Client.Patch(ctx, &ns, patch)
}

func freePorts(n int) ([]int, error) {
	// Hold every listener until all are chosen, so that no two are the same.
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeServingCert writes a CA and a serving certificate it signed for istiod's webhooks
// (127.0.0.1, and the names a real istiod's certificate carries) into dir.
func writeServingCert(dir string) (certFile, keyFile, caFile string, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "canopy test bed istiod CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", "", "", err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return "", "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "istiod.istio-system.svc"},
		DNSNames:     []string{"istiod.istio-system.svc", "istiod.istio-system.svc.cluster.local", "localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", "", "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", "", err
	}
	certFile, keyFile, caFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{certFile, "CERTIFICATE", der}, {keyFile, "EC PRIVATE KEY", keyDER}, {caFile, "CERTIFICATE", caDER}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			return "", "", "", err
		}
	}
	return certFile, keyFile, caFile, nil
}
