package render

import (
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utiljson "k8s.io/apimachinery/pkg/util/json"
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
func asYAML(t testing.TB, obj Object) string {
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
	if err := utiljson.Unmarshal(wantJSON, &w); err != nil {
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

// paymentPolicy is the e-commerce mesh's payment-processing policy: every field set.
func paymentPolicy() *meshv1.MeshPolicy {
	return &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "payment-processing", Namespace: "shop"},
		Spec: meshv1.MeshPolicySpec{
			TargetRef: meshv1.ServiceRef{Kind: "Service", Name: "payment-processing"},
			MTLS: &meshv1.MTLS{Mode: meshv1.MTLSStrict, PortLevel: []meshv1.PortMTLS{
				{Port: 9090, Mode: meshv1.MTLSPermissive},
			}},
			Authorization: &meshv1.Authorization{
				Action:      "ALLOW",
				DefaultDeny: true,
				Rules: []meshv1.AuthorizationRule{
					{
						From: []meshv1.AuthorizationSource{
							{ServiceAccounts: []string{"shop/order-management", "shop/checkout"}},
							{Namespaces: []string{"shop-admin"}, Principals: []string{"cluster.local/ns/shop/sa/auditor"}},
						},
						To: []meshv1.AuthorizationOperation{{Methods: []string{"POST", "GET"}, Paths: []string{"/payments*", "*/status"}, Ports: []int32{8080}}},
					},
					{
						To: []meshv1.AuthorizationOperation{{Methods: []string{"GET"}, Paths: []string{"/healthz"}}},
					},
				},
			},
			Resilience: &meshv1.Resilience{
				Timeout:        "2s",
				Retries:        &meshv1.HTTPRetry{Attempts: 2, PerTryTimeout: "500ms", RetryOn: "5xx,connect-failure"},
				CircuitBreaker: &meshv1.CircuitBreaker{Consecutive5xxErrors: ptr[int32](3), Interval: "5s", BaseEjectionTime: "1m", MaxEjectionPercent: ptr[int32](30)},
				ConnectionPool: &meshv1.ConnectionPool{TCP: &meshv1.TCPConnectionPool{MaxConnections: ptr[int32](50)}, HTTP: &meshv1.HTTPConnectionPool{HTTP1MaxPendingRequests: ptr[int32](20)}},
				LoadBalancer:   "LEAST_REQUEST",
			},
			Routes: []meshv1.Route{
				{Name: "refunds", Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Prefix: ptr("/refunds")}, Method: &meshv1.StringMatch{Exact: ptr("POST")}}, Timeout: "10s", Port: ptr[int32](8080)},
				{Name: "drill", Match: &meshv1.HTTPMatch{Headers: map[string]meshv1.StringMatch{"x-drill": {Exact: ptr("yes")}}, QueryParams: map[string]meshv1.StringMatch{"mode": {Regex: ptr("^(abort|delay)$")}}},
					Fault: &meshv1.Fault{Abort: &meshv1.FaultAbort{Percentage: 50, HTTPStatus: 503}}, Retries: &meshv1.HTTPRetry{Attempts: 0}},
				{Name: "v2-api", Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Regex: ptr("^/v2/.*")}}, Rewrite: &meshv1.Rewrite{URI: "/", Authority: "payment-processing.shop.svc.cluster.local"},
					Headers: &meshv1.Headers{Response: &meshv1.HeaderOperations{Remove: []string{"server"}}}},
			},
			ExternalServices: []meshv1.ExternalService{
				{Name: "stripe", Hosts: []string{"api.stripe.com"}, Ports: []meshv1.ExternalPort{{Number: 443, Protocol: "HTTPS"}}, Resolution: "DNS",
					TLSOrigination: &meshv1.TLSOrigination{Port: 80}},
				{Name: "fraud-check", Hosts: []string{"*.fraud.example.net"}, Ports: []meshv1.ExternalPort{{Number: 443, Protocol: "TLS", Name: "tls"}}, Resolution: "NONE"},
			},
			Ingress: &meshv1.Ingress{
				Gateway: meshv1.IngressGateway{Namespace: "istio-system", Selector: map[string]string{"istio": "ingressgateway"}},
				Hosts:   []string{"pay.shop.example.com"},
				TLS:     &meshv1.IngressTLS{IssuerRef: meshv1.IssuerRef{Kind: "ClusterIssuer", Name: "letsencrypt"}, HTTPSRedirect: true},
			},
			Telemetry: &meshv1.Telemetry{Tracing: &meshv1.Tracing{SamplingPercentage: 10}, AccessLogging: ptr(true)},
		},
	}
}

func paymentService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "payment-processing", Namespace: "shop"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "payment-processing"},
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
				{Name: "http-metrics", Port: 9090, TargetPort: intstr.FromInt32(9090), Protocol: corev1.ProtocolTCP},
			},
		},
	}
}

type corev1Service = corev1.Service
