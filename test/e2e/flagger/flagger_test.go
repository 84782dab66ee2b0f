// Package flagger runs Flagger's own example Canaries, with only their apiVersion changed,
// against canopy on the local cluster with its admission webhooks installed, as deployed:
// what the apiserver admits, what warnings the client sees, and what canopy generates.
package flagger

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/e2e/fixture"
	"canopy.dev/canopy/test/inprocess"
	"canopy.dev/canopy/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Options{LocalCluster: true, Webhooks: true}, &env)
}

// A Flagger Canary whose apiVersion alone is changed is admitted; the client is warned of
// each field canopy does not act on, by name; the generated Services carry the labels,
// annotations and container ports the Canary asks for.
func TestFlaggerCanaryIsAdmittedWithWarnings(t *testing.T) {
	// The tutorial binds a gateway of istio-system and routes app.example.com: claims beyond
	// the namespace, which the operator allows, as its administrator would.
	inprocess.Start(t, env, manager.Options{AllowedGatewayNamespaces: "istio-system", AllowedHosts: "app.example.com"})
	ns := env.CreateNamespace(t)
	createPodinfo(t, ns)

	c, warned := env.WarningClient(t)
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(tutorial(t, "istio-progressive-delivery.yaml"), &obj.Object); err != nil {
		t.Fatal(err)
	}
	obj.SetNamespace(ns)
	// Strict, as kubectl sends it: an unknown field would be refused, not dropped.
	if err := c.Create(t.Context(), obj, client.FieldValidation("Strict")); err != nil {
		t.Fatalf("the Flagger Canary was refused: %v", err)
	}
	want := []string{
		"spec.provider is not supported by canopy; ignored (canopy routes with spec.routing.provider: istio, the default, or gatewayapi)",
		"spec.service.trafficPolicy.tls is not supported by canopy; ignored (use spec.service.trafficPolicy.tlsMode)",
		"spec.analysis.alerts is not supported by canopy; ignored (event webhooks receive every event)",
		"spec.analysis.webhooks[1].muteAlert is not supported by canopy; ignored",
	}
	if got := warned.All(); !slices.Equal(got, want) {
		t.Errorf("warnings\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	fixture.WaitPhase(t, env.Client, ns, "podinfo", meshv1.PhaseInitialized)
	ports := "http:9898/TCP->9898 http-metrics:9797/TCP->9797 grpc:9999/TCP->9999"
	for _, s := range []struct {
		name        string
		labels      map[string]string
		annotations map[string]string
	}{
		{"podinfo", map[string]string{"team": "podinfo"}, map[string]string{"external-dns.alpha.kubernetes.io/hostname": "app.example.com"}},
		{"podinfo-primary", map[string]string{"role": "primary"}, nil},
		{"podinfo-canary", nil, map[string]string{"prometheus.io/scrape": "true"}},
	} {
		svc := &corev1.Service{}
		if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: s.name}, svc); err != nil {
			t.Fatal(err)
		}
		if got := portsOf(svc); got != ports {
			t.Errorf("Service %s ports %s, want %s", s.name, got, ports)
		}
		for k, v := range s.labels {
			if svc.Labels[k] != v {
				t.Errorf("Service %s labels %v, want %s=%s", s.name, svc.Labels, k, v)
			}
		}
		for k, v := range s.annotations {
			if svc.Annotations[k] != v {
				t.Errorf("Service %s annotations %v, want %s=%s", s.name, svc.Annotations, k, v)
			}
		}
		if svc.Labels[meshv1.LabelManagedBy] != meshv1.ManagedByValue {
			t.Errorf("Service %s lost canopy's labels: %v", s.name, svc.Labels)
		}
	}

	// An annotation removed from the Canary goes from the Service; one another writer set stays.
	apex := &corev1.Service{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "podinfo"}, apex); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(apex.DeepCopy())
	apex.Annotations["cloud.example.com/lb"] = "internal"
	if err := env.Client.Patch(t.Context(), apex, patch); err != nil {
		t.Fatal(err)
	}
	cn := fixture.Canary(t, env.Client, ns, "podinfo")
	cpatch := client.MergeFrom(cn.DeepCopy())
	cn.Spec.Service.Apex.Annotations = nil
	if err := env.Client.Patch(t.Context(), cn, cpatch); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, func() error {
		svc := &corev1.Service{}
		if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "podinfo"}, svc); err != nil {
			return err
		}
		if _, ok := svc.Annotations["external-dns.alpha.kubernetes.io/hostname"]; ok || svc.Annotations["cloud.example.com/lb"] != "internal" {
			return fmt.Errorf("apex annotations %v, want external-dns's gone and the other writer's kept", svc.Annotations)
		}
		return nil
	})
}

// The Canaries of Flagger's other tutorials, apiVersion changed, are admitted as kubectl
// sends them, each warned of exactly the fields canopy ignores.
func TestFlaggerTutorialCanariesAreAdmitted(t *testing.T) {
	// The tutorials' claims beyond the namespace, which the operator allows, as its
	// administrator would: their hosts, and MetricTemplates in flagger-system.
	inprocess.Start(t, env, manager.Options{AllowedGatewayNamespaces: "istio-system", AllowedHosts: "app.example.com,www.example.com", AllowCrossNamespace: true})
	ns := env.CreateNamespace(t)
	for _, tc := range []struct {
		name     string
		warnings []string
	}{
		{"istio-ab-testing", []string{
			"spec.service.trafficPolicy.tls is not supported by canopy; ignored (use spec.service.trafficPolicy.tlsMode)",
		}},
		{"gatewayapi-progressive-delivery", []string{
			"spec.service.gatewayRefs is not supported by canopy; ignored (use spec.service.gateways with spec.routing.provider: gatewayapi)",
		}},
		{"kubernetes-blue-green", []string{
			"spec.provider is not supported by canopy; ignored (canopy routes with spec.routing.provider: istio, the default, or gatewayapi)",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, warned := env.WarningClient(t)
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(tutorial(t, tc.name+".yaml"), &obj.Object); err != nil {
				t.Fatal(err)
			}
			obj.SetNamespace(ns)
			if err := c.Create(t.Context(), obj, client.FieldValidation("Strict"), client.DryRunAll); err != nil {
				t.Fatalf("refused: %v", err)
			}
			if got := warned.All(); !slices.Equal(got, tc.warnings) {
				t.Errorf("warnings\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.warnings, "\n"))
			}
		})
	}
}

// A label canopy sets itself is refused at admission, naming the field.
func TestServiceMetadataCannotSetCanopysLabels(t *testing.T) {
	inprocess.Start(t, env, manager.Options{})
	ns := env.CreateNamespace(t)
	cn := &meshv1.Canary{}
	if err := yaml.Unmarshal(tutorial(t, "istio-progressive-delivery.yaml"), cn); err != nil {
		t.Fatal(err)
	}
	cn.Namespace = ns
	cn.Spec.Service.Gateways = nil
	cn.Spec.Service.Canary.Labels = map[string]string{meshv1.LabelOwnerName: "other"}
	err := env.Client.Create(t.Context(), cn)
	if err == nil || !strings.Contains(err.Error(), "spec.service.canary.labels") || !strings.Contains(err.Error(), "is set by canopy") {
		t.Fatalf("got %v, want a refusal naming spec.service.canary.labels", err)
	}
}

// createPodinfo creates Flagger's podinfo Deployment (its three container ports) and its
// HorizontalPodAutoscaler.
func createPodinfo(t *testing.T, ns string) {
	t.Helper()
	d := fixture.Deployment(ns, "podinfo", "ghcr.io/stefanprodan/podinfo:6.0.0", 1)
	d.Spec.Template.Spec.Containers[0].Ports = []corev1.ContainerPort{
		{Name: "http", ContainerPort: 9898, Protocol: corev1.ProtocolTCP},
		{Name: "http-metrics", ContainerPort: 9797, Protocol: corev1.ProtocolTCP},
		{Name: "grpc", ContainerPort: 9999, Protocol: corev1.ProtocolTCP},
	}
	if err := env.Client.Create(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	hpa := &autoscalingv2.HorizontalPodAutoscaler{}
	hpa.Namespace, hpa.Name = ns, "podinfo"
	hpa.Spec = autoscalingv2.HorizontalPodAutoscalerSpec{
		ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "podinfo"},
		MinReplicas:    ptr.To[int32](1),
		MaxReplicas:    4,
		Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
			Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](99)},
		}}},
	}
	if err := env.Client.Create(t.Context(), hpa); err != nil {
		t.Fatal(err)
	}
}

// tutorial reads the Canary of a Flagger tutorial from testdata: Flagger's YAML with its
// apiVersion changed (and its comments dropped).
func tutorial(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func portsOf(svc *corev1.Service) string {
	var out []string
	for _, p := range svc.Spec.Ports {
		out = append(out, fmt.Sprintf("%s:%d/%s->%s", p.Name, p.Port, p.Protocol, p.TargetPort.String()))
	}
	return strings.Join(out, " ")
}
