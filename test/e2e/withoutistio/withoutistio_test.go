// Package withoutistio runs canopy on an API server that does not serve Istio's,
// cert-manager's or the Gateway API's APIs yet: the operator must keep running, say why nothing happens, and
// start working as soon as their CRDs are installed, without a restart.
package withoutistio

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Options{WithoutIstio: true, WithoutCertManager: true, WithoutGatewayAPI: true}, &env)
}

func TestCanopyWaitsForIstioWithoutARestart(t *testing.T) {
	testenv.SkipIfShort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- manager.Run(ctx, env.Config, manager.Options{InProcess: true, MetricsAddr: "0", ProbeAddr: "0", MaxConcurrent: 2, QPS: 100, Burst: 200,
			// The policy's ingress: a gateway namespace made below, a ClusterIssuer, a host.
			AllowedGatewayNamespaces: "*", AllowedClusterIssuers: "ca", AllowedHosts: "reviews.example.com"})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the operator exited with an error: %v", err)
		}
	})

	ns := env.CreateNamespace(t)
	labels := map[string]string{"app": "reviews"}
	one := int32(1)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "reviews", Image: "reviews:v1"}}},
			},
		},
	}
	step := int32(10)
	c := &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec: meshv1.CanarySpec{
			TargetRef: meshv1.TargetRef{APIVersion: "apps/v1", Kind: "Deployment", Name: "reviews"},
			Service:   meshv1.CanaryService{Port: 9080},
			Analysis:  meshv1.CanaryAnalysis{Interval: "1m", StepWeight: &step, MaxWeight: 50},
		},
	}
	gateways := env.CreateNamespace(t)
	policy := &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec: meshv1.MeshPolicySpec{
			TargetRef: meshv1.ServiceRef{Kind: "Service", Name: "reviews"},
			Ingress: &meshv1.Ingress{
				Gateway: meshv1.IngressGateway{Namespace: gateways, Selector: map[string]string{"istio": "ingressgateway"}},
				Hosts:   []string{"reviews.example.com"},
				TLS:     &meshv1.IngressTLS{IssuerRef: meshv1.IssuerRef{Kind: "ClusterIssuer", Name: "ca", Group: "cert-manager.io"}},
			},
		},
	}
	for _, o := range []client.Object{d, c, policy} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}

	// The operator runs, and the Canary says why nothing happens.
	testenv.Eventually(t, time.Minute, func() error {
		got := &meshv1.Canary{}
		if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(c), got); err != nil {
			return err
		}
		ready := meta.FindStatusCondition(got.Status.Conditions, meshv1.ConditionReady)
		if ready == nil || ready.Reason != meshv1.ReasonMeshAPIMissing {
			return fmt.Errorf("Ready condition %+v, want reason %s", ready, meshv1.ReasonMeshAPIMissing)
		}
		return nil
	})

	// Istio is installed: canopy starts working on its own.
	istio, err := testenv.IstioCRDPath()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{Paths: []string{istio}}); err != nil {
		t.Fatalf("installing Istio's CRDs: %v", err)
	}
	testenv.Eventually(t, 2*time.Minute, func() error {
		got := &meshv1.Canary{}
		if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(c), got); err != nil {
			return err
		}
		if got.Status.Phase != meshv1.PhaseInitializing {
			return fmt.Errorf("phase %q, want Initializing once Istio is there (conditions %+v)", got.Status.Phase, got.Status.Conditions)
		}
		return env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews-primary"}, &appsv1.Deployment{})
	})

	// A Canary routing with the Gateway API waits for its CRDs, and says so.
	ratings := d.DeepCopy()
	ratings.ObjectMeta = metav1.ObjectMeta{Namespace: ns, Name: "ratings"}
	ratings.Spec.Selector.MatchLabels = map[string]string{"app": "ratings"}
	ratings.Spec.Template.Labels = map[string]string{"app": "ratings"}
	byRoute := c.DeepCopy()
	byRoute.ObjectMeta = metav1.ObjectMeta{Namespace: ns, Name: "ratings"}
	byRoute.Spec.TargetRef.Name = "ratings"
	byRoute.Spec.Routing = &meshv1.CanaryRouting{Provider: meshv1.RoutingGatewayAPI}
	for _, o := range []client.Object{ratings, byRoute} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, time.Minute, func() error {
		got := &meshv1.Canary{}
		if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(byRoute), got); err != nil {
			return err
		}
		ready := meta.FindStatusCondition(got.Status.Conditions, meshv1.ConditionReady)
		if ready == nil || ready.Reason != meshv1.ReasonRoutingAPIMissing || !strings.Contains(ready.Message, "HTTPRoute") {
			return fmt.Errorf("Ready condition %+v, want reason %s naming HTTPRoute", ready, meshv1.ReasonRoutingAPIMissing)
		}
		return nil
	})

	// The Gateway API is installed: that Canary goes on, with no restart, and routes with
	// an HTTPRoute.
	gatewayAPI, err := testenv.GatewayAPICRDPath()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{Paths: []string{gatewayAPI}}); err != nil {
		t.Fatalf("installing the Gateway API's CRDs: %v", err)
	}
	testenv.Eventually(t, 2*time.Minute, func() error {
		got := &meshv1.Canary{}
		if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(byRoute), got); err != nil {
			return err
		}
		if ready := meta.FindStatusCondition(got.Status.Conditions, meshv1.ConditionReady); ready != nil && ready.Reason == meshv1.ReasonRoutingAPIMissing {
			return fmt.Errorf("the Canary still says %q", ready.Message)
		}
		return env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "ratings"}, &gwapiv1.HTTPRoute{})
	})

	// The MeshPolicy's ingress TLS still needs cert-manager, and says so.
	testenv.Eventually(t, time.Minute, func() error {
		got := &meshv1.MeshPolicy{}
		if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(policy), got); err != nil {
			return err
		}
		ready := meta.FindStatusCondition(got.Status.Conditions, meshv1.ConditionReady)
		if ready == nil || ready.Reason != meshv1.ReasonMeshAPIMissing || !strings.Contains(ready.Message, "cert-manager") {
			return fmt.Errorf("Ready condition %+v, want reason %s naming cert-manager", ready, meshv1.ReasonMeshAPIMissing)
		}
		return nil
	})

	// cert-manager is installed: canopy requests the ingress certificate on its own.
	certManager, err := testenv.CertManagerCRDPath()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{Paths: []string{certManager}}); err != nil {
		t.Fatalf("installing cert-manager's CRDs: %v", err)
	}
	testenv.Eventually(t, 2*time.Minute, func() error {
		certs := &cmv1.CertificateList{}
		if err := env.Client.List(t.Context(), certs, client.InNamespace(gateways)); err != nil {
			return err
		}
		if len(certs.Items) != 1 || certs.Items[0].Spec.IssuerRef.Name != "ca" {
			return fmt.Errorf("%d Certificates in the gateway namespace, want the policy's one", len(certs.Items))
		}
		got := &meshv1.MeshPolicy{}
		if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(policy), got); err != nil {
			return err
		}
		if ready := meta.FindStatusCondition(got.Status.Conditions, meshv1.ConditionReady); ready != nil && ready.Reason == meshv1.ReasonMeshAPIMissing {
			return fmt.Errorf("the policy still says %q", ready.Message)
		}
		return nil
	})
}
