package render

import (
	"strings"
	"testing"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// TestValidateWithoutTarget: the admission view of a Canary and a MeshPolicy finds the
// spec's own mistakes without the target, and nothing that only the target could decide.
func TestValidateWithoutTarget(t *testing.T) {
	t.Run("valid Canary", func(t *testing.T) {
		if _, err := ValidateCanary(reviewsCanary()); err != nil {
			t.Fatalf("ValidateCanary = %v", err)
		}
	})
	t.Run("valid MeshPolicy", func(t *testing.T) {
		if _, err := ValidateMeshPolicy(reviewsPolicy()); err != nil {
			t.Fatalf("ValidateMeshPolicy = %v", err)
		}
	})
	t.Run("a route to any port: the Service's ports are the controller's to check", func(t *testing.T) {
		p := reviewsPolicy()
		p.Spec.Routes[0].Port = ptr[int32](8443)
		p.Spec.MTLS.PortLevel = []meshv1.PortMTLS{{Port: 15000, Mode: meshv1.MTLSDisable}}
		ws, err := ValidateMeshPolicy(p)
		if err != nil {
			t.Fatalf("ValidateMeshPolicy = %v", err)
		}
		for _, w := range ws {
			if strings.Contains(w.Field, "portLevel") {
				t.Errorf("warning about the Service's ports without a Service: %s", w)
			}
		}
	})

	canaryTests := []struct {
		name    string
		mutate  func(*meshv1.Canary)
		wantErr string
	}{
		{"A/B match regex that does not compile", func(c *meshv1.Canary) {
			c.Spec.Analysis.StepWeight, c.Spec.Analysis.Iterations = nil, ptr[int32](5)
			c.Spec.Analysis.Match = []meshv1.HTTPMatch{{Headers: map[string]meshv1.StringMatch{"x-user": {Regex: ptr("(unclosed")}}}}
		}, "spec.analysis.match[0].headers[x-user].regex"},
		{"service timeout below 1ms", func(c *meshv1.Canary) { c.Spec.Service.Timeout = "500us" }, "spec.service.timeout"},
		{"header value with CR LF", func(c *meshv1.Canary) {
			c.Spec.Service.Headers = &meshv1.Headers{Request: &meshv1.HeaderOperations{Set: map[string]string{"x-env": "prod\r\nx-admin: true"}}}
		}, "spec.service.headers.request.set[x-env]: the value has the control character U+000D"},
		{"mirror regex in a service match", func(c *meshv1.Canary) {
			c.Spec.Service.Match = []meshv1.HTTPMatch{{URI: &meshv1.StringMatch{Regex: ptr("[a-")}}}
		}, "spec.service.match[0].uri.regex"},
	}
	for _, tt := range canaryTests {
		t.Run("Canary: "+tt.name, func(t *testing.T) {
			c := reviewsCanary()
			tt.mutate(c)
			_, err := ValidateCanary(c)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ValidateCanary = %v, want an error with %q", err, tt.wantErr)
			}
		})
	}

	policyTests := []struct {
		name    string
		mutate  func(*meshv1.MeshPolicy)
		wantErr string
	}{
		{"defaultDeny with DENY", func(p *meshv1.MeshPolicy) {
			p.Spec.Authorization = &meshv1.Authorization{Action: "DENY", DefaultDeny: true,
				Rules: []meshv1.AuthorizationRule{{From: []meshv1.AuthorizationSource{{Namespaces: []string{"a"}}}}}}
		}, "spec.authorization.defaultDeny: only makes sense with action ALLOW"},
		{"STATIC resolution", func(p *meshv1.MeshPolicy) {
			p.Spec.ExternalServices = []meshv1.ExternalService{{Name: "api", Hosts: []string{"api.example.com"}, Resolution: "STATIC",
				Ports: []meshv1.ExternalPort{{Number: 443, Protocol: "HTTPS"}}}}
		}, "spec.externalServices[0].resolution: STATIC needs endpoints"},
		{"TLS origination without a TLS port", func(p *meshv1.MeshPolicy) {
			p.Spec.ExternalServices = []meshv1.ExternalService{{Name: "api", Hosts: []string{"api.example.com"},
				Ports: []meshv1.ExternalPort{{Number: 80, Protocol: "HTTP"}}, TLSOrigination: &meshv1.TLSOrigination{Port: 80}}}
		}, "spec.externalServices[0].tlsOrigination: needs a port with protocol HTTPS or TLS"},
		{"two routes of one name", func(p *meshv1.MeshPolicy) { p.Spec.Routes[1].Name = p.Spec.Routes[0].Name }, "is used twice"},
		{"per-try timeout that does not parse", func(p *meshv1.MeshPolicy) { p.Spec.Resilience.Retries.PerTryTimeout = "2 seconds" }, "spec.resilience.retries.perTryTimeout"},
	}
	for _, tt := range policyTests {
		t.Run("MeshPolicy: "+tt.name, func(t *testing.T) {
			p := reviewsPolicy()
			tt.mutate(p)
			_, err := ValidateMeshPolicy(p)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ValidateMeshPolicy = %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

// With the Gateway API, admission warns of each setting that will not be in force.
func TestValidateCanaryWarnsWhatTheGatewayAPICannotExpress(t *testing.T) {
	c := reviewsCanary()
	c.Spec.Service.Retries = &meshv1.HTTPRetry{Attempts: 2}
	warnings, err := ValidateCanary(c)
	if err != nil || len(warnings) != 0 {
		t.Fatalf("Istio: warnings %v, error %v; want neither", warnings, err)
	}
	c.Spec.Routing = &meshv1.CanaryRouting{Provider: meshv1.RoutingGatewayAPI}
	warnings, err = ValidateCanary(c)
	if err != nil || len(warnings) != 1 || warnings[0].Field != "spec.service.retries" {
		t.Fatalf("Gateway API: warnings %v, error %v; want one for spec.service.retries", warnings, err)
	}
}
