// Package hostile writes hostile and malformed Canaries, MetricTemplates and MeshPolicies
// through a real kube-apiserver with canopy's CRDs and admission webhooks, the operator
// running in this process: each is refused with a message that names the field and the
// reason, or accepted and then handled by the reconcilers without a crash and without
// generating anything partial.
package hostile

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"canopy.dev/canopy/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, testenv.Options{Webhooks: true}, &env) }

// panics counts the panics controller-runtime recovered in reconcilers and webhooks: a
// recovered panic is still a crash of that reconcile or admission request.
func panics(t *testing.T) float64 {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gathering controller-runtime's metrics: %v", err)
	}
	var total float64
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_panics_total" && f.GetName() != "controller_runtime_webhook_panics_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// prometheus stands in for Prometheus' query API: it records every query it receives and
// answers each with the value 1.
type prometheus struct {
	*httptest.Server
	mu      sync.Mutex
	queries []string
}

func newPrometheus(t *testing.T) *prometheus {
	p := &prometheus{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.queries = append(p.queries, r.Form.Get("query"))
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[%d,"1"]}]}}`, time.Now().Unix())
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *prometheus) received() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.queries...)
}
