package render

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
)

func TestCanaryServiceMetadata(t *testing.T) {
	c := reviewsCanary()
	c.Spec.Service.Apex = &meshv1.ServiceMetadata{
		Labels:      map[string]string{"team": "books"},
		Annotations: map[string]string{"external-dns.alpha.kubernetes.io/hostname": "reviews.example.com"},
	}
	c.Spec.Service.Canary = &meshv1.ServiceMetadata{Annotations: map[string]string{"prometheus.io/scrape": "true"}}
	set := renderCanary(t, c, progress.Routing{PrimaryWeight: 100}, nil)
	expectYAML(t, set.Services[0], `
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: bookinfo
  labels:`+canaryLabels+`
    team: books
  annotations:
    external-dns.alpha.kubernetes.io/hostname: reviews.example.com
spec:
  selector: {app: reviews-primary}
  ports:
  - {name: http, port: 9080, targetPort: 9080, protocol: TCP}
`)
	if a := set.Services[1].Annotations; len(a) != 0 {
		t.Errorf("primary Service annotations %v, want none", a)
	}
	if a := set.Services[2].Annotations["prometheus.io/scrape"]; a != "true" {
		t.Errorf("canary Service annotations %v, want prometheus.io/scrape", set.Services[2].Annotations)
	}

	for _, tc := range []struct {
		name  string
		meta  meshv1.ServiceMetadata
		field string
	}{
		{"canopy's label", meshv1.ServiceMetadata{Labels: map[string]string{meshv1.LabelManagedBy: "me"}}, "spec.service.primary.labels"},
		{"canopy's prefix", meshv1.ServiceMetadata{Annotations: map[string]string{"mesh.canopy.dev/revision": "x"}}, "spec.service.primary.annotations"},
		{"bad key", meshv1.ServiceMetadata{Labels: map[string]string{"a b": "x"}}, "spec.service.primary.labels"},
		{"bad value", meshv1.ServiceMetadata{Labels: map[string]string{"team": "a b"}}, "spec.service.primary.labels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := reviewsCanary()
			c.Spec.Service.Primary = &tc.meta
			_, err := CanaryObjects(c, reviewsTarget(), progress.Routing{PrimaryWeight: 100}, nil)
			expectFieldError(t, err, tc.field, meshv1.ReasonInvalidSpec)
		})
	}
}

func TestCanaryPortDiscovery(t *testing.T) {
	c := reviewsCanary()
	c.Spec.Service.PortDiscovery = true
	target := reviewsTarget()
	target.Spec.Template.Spec.Containers[0].Ports = []corev1.ContainerPort{
		{Name: "http", ContainerPort: 9080},                 // the main port: not again
		{Name: "http-metrics", ContainerPort: 9797},         // added
		{ContainerPort: 5353, Protocol: corev1.ProtocolUDP}, // added, named after its protocol
		{Name: "http", ContainerPort: 9081},                 // the main port's name: warned
		{Name: "other", ContainerPort: 9797},                // a number already there: warned
	}
	target.Spec.Template.Spec.Containers = append(target.Spec.Template.Spec.Containers,
		corev1.Container{Name: "sidecar", Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: 9999}}})
	set, err := CanaryObjects(c, target, progress.Routing{PrimaryWeight: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range set.Services {
		var got []string
		for _, p := range svc.Spec.Ports {
			got = append(got, p.Name+":"+string(p.Protocol)+":"+p.TargetPort.String())
		}
		if want := "http:TCP:9080 http-metrics:TCP:9797 udp-5353:UDP:5353 grpc:TCP:9999"; strings.Join(got, " ") != want {
			t.Errorf("Service %s ports %v, want %s", svc.Name, got, want)
		}
	}
	var ws []string
	for _, w := range set.Warnings {
		ws = append(ws, w.String())
	}
	if len(ws) != 2 || !strings.Contains(ws[0], `port named "http"`) || !strings.Contains(ws[1], "already have port 9797/TCP") {
		t.Errorf("warnings %q, want one for the clashing name and one for the clashing number", ws)
	}

	// Without portDiscovery, the one port.
	c.Spec.Service.PortDiscovery = false
	set, err = CanaryObjects(c, target, progress.Routing{PrimaryWeight: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(set.Services[0].Spec.Ports); n != 1 {
		t.Errorf("%d ports without portDiscovery, want 1", n)
	}
}

func TestCanarySessionAffinity(t *testing.T) {
	c := reviewsCanary()
	c.Spec.Analysis.SessionAffinity = &meshv1.SessionAffinity{CookieName: "canary.user", MaxAge: 600}
	c.Status.CurrentRevision = "abc123"
	set := renderCanary(t, c, progress.Routing{PrimaryWeight: 70, CanaryWeight: 30}, nil)
	expectYAML(t, set.VirtualService, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
  labels:`+canaryLabels+`
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        cookie: {regex: "^(.*;\\s*)?canary\\.user=abc123(;.*)?$"}
    route:
    - destination: {host: reviews-canary, port: {number: 9080}}
      weight: 100
  - route:
    - destination: {host: reviews-primary, port: {number: 9080}}
      weight: 70
    - destination: {host: reviews-canary, port: {number: 9080}}
      weight: 30
      headers:
        response:
          add: {Set-Cookie: "canary.user=abc123; Max-Age=600; Path=/"}
`)
	p, cw, ok := ObservedWeights(set.VirtualService, "reviews")
	if !ok || p != 70 || cw != 30 {
		t.Errorf("ObservedWeights = %d, %d, %v; want the weighted route's 70, 30", p, cw, ok)
	}

	// Outside a rollout (all to the primary), no cookie is set or routed.
	set = renderCanary(t, c, progress.Routing{PrimaryWeight: 100}, nil)
	if n := len(set.VirtualService.Spec.Http); n != 1 || set.VirtualService.Spec.Http[0].Route[1].Headers != nil {
		t.Errorf("with no split, %d routes (want 1) and canary headers %v (want none)", n, set.VirtualService.Spec.Http[0].Route[1].Headers)
	}

	// Composed with a MeshPolicy's routes: each gets its sticky route.
	set = renderCanary(t, c, progress.Routing{PrimaryWeight: 70, CanaryWeight: 30}, reviewsPolicy())
	var names []string
	for _, rt := range set.VirtualService.Spec.Http {
		names = append(names, rt.Name)
	}
	if got := strings.Join(names, ","); got != "ratings-drill-sticky,ratings-drill,legacy-sticky,legacy,," {
		t.Errorf("routes %q, want each policy route and the default after their sticky route", got)
	}

	// A primary cookie too, and the cookie's attributes.
	c.Spec.Analysis.SessionAffinity = &meshv1.SessionAffinity{CookieName: "canary", PrimaryCookieName: "primary",
		Path: "/shop", Domain: "example.com", HTTPOnly: true, Secure: true, SameSite: "Lax"}
	set = renderCanary(t, c, progress.Routing{PrimaryWeight: 70, CanaryWeight: 30}, nil)
	http := set.VirtualService.Spec.Http
	if len(http) != 3 || http[1].Route[0].Destination.Host != "reviews-primary" || http[1].Match[0].Headers["cookie"].GetRegex() != `^(.*;\s*)?primary=abc123(;.*)?$` {
		t.Fatalf("routes %v, want the canary's sticky route, the primary's, then the weighted one", http)
	}
	if got, want := http[2].Route[0].Headers.GetResponse().GetAdd()["Set-Cookie"], "primary=abc123; Max-Age=86400; Path=/shop; Domain=example.com; SameSite=Lax; HttpOnly; Secure"; got != want {
		t.Errorf("the primary's Set-Cookie %q, want %q", got, want)
	}
	// With every route matched (service.match), the split is still read from the weighted route.
	c.Spec.Service.Match = []meshv1.HTTPMatch{{URI: &meshv1.StringMatch{Prefix: ptr("/")}}}
	set = renderCanary(t, c, progress.Routing{PrimaryWeight: 70, CanaryWeight: 30}, nil)
	if p, cw, ok := ObservedWeights(set.VirtualService, "reviews"); !ok || p != 70 || cw != 30 {
		t.Errorf("ObservedWeights = %d, %d, %v; want the weighted route's 70, 30, not the primary cookie's route", p, cw, ok)
	}
	c.Spec.Service.Match = nil
	c.Spec.Analysis.SessionAffinity.PrimaryCookieName = "canary"
	_, err := CanaryObjects(c, reviewsTarget(), progress.Routing{PrimaryWeight: 70, CanaryWeight: 30}, nil)
	expectFieldError(t, err, "spec.analysis.sessionAffinity.primaryCookieName", meshv1.ReasonInvalidSpec)
	c.Spec.Analysis.SessionAffinity.PrimaryCookieName = ""

	// Blue/green has no split to keep users out of.
	c.Spec.Analysis.StepWeight = nil
	c.Spec.Analysis.Iterations = ptr[int32](5)
	_, err = CanaryObjects(c, reviewsTarget(), progress.Routing{PrimaryWeight: 100}, nil)
	expectFieldError(t, err, "spec.analysis.sessionAffinity", meshv1.ReasonInvalidSpec)
}
