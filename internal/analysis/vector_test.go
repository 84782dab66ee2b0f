package analysis

import (
	"strings"
	"testing"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/analysis/providers/prometheus"
)

// A MeshPolicy's rollout queries several series through the provider resolution of a
// Canary: the operator's Prometheus by default, a tenant's address only through the URL
// policy (nothing is sent to a refused one).
func TestQueryVector(t *testing.T) {
	body := `{"status":"success","data":{"resultType":"vector","result":[` +
		`{"metric":{"source_principal":"spiffe://cluster.local/ns/shop/sa/web"},"value":[1700000000,"3"]},` +
		`{"metric":{"source_principal":"unknown"},"value":[1700000000,"0.5"]}]}}`
	prom := newPromServer(t, map[string]string{"dry_run_result": body})
	r := New(nil, prometheus.NewFactory().New, Options{DefaultProvider: providers.Config{Type: "prometheus", Address: prom.URL}})

	got, err := r.QueryVector(t.Context(), "shop", "MeshPolicy shop/reviews", "spec.rollout.provider", nil, `sum by (source_principal) (x{dry_run_result="denied"})`)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Labels["source_principal"] != "spiffe://cluster.local/ns/shop/sa/web" || got[0].Value != 3 || got[1].Value != 0.5 {
		t.Fatalf("samples: %+v", got)
	}

	// The tenant's address: refused by the default URL policy before any connection.
	_, err = r.QueryVector(t.Context(), "shop", "MeshPolicy shop/reviews", "spec.rollout.provider", &meshv1.MetricProvider{Address: "http://169.254.169.254"}, "up")
	if err == nil || !strings.Contains(err.Error(), "MeshPolicy shop/reviews spec.rollout.provider.address") {
		t.Fatalf("a metadata address: got %v", err)
	}
	if qs, _ := prom.received(); len(qs) != 1 {
		t.Fatalf("queries sent: %q", qs)
	}
}
