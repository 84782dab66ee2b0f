package meshsim

import (
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/test/testenv"
)

// TestIstiodEgressGateway: what canopy renders for an external service reached through an
// egress gateway, translated by a real istiod, sends the sidecars' requests for the host to
// the egress gateway's pods, and has the gateway route the host to the external host. istioctl analyze finds
// nothing in either namespace.
func TestIstiodEgressGateway(t *testing.T) {
	testenv.SkipIfShort(t)
	ns, gwNS := env.CreateNamespace(t), env.CreateNamespace(t)
	ctx := t.Context()
	labels := map[string]string{"app": "egressgw"}
	for _, o := range []client.Object{
		&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: gwNS, Name: "egressgw"},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "proxy", Image: "proxyv2"}}}}},
		},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: gwNS, Name: "egressgw"},
			Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}},
	} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	p := &meshv1.MeshPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}
	p.Spec.TargetRef.Name = "web"
	p.Spec.ExternalServices = []meshv1.ExternalService{{
		Name: "cnn", Hosts: []string{"edition.cnn.com"}, Ports: []meshv1.ExternalPort{{Number: 80, Protocol: "HTTP"}},
		EgressGateway: &meshv1.EgressGateway{Namespace: gwNS, Selector: labels, Service: "egressgw"},
	}}
	svc := &corev1.Service{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, svc); err != nil {
		t.Fatal(err)
	}
	set, err := render.MeshPolicyObjects(p, svc, render.MeshPolicyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range set.Objects() {
		if err := env.Client.Create(ctx, o.(client.Object)); err != nil {
			t.Fatal(err)
		}
	}

	sim := startSim(t, Options{TickInterval: -1, Namespaces: []string{ns, gwNS}})
	toGateway := "outbound|80||egressgw." + gwNS + ".svc.cluster.local"
	toHost := "outbound|80||edition.cnn.com"
	waitForIstiod(t, sim, ns, func(w *World, cfg *envoyConfig) error {
		vh := virtualHost(cfg.Routes["80"], "edition.cnn.com")
		if vh == nil || len(vh.Routes) == 0 || vh.Routes[0].GetRoute().GetCluster() != toGateway {
			return fmt.Errorf("the sidecar does not route edition.cnn.com to the egress gateway yet")
		}
		return nil
	})
	// The simulator sends no request on from the gateway's pod: ask istiod what it
	// sends the gateway itself.
	router := node{Type: "router", Namespace: gwNS, Name: "egressgw-meshsim", Labels: labels, ServiceAccount: "egressgw"}
	router.IP = testNetIP(router.Namespace + "/" + router.Name)
	testenv.Eventually(t, time.Minute, func() error {
		cfg := sim.xds.config(router, nil)
		if cfg == nil {
			return fmt.Errorf("the egress gateway has no configuration yet")
		}
		var names []string
		for _, n := range cfg.httpRouteNames() {
			names = append(names, n...)
		}
		if cfg = sim.xds.config(router, names); cfg == nil {
			return fmt.Errorf("the egress gateway has no route configurations yet")
		}
		for _, rc := range cfg.Routes {
			if vh := virtualHost(rc, "edition.cnn.com"); vh != nil && len(vh.Routes) > 0 && vh.Routes[0].GetRoute().GetCluster() == toHost {
				if _, ok := cfg.Clusters[toHost]; ok {
					return nil
				}
			}
		}
		return fmt.Errorf("the egress gateway does not route edition.cnn.com to %s yet (routes %v)", toHost, names)
	})
	if err := sim.Tick(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s := sim.Stats()
	viaGateway := s.Requests(func(k RouteKey) bool { return k.Cluster == toGateway && k.Workload == "egressgw" && k.Code == 200 })
	if viaGateway != 500 {
		t.Errorf("%d of the sidecar's 500 requests reached the egress gateway's pod, want all\n%+v", viaGateway, s.Routes)
	}
}
