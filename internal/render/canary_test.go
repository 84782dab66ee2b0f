package render

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
)

const canaryLabels = `
    app.kubernetes.io/managed-by: canopy
    mesh.canopy.dev/owner-kind: Canary
    mesh.canopy.dev/owner-name: reviews
    mesh.canopy.dev/owner-namespace: bookinfo`

func renderCanary(t *testing.T, c *meshv1.Canary, w progress.Routing, p *meshv1.MeshPolicy) CanarySet {
	t.Helper()
	set, err := CanaryObjects(c, reviewsTarget(), w, p)
	if err != nil {
		t.Fatalf("CanaryObjects: %v", err)
	}
	return set
}

// renderPrimary renders the primary of c for reviewsTarget with the target's replicas.
func renderPrimary(t *testing.T, c *meshv1.Canary) *appsv1.Deployment {
	t.Helper()
	target := reviewsTarget()
	d, err := Primary(c, target, target.Spec.Replicas)
	if err != nil {
		t.Fatalf("Primary: %v", err)
	}
	return d
}

func TestCanaryObjectsWeighted(t *testing.T) {
	set := renderCanary(t, reviewsCanary(), progress.Routing{PrimaryWeight: 90, CanaryWeight: 10}, nil)
	rev := Revision(&reviewsTarget().Spec.Template)

	expectYAML(t, renderPrimary(t, reviewsCanary()), `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews-primary
  namespace: bookinfo
  labels:`+canaryLabels+`
  annotations:
    mesh.canopy.dev/revision: `+rev+`
spec:
  replicas: 3
  selector:
    matchLabels:
      app: reviews-primary
  strategy: {}
  template:
    metadata:
      labels:
        app: reviews-primary
        version: v2
      annotations:
        mesh.canopy.dev/revision: `+rev+`
        sidecar.istio.io/inject: "true"
    spec:
      serviceAccountName: bookinfo-reviews
      containers:
      - name: reviews
        image: docker.io/istio/examples-bookinfo-reviews-v2:1.20.2
        ports:
        - containerPort: 9080
          protocol: TCP
        resources: {}
`)
	wantSvc := func(name, selector string) string {
		return `
apiVersion: v1
kind: Service
metadata:
  name: ` + name + `
  namespace: bookinfo
  labels:` + canaryLabels + `
spec:
  selector:
    app: ` + selector + `
  ports:
  - name: http
    port: 9080
    protocol: TCP
    targetPort: 9080
`
	}
	if len(set.Services) != 3 {
		t.Fatalf("got %d services, want 3", len(set.Services))
	}
	expectYAML(t, set.Services[0], wantSvc("reviews", "reviews-primary"))
	expectYAML(t, set.Services[1], wantSvc("reviews-primary", "reviews-primary"))
	expectYAML(t, set.Services[2], wantSvc("reviews-canary", "reviews"))

	if len(set.DestinationRules) != 2 {
		t.Fatalf("got %d destination rules, want 2", len(set.DestinationRules))
	}
	for i, host := range []string{"reviews-primary", "reviews-canary"} {
		expectYAML(t, set.DestinationRules[i], `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: `+host+`
  namespace: bookinfo
  labels:`+canaryLabels+`
spec:
  host: `+host+`
`)
	}
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
  - route:
    - destination: {host: reviews-primary, port: {number: 9080}}
      weight: 90
    - destination: {host: reviews-canary, port: {number: 9080}}
      weight: 10
`)
	if len(set.Warnings) != 0 {
		t.Errorf("unexpected warnings: %v", set.Warnings)
	}
	if got := len(set.Routing()); got != 6 {
		t.Errorf("Routing() has %d objects, want 6", got)
	}
}

// A weight of 0 is not in the JSON at all (proto3 omits zero scalars). Under server-side
// apply that removes the weight field canopy owned, and Istio reads the absence as 0.
func TestZeroWeightIsOmittedFromJSON(t *testing.T) {
	set := renderCanary(t, reviewsCanary(), progress.Routing{PrimaryWeight: 100, CanaryWeight: 0}, nil)
	b, err := json.Marshal(set.VirtualService)
	if err != nil {
		t.Fatal(err)
	}
	var vs struct {
		Spec struct {
			HTTP []struct {
				Route []map[string]any `json:"route"`
			} `json:"http"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	route := vs.Spec.HTTP[0].Route
	if len(route) != 2 {
		t.Fatalf("want both destinations kept, got %v", route)
	}
	if w, ok := route[0]["weight"]; !ok || w != float64(100) {
		t.Errorf("primary weight = %v, want 100", route[0]["weight"])
	}
	if _, ok := route[1]["weight"]; ok {
		t.Errorf("canary weight 0 must be omitted, got JSON %s", b)
	}
	// ... and reads back as 0 from the stored object.
	var stored networkingv1.VirtualService
	if err := json.Unmarshal(b, &stored); err != nil {
		t.Fatal(err)
	}
	if p, c, ok := ObservedWeights(&stored, "reviews"); !ok || p != 100 || c != 0 {
		t.Errorf("ObservedWeights = %d, %d, %v; want 100, 0, true", p, c, ok)
	}

	// The other way round at the end of a blue/green switch.
	set = renderCanary(t, reviewsCanary(), progress.Routing{PrimaryWeight: 0, CanaryWeight: 100}, nil)
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
  - route:
    - destination: {host: reviews-primary, port: {number: 9080}}
    - destination: {host: reviews-canary, port: {number: 9080}}
      weight: 100
`)
}

func TestCanaryABMatch(t *testing.T) {
	c := reviewsCanary()
	c.Spec.Analysis = meshv1.CanaryAnalysis{
		Interval:   "1m",
		Iterations: ptr[int32](10),
		Match: []meshv1.HTTPMatch{
			{Headers: map[string]meshv1.StringMatch{"end-user": {Exact: ptr("jason")}}},
			{Headers: map[string]meshv1.StringMatch{"cookie": {Regex: ptr("^(.*?;)?(type=insider)(;.*)?$")}}},
		},
	}
	c.Spec.Service.Match = []meshv1.HTTPMatch{{URI: &meshv1.StringMatch{Prefix: ptr("/reviews")}}}
	set := renderCanary(t, c, progress.Routing{PrimaryWeight: 100, Match: true}, nil)
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
    - uri: {prefix: /reviews}
      headers:
        end-user: {exact: jason}
    - uri: {prefix: /reviews}
      headers:
        cookie: {regex: "^(.*?;)?(type=insider)(;.*)?$"}
    route:
    - destination: {host: reviews-canary, port: {number: 9080}}
      weight: 100
  - match:
    - uri: {prefix: /reviews}
    route:
    - destination: {host: reviews-primary, port: {number: 9080}}
      weight: 100
    - destination: {host: reviews-canary, port: {number: 9080}}
`)
	p, cw, ok := ObservedWeights(set.VirtualService, "reviews")
	if !ok || p != 100 || cw != 0 {
		t.Errorf("ObservedWeights = %d, %d, %v; want the default route's 100, 0", p, cw, ok)
	}

	// Without a match in the spec, A/B routing is an error on the field.
	c.Spec.Analysis.Match = nil
	_, err := CanaryObjects(c, reviewsTarget(), progress.Routing{PrimaryWeight: 100, Match: true}, nil)
	expectFieldError(t, err, "spec.analysis.match", meshv1.ReasonInvalidSpec)
}

func TestCanaryMirror(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    progress.Routing
		want float64
	}{
		{"default percentage", progress.Routing{PrimaryWeight: 100, Mirror: true}, 100},
		{"given percentage", progress.Routing{PrimaryWeight: 90, CanaryWeight: 10, Mirror: true, MirrorWeight: 25}, 25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := renderCanary(t, reviewsCanary(), tc.w, nil)
			rt := set.VirtualService.Spec.Http[0]
			if rt.Mirror.GetHost() != "reviews-canary" || rt.Mirror.GetPort().GetNumber() != 9080 {
				t.Errorf("mirror = %v, want reviews-canary:9080", rt.Mirror)
			}
			if rt.MirrorPercentage.GetValue() != tc.want {
				t.Errorf("mirrorPercentage = %v, want %v", rt.MirrorPercentage, tc.want)
			}
			if rt.Route[0].Weight != tc.w.PrimaryWeight || rt.Route[1].Weight != tc.w.CanaryWeight {
				t.Errorf("mirroring changed the weights: %v", rt.Route)
			}
			if !strings.Contains(asYAML(t, set.VirtualService), "mirrorPercentage:\n      value: ") {
				t.Errorf("mirrorPercentage must be a Percent message:\n%s", asYAML(t, set.VirtualService))
			}
		})
	}
}

func TestCanaryServiceSettings(t *testing.T) {
	c := reviewsCanary()
	c.Spec.Service = meshv1.CanaryService{
		Port:       80,
		PortName:   "http-web",
		TargetPort: ptr[int32](9080),
		Hosts:      []string{"reviews.example.com", "reviews"},
		Gateways:   []string{"istio-system/public"},
		Retries:    &meshv1.HTTPRetry{Attempts: 3, PerTryTimeout: "2s", RetryOn: "5xx,connect-failure"},
		Timeout:    "10s",
		Headers: &meshv1.Headers{
			Request:  &meshv1.HeaderOperations{Set: map[string]string{"x-b": "2", "x-a": "1"}, Remove: []string{"x-debug"}},
			Response: &meshv1.HeaderOperations{Add: map[string]string{"x-served-by": "canopy"}},
		},
		CorsPolicy: &meshv1.CorsPolicy{
			AllowOrigins:     []meshv1.StringMatch{{Exact: ptr("https://shop.example.com")}, {Regex: ptr(`https://.*\.example\.com`)}},
			AllowMethods:     []string{"GET", "POST"},
			AllowHeaders:     []string{"authorization"},
			ExposeHeaders:    []string{"x-request-id"},
			MaxAge:           "24h",
			AllowCredentials: ptr(false),
		},
		TrafficPolicy: &meshv1.TrafficPolicy{
			TLSMode:      "ISTIO_MUTUAL",
			LoadBalancer: "LEAST_REQUEST",
			ConnectionPool: &meshv1.ConnectionPool{
				TCP:  &meshv1.TCPConnectionPool{MaxConnections: ptr[int32](100), ConnectTimeout: "30ms"},
				HTTP: &meshv1.HTTPConnectionPool{HTTP1MaxPendingRequests: ptr[int32](10), HTTP2MaxRequests: ptr[int32](1000), MaxRequestsPerConnection: ptr[int32](1), MaxRetries: ptr[int32](0), IdleTimeout: "1m"},
			},
			CircuitBreaker: &meshv1.CircuitBreaker{Consecutive5xxErrors: ptr[int32](5), ConsecutiveGatewayErrors: ptr[int32](3), Interval: "10s", BaseEjectionTime: "30s", MaxEjectionPercent: ptr[int32](50)},
		},
	}
	set := renderCanary(t, c, progress.Routing{PrimaryWeight: 50, CanaryWeight: 50}, nil)
	expectYAML(t, set.VirtualService, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
  labels:`+canaryLabels+`
spec:
  hosts: [reviews, reviews.example.com]
  gateways: [istio-system/public, mesh]
  exportTo: [., istio-system]
  http:
  - route:
    - destination: {host: reviews-primary, port: {number: 80}}
      weight: 50
    - destination: {host: reviews-canary, port: {number: 80}}
      weight: 50
    timeout: 10s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,connect-failure"}
    headers:
      request:
        set: {x-a: "1", x-b: "2"}
        remove: [x-debug]
      response:
        add: {x-served-by: canopy}
    corsPolicy:
      allowOrigins:
      - exact: https://shop.example.com
      - regex: 'https://.*\.example\.com'
      allowMethods: [GET, POST]
      allowHeaders: [authorization]
      exposeHeaders: [x-request-id]
      maxAge: 86400s
      allowCredentials: false
`)
	wantTP := `
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 0.030s}
      http: {http1MaxPendingRequests: 10, http2MaxRequests: 1000, maxRequestsPerConnection: 1, idleTimeout: 60s}
    outlierDetection:
      consecutive5xxErrors: 5
      consecutiveGatewayErrors: 3
      interval: 10s
      baseEjectionTime: 30s
      maxEjectionPercent: 50
    tls: {mode: ISTIO_MUTUAL}
`
	for i, host := range []string{"reviews-primary", "reviews-canary"} {
		expectYAML(t, set.DestinationRules[i], `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: `+host+`
  namespace: bookinfo
  labels:`+canaryLabels+`
spec:
  host: `+host+wantTP)
	}
	svc := set.Services[0].Spec.Ports[0]
	if svc.Name != "http-web" || svc.Port != 80 || svc.TargetPort.IntVal != 9080 {
		t.Errorf("service port = %+v, want http-web 80->9080", svc)
	}
}

func TestCanaryPrimary(t *testing.T) {
	t.Run("no count leaves the replicas unset", func(t *testing.T) {
		c := reviewsCanary()
		c.Spec.AutoscalerRef = &meshv1.AutoscalerRef{Name: "reviews"}
		d, err := Primary(c, reviewsTarget(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if d.Spec.Replicas != nil {
			t.Errorf("replicas = %d, want unset", *d.Spec.Replicas)
		}
	})
	t.Run("explicit replicas", func(t *testing.T) {
		d, err := Primary(reviewsCanary(), reviewsTarget(), ptr[int32](7))
		if err != nil {
			t.Fatal(err)
		}
		if *d.Spec.Replicas != 7 {
			t.Errorf("replicas = %d, want 7", *d.Spec.Replicas)
		}
	})
	t.Run("selector without app", func(t *testing.T) {
		target := reviewsTarget()
		target.Spec.Selector.MatchLabels = map[string]string{"app.kubernetes.io/name": "reviews", "version": "v2"}
		target.Spec.Template.Labels = map[string]string{"app.kubernetes.io/name": "reviews", "version": "v2"}
		d, err := Primary(reviewsCanary(), target, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"app": "reviews-primary", "app.kubernetes.io/name": "reviews-primary", "version": "v2-primary"}
		if got := d.Spec.Template.Labels; !equalMaps(got, want) {
			t.Errorf("template labels = %v, want %v (no target selector may match them)", got, want)
		}
		sel, _ := metav1.LabelSelectorAsSelector(target.Spec.Selector)
		if sel.Matches(labelsSet(d.Spec.Template.Labels)) {
			t.Error("the target's selector matches the primary's pods")
		}
	})
	t.Run("revision is the target template's", func(t *testing.T) {
		target := reviewsTarget()
		d, err := Primary(reviewsCanary(), target, nil)
		if err != nil {
			t.Fatal(err)
		}
		rev := Revision(&target.Spec.Template)
		if d.Annotations[AnnotationRevision] != rev || d.Spec.Template.Annotations[AnnotationRevision] != rev {
			t.Errorf("revision annotations = %q / %q, want %q", d.Annotations[AnnotationRevision], d.Spec.Template.Annotations[AnnotationRevision], rev)
		}
		if target.Spec.Template.Annotations[AnnotationRevision] != "" || target.Spec.Selector.MatchLabels["app"] != "reviews" {
			t.Error("Primary modified the target")
		}
	})
	t.Run("target metadata is not copied", func(t *testing.T) {
		d, _ := Primary(reviewsCanary(), reviewsTarget(), nil)
		if _, ok := d.Labels["argocd.argoproj.io/instance"]; ok || d.UID != "" || d.ResourceVersion != "" {
			t.Errorf("primary metadata carries the target's: %+v", d.ObjectMeta)
		}
	})
}

func TestRevision(t *testing.T) {
	base := reviewsTarget().Spec.Template
	rev := Revision(&base)
	if len(rev) != 12 || strings.Trim(rev, "0123456789abcdef") != "" {
		t.Fatalf("revision %q is not 12 hex characters", rev)
	}
	if again := Revision(&base); again != rev {
		t.Errorf("revision not stable: %s then %s", rev, again)
	}
	withAnn := base.DeepCopy()
	withAnn.Annotations[AnnotationRevision] = "something"
	if Revision(withAnn) != rev {
		t.Error("the revision annotation changed the revision")
	}
	newImage := base.DeepCopy()
	newImage.Spec.Containers[0].Image = "docker.io/istio/examples-bookinfo-reviews-v3:1.20.2"
	if Revision(newImage) == rev {
		t.Error("a new image did not change the revision")
	}
	restarted := base.DeepCopy()
	restarted.Annotations["kubectl.kubernetes.io/restartedAt"] = "2026-01-01T00:00:00Z"
	if Revision(restarted) == rev {
		t.Error("a restart did not change the revision")
	}
	if Revision(&base, "configmap/a=1", "secret/b=2") != Revision(&base, "secret/b=2", "configmap/a=1") {
		t.Error("the order of tracked inputs changed the revision")
	}
	if Revision(&base, "configmap/a=1") == Revision(&base, "configmap/a=2") || Revision(&base, "configmap/a=1") == rev {
		t.Error("a tracked input did not change the revision")
	}
}

func TestCanaryComposesMeshPolicy(t *testing.T) {
	p := reviewsPolicy()
	c := reviewsCanary()
	for _, w := range []progress.Routing{{PrimaryWeight: 100}, {PrimaryWeight: 70, CanaryWeight: 30}, {CanaryWeight: 100}} {
		set := renderCanary(t, c, w, p)
		for i, rt := range set.VirtualService.Spec.Http {
			if rt.Route[0].Weight != w.PrimaryWeight || rt.Route[1].Weight != w.CanaryWeight {
				t.Errorf("weights %v: route %d has %d/%d", w, i, rt.Route[0].Weight, rt.Route[1].Weight)
			}
		}
		if gp, gc, ok := ObservedWeights(set.VirtualService, "reviews"); !ok || gp != w.PrimaryWeight || gc != w.CanaryWeight {
			t.Errorf("ObservedWeights = %d, %d, %v; want %v", gp, gc, ok, w)
		}
	}

	set := renderCanary(t, c, progress.Routing{PrimaryWeight: 80, CanaryWeight: 20}, p)
	expectYAML(t, set.VirtualService, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
  labels:`+canaryLabels+`
spec:
  hosts: [reviews, reviews.bookinfo.example.com]
  gateways: [istio-system/bookinfo-reviews-ingress-29b5948be416401e, mesh]
  exportTo: [., istio-system]
  http:
  - name: ratings-drill
    match:
    - uri: {prefix: /reviews/drill}
    route:
    - destination: {host: reviews-primary, port: {number: 9080}}
      weight: 80
    - destination: {host: reviews-canary, port: {number: 9080}}
      weight: 20
    timeout: 3s
    retries: {attempts: 2, perTryTimeout: 1s, retryOn: 5xx}
    fault:
      delay: {percentage: {value: 10}, fixedDelay: 7s}
      abort: {percentage: {value: 5.5}, httpStatus: 503}
  - name: legacy
    match:
    - uri: {exact: /v1/reviews}
    rewrite: {uri: /reviews}
    headers:
      request:
        set: {x-legacy: "true"}
    route:
    - destination: {host: reviews-primary, port: {number: 9080}}
      weight: 80
    - destination: {host: reviews-canary, port: {number: 9080}}
      weight: 20
    timeout: 5s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,reset"}
  - route:
    - destination: {host: reviews-primary, port: {number: 9080}}
      weight: 80
    - destination: {host: reviews-canary, port: {number: 9080}}
      weight: 20
    timeout: 5s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,reset"}
`)
	for i, host := range []string{"reviews-primary", "reviews-canary"} {
		expectYAML(t, set.DestinationRules[i], `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: `+host+`
  namespace: bookinfo
  labels:`+canaryLabels+`
spec:
  host: `+host+`
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
    tls: {mode: ISTIO_MUTUAL}
`)
	}
}

func TestCanaryComposesMeshPolicyAB(t *testing.T) {
	p := reviewsPolicy()
	p.Spec.Ingress = nil
	p.Spec.Routes = p.Spec.Routes[1:] // legacy only
	c := reviewsCanary()
	c.Spec.Analysis = meshv1.CanaryAnalysis{Iterations: ptr[int32](5), Match: []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{"end-user": {Exact: ptr("jason")}}}}}
	set := renderCanary(t, c, progress.Routing{PrimaryWeight: 100, Match: true}, p)
	var got []string
	for _, rt := range set.VirtualService.Spec.Http {
		var hosts []string
		for _, d := range rt.Route {
			hosts = append(hosts, d.Destination.Host)
		}
		got = append(got, rt.Name+"="+strings.Join(hosts, "+"))
	}
	want := "legacy-ab=reviews-canary legacy=reviews-primary+reviews-canary =reviews-canary =reviews-primary+reviews-canary"
	if strings.Join(got, " ") != want {
		t.Errorf("routes = %v, want %s", got, want)
	}
	ab := set.VirtualService.Spec.Http[0]
	if len(ab.Match) != 1 || ab.Match[0].Uri.GetExact() != "/v1/reviews" || ab.Match[0].Headers["end-user"].GetExact() != "jason" {
		t.Errorf("A/B variant of the legacy route must require both matches, got %v", ab.Match)
	}
	if ab.Rewrite.GetUri() != "/reviews" {
		t.Errorf("A/B variant lost the route's rewrite: %v", ab.Rewrite)
	}
}

func TestCanaryOverridesPolicyWithWarnings(t *testing.T) {
	c := reviewsCanary()
	c.Spec.Service.Timeout = "20s"
	c.Spec.Service.TrafficPolicy = &meshv1.TrafficPolicy{LoadBalancer: "RANDOM"}
	set := renderCanary(t, c, progress.Routing{PrimaryWeight: 100}, reviewsPolicy())
	def := set.VirtualService.Spec.Http[len(set.VirtualService.Spec.Http)-1]
	if def.Timeout.AsDuration().String() != "20s" {
		t.Errorf("default route timeout = %v, want the Canary's 20s", def.Timeout.AsDuration())
	}
	if lb := set.DestinationRules[0].Spec.TrafficPolicy.LoadBalancer.GetSimple().String(); lb != "RANDOM" {
		t.Errorf("load balancer = %s, want the Canary's RANDOM", lb)
	}
	var fields []string
	for _, w := range set.Warnings {
		fields = append(fields, w.Field)
	}
	if got := strings.Join(fields, ","); got != "spec.service.trafficPolicy.loadBalancer,spec.service.timeout" {
		t.Errorf("warnings on %s", got)
	}
}

func expectFieldError(t *testing.T, err error, field, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error on %s, got none", field)
	}
	var all []string
	for _, e := range unjoin(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			if fe.Field == field {
				if fe.Reason != reason {
					t.Errorf("%s: reason %s, want %s", field, fe.Reason, reason)
				}
				return
			}
			all = append(all, fe.Field)
		}
	}
	t.Errorf("no FieldError on %s; got %v (%v)", field, all, err)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestCanaryErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(c *meshv1.Canary, p *meshv1.MeshPolicy)
		w      progress.Routing
		field  string
		object string
		reason string
	}{
		{name: "timeout", mutate: func(c *meshv1.Canary, _ *meshv1.MeshPolicy) { c.Spec.Service.Timeout = "10 seconds" }, field: "spec.service.timeout"},
		{name: "sub-millisecond timeout", mutate: func(c *meshv1.Canary, _ *meshv1.MeshPolicy) { c.Spec.Service.Timeout = "1500us" }, field: "spec.service.timeout"},
		{name: "zero timeout", mutate: func(c *meshv1.Canary, _ *meshv1.MeshPolicy) { c.Spec.Service.Timeout = "0s" }, field: "spec.service.timeout"},
		{name: "per-try timeout", mutate: func(c *meshv1.Canary, _ *meshv1.MeshPolicy) {
			c.Spec.Service.Retries = &meshv1.HTTPRetry{Attempts: 1, PerTryTimeout: "1x"}
		}, field: "spec.service.retries.perTryTimeout"},
		{name: "cors max age", mutate: func(c *meshv1.Canary, _ *meshv1.MeshPolicy) {
			c.Spec.Service.CorsPolicy = &meshv1.CorsPolicy{MaxAge: "-1s"}
		}, field: "spec.service.corsPolicy.maxAge"},
		{name: "connect timeout", mutate: func(c *meshv1.Canary, _ *meshv1.MeshPolicy) {
			c.Spec.Service.TrafficPolicy = &meshv1.TrafficPolicy{ConnectionPool: &meshv1.ConnectionPool{TCP: &meshv1.TCPConnectionPool{ConnectTimeout: "soon"}}}
		}, field: "spec.service.trafficPolicy.connectionPool.tcp.connectTimeout"},
		{name: "regex", mutate: func(c *meshv1.Canary, _ *meshv1.MeshPolicy) {
			c.Spec.Service.Match = []meshv1.HTTPMatch{{}, {Headers: map[string]meshv1.StringMatch{"cookie": {Regex: ptr("(unclosed")}}}}
		}, field: "spec.service.match[1].headers[cookie].regex"},
		{name: "two match kinds", mutate: func(c *meshv1.Canary, _ *meshv1.MeshPolicy) {
			c.Spec.Service.Match = []meshv1.HTTPMatch{{URI: &meshv1.StringMatch{Exact: ptr("/a"), Prefix: ptr("/b")}}}
		}, field: "spec.service.match[0].uri"},
		{name: "A/B match conflicts with service match", w: progress.Routing{PrimaryWeight: 100, Match: true}, mutate: func(c *meshv1.Canary, p *meshv1.MeshPolicy) {
			p.Spec.Routes = nil
			c.Spec.Service.Match = []meshv1.HTTPMatch{{URI: &meshv1.StringMatch{Prefix: ptr("/api")}}}
			c.Spec.Analysis.Match = []meshv1.HTTPMatch{{URI: &meshv1.StringMatch{Prefix: ptr("/beta")}}}
		}, field: "spec.analysis.match[0].uri", reason: meshv1.ReasonInconsistent},
		{name: "name too long for a Service", mutate: func(c *meshv1.Canary, _ *meshv1.MeshPolicy) {
			c.Spec.TargetRef.Name = strings.Repeat("r", 56)
		}, field: "spec.targetRef.name"},
		{name: "name not a DNS-1035 label", mutate: func(c *meshv1.Canary, _ *meshv1.MeshPolicy) { c.Spec.TargetRef.Name = "1reviews" }, field: "spec.targetRef.name"},
		{name: "tls DISABLE against STRICT mTLS", mutate: func(c *meshv1.Canary, p *meshv1.MeshPolicy) {
			c.Spec.Service.TrafficPolicy = &meshv1.TrafficPolicy{TLSMode: "DISABLE"}
		}, field: "spec.service.trafficPolicy.tlsMode", reason: meshv1.ReasonInconsistent},
		{name: "ISTIO_MUTUAL against mTLS DISABLE", mutate: func(c *meshv1.Canary, p *meshv1.MeshPolicy) {
			c.Spec.Service.TrafficPolicy = &meshv1.TrafficPolicy{TLSMode: "ISTIO_MUTUAL"}
			p.Spec.MTLS.Mode = meshv1.MTLSDisable
		}, field: "spec.service.trafficPolicy.tlsMode", reason: meshv1.ReasonInconsistent},
		{name: "policy route port", mutate: func(_ *meshv1.Canary, p *meshv1.MeshPolicy) {
			p.Spec.Routes[0].Port = ptr[int32](9090)
		}, field: "spec.routes[0].port", object: "MeshPolicy/reviews", reason: meshv1.ReasonInconsistent},
		{name: "policy fault delay", mutate: func(_ *meshv1.Canary, p *meshv1.MeshPolicy) {
			p.Spec.Routes[0].Fault.Delay.FixedDelay = "7 s"
		}, field: "spec.routes[0].fault.delay.fixedDelay", object: "MeshPolicy/reviews"},
		{name: "policy for another service", mutate: func(_ *meshv1.Canary, p *meshv1.MeshPolicy) {
			p.Spec.TargetRef.Name = "ratings"
		}, field: "spec.targetRef.name", object: "MeshPolicy/reviews", reason: meshv1.ReasonInconsistent},
		{name: "policy route names collide", mutate: func(_ *meshv1.Canary, p *meshv1.MeshPolicy) {
			p.Spec.Routes[1].Name = p.Spec.Routes[0].Name
		}, field: "spec.routes", object: "MeshPolicy/reviews", reason: meshv1.ReasonInconsistent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, p := reviewsCanary(), reviewsPolicy()
			tc.mutate(c, p)
			w := tc.w
			if w == (progress.Routing{}) {
				w = progress.Routing{PrimaryWeight: 100}
			}
			_, err := CanaryObjects(c, reviewsTarget(), w, p)
			reason := tc.reason
			if reason == "" {
				reason = meshv1.ReasonInvalidSpec
			}
			if c.Spec.TargetRef.Name != "reviews" { // the target given no longer matches either
				_, err = CanaryObjects(c, renamed(reviewsTarget(), c.Spec.TargetRef.Name), w, p)
			}
			expectFieldError(t, err, tc.field, reason)
			var fe *FieldError
			if errors.As(err, &fe) && fe.Object != tc.object {
				t.Errorf("error object %q, want %q", fe.Object, tc.object)
			}
			if ReasonOf(err) == "" {
				t.Error("ReasonOf found no reason")
			}
		})
	}
}

func TestWeightsValidate(t *testing.T) {
	for _, w := range []progress.Routing{
		{PrimaryWeight: 90, CanaryWeight: 20},
		{PrimaryWeight: 110, CanaryWeight: -10},
		{PrimaryWeight: 50},
		{PrimaryWeight: 100, Mirror: true, MirrorWeight: 101},
		{PrimaryWeight: 100, MirrorWeight: 10},
	} {
		_, err := CanaryObjects(reviewsCanary(), reviewsTarget(), w, nil)
		if err == nil {
			t.Errorf("%+v: want an error", w)
			continue
		}
		if ReasonOf(err) != "" {
			t.Errorf("%+v: weights are the caller's, not the spec's: got reason %s", w, ReasonOf(err))
		}
	}
}

func TestCanaryDeterministic(t *testing.T) {
	c := reviewsCanary()
	c.Spec.Service.Headers = &meshv1.Headers{Request: &meshv1.HeaderOperations{Set: map[string]string{"a": "1", "b": "2", "c": "3", "d": "4"}}}
	c.Spec.Service.Match = []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{"x": {Exact: ptr("1")}, "y": {Prefix: ptr("2")}, "z": {Regex: ptr("3")}}}}
	p := reviewsPolicy()
	hashes := func() []string {
		set := renderCanary(t, c, progress.Routing{PrimaryWeight: 60, CanaryWeight: 40, Mirror: true}, p)
		var out []string
		for _, o := range append(set.Routing(), renderPrimary(t, c)) {
			h, err := Hash(o)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, h)
		}
		return out
	}
	first := hashes()
	for i := 0; i < 20; i++ {
		if got := hashes(); strings.Join(got, ",") != strings.Join(first, ",") {
			t.Fatalf("render %d differs: %v vs %v", i, got, first)
		}
	}
}

func TestObservedWeights(t *testing.T) {
	vsFrom := func(y string) *networkingv1.VirtualService {
		var vs networkingv1.VirtualService
		if err := json.Unmarshal(yamlToJSON(t, y), &vs); err != nil {
			t.Fatal(err)
		}
		return &vs
	}
	for _, tc := range []struct {
		name       string
		vs         string
		p, c       int32
		ok         bool
		nilService bool
	}{
		{name: "split", vs: `{spec: {http: [{route: [{destination: {host: reviews-primary}, weight: 75}, {destination: {host: reviews-canary}, weight: 25}]}]}}`, p: 75, c: 25, ok: true},
		{name: "canary weight omitted", vs: `{spec: {http: [{route: [{destination: {host: reviews-primary}, weight: 100}, {destination: {host: reviews-canary}}]}]}}`, p: 100, ok: true},
		{name: "lone primary without weight", vs: `{spec: {http: [{route: [{destination: {host: reviews-primary}}]}]}}`, p: 100, ok: true},
		{name: "catch-all preferred", vs: `{spec: {http: [
			{match: [{uri: {prefix: /a}}], route: [{destination: {host: reviews-primary}, weight: 10}, {destination: {host: reviews-canary}, weight: 90}]},
			{route: [{destination: {host: reviews-primary}, weight: 60}, {destination: {host: reviews-canary}, weight: 40}]}]}}`, p: 60, c: 40, ok: true},
		{name: "edited to not add up", vs: `{spec: {http: [{route: [{destination: {host: reviews-primary}, weight: 50}, {destination: {host: reviews-canary}, weight: 20}]}]}}`, p: 50, c: 20, ok: false},
		{name: "a third destination", vs: `{spec: {http: [{route: [{destination: {host: reviews-primary}, weight: 50}, {destination: {host: other}, weight: 50}]}]}}`, p: 50, ok: false},
		{name: "not ours", vs: `{spec: {http: [{route: [{destination: {host: ratings}}]}]}}`},
		{name: "nil", nilService: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var vs *networkingv1.VirtualService
			if !tc.nilService {
				vs = vsFrom(tc.vs)
			}
			p, c, ok := ObservedWeights(vs, "reviews")
			if p != tc.p || c != tc.c || ok != tc.ok {
				t.Errorf("got %d, %d, %v; want %d, %d, %v", p, c, ok, tc.p, tc.c, tc.ok)
			}
		})
	}
}

// A host the Canary's apex already is, written another way (its FQDN), is not listed twice:
// Istio reads the short name as the FQDN, and one VirtualService defining a host twice is an
// error to istioctl analyze (IST0109). The spelled-out form is kept, which a Gateway's hosts
// match (IST0132).
func TestCanaryHostsAreListedOnce(t *testing.T) {
	c := reviewsCanary()
	c.Spec.Service.Hosts = []string{"reviews.bookinfo.svc.cluster.local", "reviews", "reviews.example.com"}
	set := renderCanary(t, c, progress.Routing{PrimaryWeight: 100}, nil)
	if got := set.VirtualService.Spec.Hosts; !slices.Equal(got, []string{"reviews.bookinfo.svc.cluster.local", "reviews.example.com"}) {
		t.Errorf("hosts %v, want reviews.bookinfo.svc.cluster.local and reviews.example.com once each", got)
	}
}
