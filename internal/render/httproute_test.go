package render

import (
	"strings"
	"testing"
	"time"

	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/progress"
)

func TestCanaryGatewayObjectsWeighted(t *testing.T) {
	c := reviewsCanary()
	c.Spec.Service.Timeout = "1.5s"
	c.Spec.Service.Headers = &meshv1.Headers{Request: &meshv1.HeaderOperations{Set: map[string]string{"x-via": "canopy"}}}
	set, err := CanaryGatewayObjects(c, reviewsTarget(), progress.Routing{PrimaryWeight: 90, CanaryWeight: 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Services) != 3 || len(set.Unsupported) != 0 {
		t.Fatalf("services %d, unsupported %v", len(set.Services), set.Unsupported)
	}
	expectYAML(t, set.HTTPRoute, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  labels:
    app.kubernetes.io/managed-by: canopy
    mesh.canopy.dev/owner-kind: Canary
    mesh.canopy.dev/owner-name: reviews
    mesh.canopy.dev/owner-namespace: bookinfo
  name: reviews
  namespace: bookinfo
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: reviews
    port: 9080
  rules:
  - backendRefs:
    - group: ""
      kind: Service
      name: reviews-primary
      port: 9080
      weight: 90
    - group: ""
      kind: Service
      name: reviews-canary
      port: 9080
      weight: 10
    filters:
    - requestHeaderModifier:
        set:
        - name: x-via
          value: canopy
      type: RequestHeaderModifier
    timeouts:
      request: 1s500ms
`)
}

// A weight of 0 stays in the HTTPRoute: an unset weight would be 1.
func TestCanaryGatewayObjectsZeroWeightIsExplicit(t *testing.T) {
	set, err := CanaryGatewayObjects(reviewsCanary(), reviewsTarget(), progress.Routing{PrimaryWeight: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	y := asYAML(t, set.HTTPRoute)
	if !strings.Contains(y, "weight: 0") {
		t.Fatalf("the canary's weight 0 is not written:\n%s", y)
	}
	if p, c, ok := ObservedHTTPRouteWeights(set.HTTPRoute, "reviews"); !ok || p != 100 || c != 0 {
		t.Fatalf("observed %d/%d %v", p, c, ok)
	}
}

func TestCanaryGatewayObjectsABAndMirror(t *testing.T) {
	c := reviewsCanary()
	c.Spec.Analysis.StepWeight = nil
	c.Spec.Analysis.Iterations = ptr[int32](3)
	c.Spec.Analysis.Match = []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{"x-canary": {Exact: ptr("always")}}}}
	c.Spec.Service.Match = []meshv1.HTTPMatch{{URI: &meshv1.StringMatch{Prefix: ptr("/api")}}}
	set, err := CanaryGatewayObjects(c, reviewsTarget(), progress.Routing{PrimaryWeight: 100, Match: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rules := set.HTTPRoute.Spec.Rules
	if len(rules) != 2 {
		t.Fatalf("want the A/B rule and the default rule, got %d:\n%s", len(rules), asYAML(t, set.HTTPRoute))
	}
	ab := rules[0]
	if len(ab.BackendRefs) != 1 || ab.BackendRefs[0].Name != "reviews-canary" || len(ab.Matches) != 1 ||
		len(ab.Matches[0].Headers) != 1 || ab.Matches[0].Headers[0].Value != "always" ||
		ab.Matches[0].Path == nil || *ab.Matches[0].Path.Value != `/api.*` {
		t.Fatalf("A/B rule:\n%s", asYAML(t, set.HTTPRoute))
	}

	c = reviewsCanary()
	c.Spec.Analysis.Mirror = true
	set, err = CanaryGatewayObjects(c, reviewsTarget(), progress.Routing{PrimaryWeight: 100, Mirror: true, MirrorWeight: 25}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := set.HTTPRoute.Spec.Rules[0].Filters
	if len(f) != 1 || f[0].RequestMirror == nil || f[0].RequestMirror.BackendRef.Name != "reviews-canary" || *f[0].RequestMirror.Percent != 25 {
		t.Fatalf("mirror:\n%s", asYAML(t, set.HTTPRoute))
	}
}

func TestCanaryGatewayObjectsIngressGateway(t *testing.T) {
	c := reviewsCanary()
	c.Spec.Service.Gateways = []string{"edge/public"}
	c.Spec.Service.Hosts = []string{"reviews.example.com"}
	set, err := CanaryGatewayObjects(c, reviewsTarget(), progress.Routing{PrimaryWeight: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	refs := set.HTTPRoute.Spec.ParentRefs
	if len(refs) != 2 || string(*refs[1].Kind) != "Gateway" || string(*refs[1].Namespace) != "edge" || refs[1].Name != "public" ||
		len(set.HTTPRoute.Spec.Hostnames) != 1 {
		t.Fatalf("parents:\n%s", asYAML(t, set.HTTPRoute))
	}
}

// What the Gateway API cannot express is named, field by field, and the rest still renders.
func TestCanaryGatewayObjectsUnsupported(t *testing.T) {
	c := reviewsCanary()
	c.Spec.Service.Retries = &meshv1.HTTPRetry{Attempts: 3}
	c.Spec.Service.TrafficPolicy = &meshv1.TrafficPolicy{LoadBalancer: "ROUND_ROBIN"}
	c.Spec.Analysis.SessionAffinity = &meshv1.SessionAffinity{CookieName: "canary"}
	p := reviewsPolicy()
	set, err := CanaryGatewayObjects(c, reviewsTarget(), progress.Routing{PrimaryWeight: 100}, p)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range set.Unsupported {
		got = append(got, u.String())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{"spec.service.retries", "spec.service.trafficPolicy", "spec.analysis.sessionAffinity"} {
		if !strings.Contains(all, want) {
			t.Errorf("%s is not reported; got:\n%s", want, all)
		}
	}
	if p.Spec.Resilience != nil && p.Spec.Resilience.Retries != nil && !strings.Contains(all, "MeshPolicy/reviews spec.resilience.retries") {
		t.Errorf("the MeshPolicy's retries are not reported; got:\n%s", all)
	}
	// The same Canary and policy for Istio express everything.
	if _, err := CanaryObjects(c, reviewsTarget(), progress.Routing{PrimaryWeight: 100}, p); err != nil {
		t.Fatal(err)
	}
}

func TestGatewayDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 1500 * time.Millisecond: "1s500ms", 90 * time.Minute: "1h30m", 250 * time.Millisecond: "250ms", time.Microsecond: "0s",
	} {
		if got := gatewayDuration(d); string(got) != want {
			t.Errorf("gatewayDuration(%s) = %s, want %s", d, got, want)
		}
	}
}

// A CORS policy is the HTTPRoute's CORS filter; origins it cannot express are named.
func TestCanaryGatewayObjectsCORS(t *testing.T) {
	c := reviewsCanary()
	c.Spec.Service.CorsPolicy = &meshv1.CorsPolicy{
		AllowOrigins:     []meshv1.StringMatch{{Exact: ptr("https://shop.example.com")}, {Prefix: ptr("https://")}},
		AllowMethods:     []string{"GET", "POST"},
		AllowHeaders:     []string{"x-token"},
		MaxAge:           "24h",
		AllowCredentials: ptr(true),
	}
	set, err := CanaryGatewayObjects(c, reviewsTarget(), progress.Routing{PrimaryWeight: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := set.HTTPRoute.Spec.Rules[0].Filters
	if len(f) != 1 || f[0].CORS == nil {
		t.Fatalf("no CORS filter:\n%s", asYAML(t, set.HTTPRoute))
	}
	cors := f[0].CORS
	if len(cors.AllowOrigins) != 1 || cors.AllowOrigins[0] != "https://shop.example.com" || len(cors.AllowMethods) != 2 ||
		cors.MaxAge != 86400 || cors.AllowCredentials == nil || !*cors.AllowCredentials {
		t.Fatalf("CORS filter:\n%s", asYAML(t, set.HTTPRoute))
	}
	if len(set.Unsupported) != 1 || set.Unsupported[0].Field != "spec.service.corsPolicy.allowOrigins[1]" {
		t.Fatalf("unsupported %v, want the prefix origin", set.Unsupported)
	}
}

// A MeshPolicy route's authority rewrite is a URLRewrite filter; its URI rewrite is named.
func TestCanaryGatewayObjectsRewrite(t *testing.T) {
	p := &meshv1.MeshPolicy{
		ObjectMeta: reviewsPolicy().ObjectMeta,
		Spec: meshv1.MeshPolicySpec{
			TargetRef: reviewsPolicy().Spec.TargetRef,
			Routes: []meshv1.Route{{
				Name: "legacy", Match: &meshv1.HTTPMatch{URI: &meshv1.StringMatch{Exact: ptr("/v1/reviews")}},
				Rewrite: &meshv1.Rewrite{URI: "/reviews", Authority: "reviews.internal"},
			}},
		},
	}
	set, err := CanaryGatewayObjects(reviewsCanary(), reviewsTarget(), progress.Routing{PrimaryWeight: 100}, p)
	if err != nil {
		t.Fatal(err)
	}
	var legacy *gwapiv1.HTTPRouteRule
	for i, r := range set.HTTPRoute.Spec.Rules {
		if r.Name != nil && *r.Name == "legacy" {
			legacy = &set.HTTPRoute.Spec.Rules[i]
		}
	}
	if legacy == nil || len(legacy.Filters) != 1 || legacy.Filters[0].URLRewrite == nil || *legacy.Filters[0].URLRewrite.Hostname != "reviews.internal" {
		t.Fatalf("the legacy rule:\n%s", asYAML(t, set.HTTPRoute))
	}
	if len(set.Unsupported) != 1 || set.Unsupported[0].String() != "MeshPolicy/reviews spec.routes[0].rewrite.uri: "+set.Unsupported[0].Message {
		t.Fatalf("unsupported %v, want the URI rewrite", set.Unsupported)
	}
}
