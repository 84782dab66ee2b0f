package meshsim

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	apinetworkingv1 "istio.io/api/networking/v1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"canopy.dev/canopy/test/testenv"
)

var env *testenv.Env

// The unit tests need no cluster; with -short they run alone.
func TestMain(m *testing.M) { testenv.Main(m, testenv.Options{}, &env) }

// createReviews creates, in ns, what canopy generates for a Canary of reviews: a primary
// and a canary Deployment, a Service for each, and a VirtualService for the apex host
// splitting primaryWeight/canaryWeight.
func createReviews(t *testing.T, ns string, primaryWeight, canaryWeight int32) *networkingv1.VirtualService {
	t.Helper()
	ctx := t.Context()
	// Deployment name -> the Service selecting its pods.
	for name, svc := range map[string]string{"reviews-primary": "reviews-primary", "reviews": "reviews-canary"} {
		labels := map[string]string{"app": name}
		objs := []client.Object{
			&appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: appsv1.DeploymentSpec{
					Replicas: ptr.To[int32](1),
					Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels},
						Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "reviews", Image: "reviews:v1"}}},
					},
				},
			},
			&corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: svc},
				Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}},
			},
		}
		for _, o := range objs {
			if err := env.Client.Create(ctx, o); err != nil {
				t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
			}
		}
	}
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"}}
	vs.Spec.Hosts = []string{"reviews"}
	vs.Spec.Http = []*apinetworkingv1.HTTPRoute{{Name: "primary", Route: []*apinetworkingv1.HTTPRouteDestination{
		{Destination: &apinetworkingv1.Destination{Host: "reviews-primary"}, Weight: primaryWeight},
		{Destination: &apinetworkingv1.Destination{Host: "reviews-canary"}, Weight: canaryWeight},
	}}}
	if err := env.Client.Create(ctx, vs); err != nil {
		t.Fatalf("creating the VirtualService: %v", err)
	}
	return vs
}

func startSim(t *testing.T, opts Options) *Sim {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sim, err := Start(ctx, env.Config, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		<-sim.Done()
	})
	return sim
}

// TestFollowsTheCluster drives the simulator by hand against a real apiserver: it routes
// what the VirtualService says, and follows an edit of the weights and of a Deployment's
// behaviour.
func TestFollowsTheCluster(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	vs := createReviews(t, ns, 90, 10)
	sim := startSim(t, Options{TickInterval: -1, Namespaces: []string{ns}})
	ctx := t.Context()

	if err := sim.Tick(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s := sim.Stats()
	if p, c := s.Requests(toWorkload("reviews-primary")), s.Requests(toWorkload("reviews")); p != 450 || c != 50 {
		t.Fatalf("primary %d, canary %d; want 450 and 50\n%+v", p, c, s.Routes)
	}

	// Shift to 50/50 and make the canary fail half its requests.
	vs.Spec.Http[0].Route[0].Weight, vs.Spec.Http[0].Route[1].Weight = 50, 50
	if err := env.Client.Update(ctx, vs); err != nil {
		t.Fatal(err)
	}
	dep := &appsv1.Deployment{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reviews"}, dep); err != nil {
		t.Fatal(err)
	}
	dep.Spec.Template.Annotations = map[string]string{AnnotationErrorRate: "0.5"}
	if err := env.Client.Update(ctx, dep); err != nil {
		t.Fatal(err)
	}
	// The simulator reads through its informers: wait until they saw both edits.
	testenv.Eventually(t, time.Minute, func() error {
		w, err := listWorld(ctx, sim.reader)
		if err != nil {
			return err
		}
		for _, d := range w.Deployments {
			if d.Name == "reviews" && d.Spec.Template.Annotations[AnnotationErrorRate] == "0.5" &&
				len(w.VirtualServices) == 1 && w.VirtualServices[0].Spec.Http[0].Route[1].Weight == 50 {
				return nil
			}
		}
		return fmt.Errorf("the simulator's informers have not seen the edits yet")
	})
	if err := sim.Tick(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s = sim.Stats()
	if c := s.Requests(toWorkload("reviews")); c != 50+250 {
		t.Fatalf("canary %d after the shift, want 300", c)
	}
	if e := s.Requests(func(k RouteKey) bool { return k.Workload == "reviews" && k.Code == 500 }); e != 125 {
		t.Fatalf("canary errors %d, want 125", e)
	}

	// The same, as Prometheus would scrape it.
	resp, err := http.Get("http://" + sim.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`destination_service="reviews-canary.` + ns + `.svc.cluster.local"`,
		`destination_workload="reviews"`,
		`destination_workload_namespace="` + ns + `"`,
		`reporter="destination"`,
		`response_code="500"`,
		`istio_request_duration_milliseconds_bucket{`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
