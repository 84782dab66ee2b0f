package render

import (
	"encoding/json"
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

func ptr[T any](v T) *T { return &v }

// reviews is Bookinfo's reviews service delivered by a Canary.
func reviewsCanary() *meshv1.Canary {
	return &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "bookinfo"},
		Spec: meshv1.CanarySpec{
			TargetRef: meshv1.TargetRef{APIVersion: "apps/v1", Kind: "Deployment", Name: "reviews"},
			Service: meshv1.CanaryService{
				Port:     9080,
				PortName: "http",
			},
			Analysis: meshv1.CanaryAnalysis{Interval: "1m", Threshold: 5, StepWeight: ptr[int32](10), MaxWeight: 50},
		},
	}
}

func reviewsTarget() *appsv1.Deployment {
	return &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "reviews", Namespace: "bookinfo", UID: "1234", ResourceVersion: "42",
			Labels:      map[string]string{"app": "reviews", "argocd.argoproj.io/instance": "bookinfo"},
			Annotations: map[string]string{"deployment.kubernetes.io/revision": "3"},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "reviews"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      map[string]string{"app": "reviews", "version": "v2"},
					Annotations: map[string]string{"sidecar.istio.io/inject": "true"},
				},
				Spec: corev1.PodSpec{
					ServiceAccountName: "bookinfo-reviews",
					Containers: []corev1.Container{{
						Name:  "reviews",
						Image: "docker.io/istio/examples-bookinfo-reviews-v2:1.20.2",
						Ports: []corev1.ContainerPort{{ContainerPort: 9080, Protocol: corev1.ProtocolTCP}},
					}},
				},
			},
		},
	}
}

// asYAML is the object as it is applied, for golden comparisons and failure output.
func asYAML(t *testing.T, obj Object) string {
	t.Helper()
	u, err := ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	b, err := yaml.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// expectYAML compares the applied form of obj with want, a YAML document.
func expectYAML(t *testing.T, obj Object, want string) {
	t.Helper()
	u, err := ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON, err := yaml.YAMLToJSON([]byte(want))
	if err != nil {
		t.Fatalf("bad want YAML: %v", err)
	}
	var w map[string]any
	if err := json.Unmarshal(wantJSON, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(u.Object, w) {
		t.Errorf("%T %s differs.\n--- got\n%s--- want\n%s", obj, obj.GetName(), asYAML(t, obj), want)
	}
}

// reviewsPolicy is a MeshPolicy for the reviews Service: STRICT mTLS, resilience, two
// routes (a fault drill and a legacy path) and an ingress with a certificate.
func reviewsPolicy() *meshv1.MeshPolicy {
	return &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "bookinfo"},
		Spec: meshv1.MeshPolicySpec{
			TargetRef: meshv1.ServiceRef{Kind: "Service", Name: "reviews"},
			MTLS:      &meshv1.MTLS{Mode: meshv1.MTLSStrict},
			Resilience: &meshv1.Resilience{
				Timeout:        "5s",
				Retries:        &meshv1.HTTPRetry{Attempts: 3, PerTryTimeout: "2s", RetryOn: "5xx,reset"},
				LoadBalancer:   "ROUND_ROBIN",
				CircuitBreaker: &meshv1.CircuitBreaker{Consecutive5xxErrors: ptr[int32](5), Interval: "10s", BaseEjectionTime: "30s"},
			},
			Routes: []meshv1.Route{
				{
					Name:    "ratings-drill",
					Match:   &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Prefix: ptr("/reviews/drill")}},
					Timeout: "3s",
					Retries: &meshv1.HTTPRetry{Attempts: 2, PerTryTimeout: "1s", RetryOn: "5xx"},
					Fault: &meshv1.Fault{
						Delay: &meshv1.FaultDelay{Percentage: 10, FixedDelay: "7s"},
						Abort: &meshv1.FaultAbort{Percentage: 5.5, HTTPStatus: 503},
					},
				},
				{
					Name:    "legacy",
					Match:   &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Exact: ptr("/v1/reviews")}},
					Rewrite: &meshv1.Rewrite{URI: "/reviews"},
					Headers: &meshv1.Headers{Request: &meshv1.HeaderOperations{Set: map[string]string{"x-legacy": "true"}}},
				},
			},
			Ingress: &meshv1.Ingress{
				Gateway: meshv1.IngressGateway{Namespace: "istio-system", Selector: map[string]string{"istio": "ingressgateway"}},
				Hosts:   []string{"reviews.bookinfo.example.com"},
				TLS:     &meshv1.IngressTLS{IssuerRef: meshv1.IssuerRef{Kind: "ClusterIssuer", Name: "letsencrypt"}, HTTPSRedirect: true},
			},
		},
	}
}

func renamed(d *appsv1.Deployment, name string) *appsv1.Deployment {
	d.Name = name
	return d
}

func equalMaps(a, b map[string]string) bool { return reflect.DeepEqual(a, b) }

func labelsSet(m map[string]string) labels.Set { return labels.Set(m) }

func yamlToJSON(t *testing.T, y string) []byte {
	t.Helper()
	b, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
