package metrics

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/rest"
)

func TestClassifyNamesRequestsAsTheAPIServer(t *testing.T) {
	for _, tc := range []struct {
		method, url, contentType string
		verb, resource, sub      string
	}{
		{"GET", "/apis/mesh.canopy.dev/v1alpha1/namespaces/shop/canaries/reviews", "", "get", "canaries", ""},
		{"GET", "/apis/mesh.canopy.dev/v1alpha1/namespaces/shop/canaries", "", "list", "canaries", ""},
		{"GET", "/apis/mesh.canopy.dev/v1alpha1/canaries?watch=true&resourceVersion=5", "", "watch", "canaries", ""},
		{"GET", "/api/v1/watch/namespaces/shop/pods", "", "watch", "pods", ""},
		{"GET", "/api/v1/namespaces/shop/secrets/token", "", "get", "secrets", ""},
		{"GET", "/api/v1/namespaces/shop", "", "get", "namespaces", ""},
		{"PUT", "/api/v1/namespaces/shop/finalize", "", "update", "namespaces", "finalize"},
		{"PATCH", "/apis/mesh.canopy.dev/v1alpha1/namespaces/shop/canaries/reviews/status", "application/merge-patch+json", "patch", "canaries", "status"},
		{"PUT", "/apis/mesh.canopy.dev/v1alpha1/namespaces/shop/canaries/reviews/status", "application/json", "update", "canaries", "status"},
		{"PATCH", "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/reviews", "application/apply-patch+yaml", "apply", "virtualservices", ""},
		{"POST", "/apis/events.k8s.io/v1/namespaces/shop/events", "application/json", "create", "events", ""},
		{"DELETE", "/api/v1/namespaces/shop/services/reviews-canary", "", "delete", "services", ""},
		{"DELETE", "/api/v1/namespaces/shop/pods", "", "deletecollection", "pods", ""},
		{"PUT", "/apis/apps/v1/namespaces/shop/deployments/reviews/scale", "application/json", "update", "deployments", "scale"},
	} {
		req := httptest.NewRequest(tc.method, tc.url, nil)
		if tc.contentType != "" {
			req.Header.Set("Content-Type", tc.contentType)
		}
		verb, resource, sub, ok := classify(req)
		if !ok || verb != tc.verb || resource != tc.resource || sub != tc.sub {
			t.Errorf("%s %s = %q %q %q %v, want %q %q %q", tc.method, tc.url, verb, resource, sub, ok, tc.verb, tc.resource, tc.sub)
		}
	}
	for _, url := range []string{"/version", "/apis", "/api/v1", "/apis/apps/v1", "/healthz", "/openapi/v3"} {
		if verb, _, _, ok := classify(httptest.NewRequest("GET", url, nil)); ok {
			t.Errorf("GET %s counted as %q, want not counted (no resource)", url, verb)
		}
	}
}

func TestInstrumentRequestsCountsAClientsRequests(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	cfg := &rest.Config{Host: srv.URL}
	InstrumentRequests(cfg)
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	before := testutil.ToFloat64(apiRequests.WithLabelValues("list", "configmaps", ""))
	resp, err := hc.Get(srv.URL + "/api/v1/namespaces/shop/configmaps")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if got := testutil.ToFloat64(apiRequests.WithLabelValues("list", "configmaps", "")) - before; got != 1 {
		t.Errorf("counted %v lists of configmaps, want 1", got)
	}
}
