// Package hostile writes hostile and malformed Canaries, MetricTemplates and MeshPolicies
// through a real kube-apiserver with canopy's CRDs and admission webhooks, the operator
// running in this process: each is refused with a message that names the field and the
// reason, or accepted and then handled by the reconcilers without a crash and without
// generating anything partial.
package hostile

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, testenv.Options{Webhooks: true}, &env) }

// operator is canopy running in this process, webhooks on, as deployed.
type operator struct {
	done   chan error
	exited error
	mu     sync.Mutex
}

func startOperator(t *testing.T, opts manager.Options) *operator {
	t.Helper()
	testenv.SkipIfShort(t)
	opts.MetricsAddr, opts.ProbeAddr = "0", "0"
	opts.EnableWebhooks = true
	opts.WebhookHost, opts.WebhookPort, opts.WebhookCertDir = env.Webhook.Host, env.Webhook.Port, env.Webhook.CertDir
	opts.MaxConcurrent, opts.QPS, opts.Burst = 2, 200, 400
	ctx, cancel := context.WithCancel(context.Background())
	op := &operator{done: make(chan error, 1)}
	go func() { op.done <- manager.Run(ctx, env.Config, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := op.wait(); err != nil {
			t.Errorf("the operator exited with an error: %v", err)
		}
	})
	probe := &meshv1.MetricTemplate{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "default"}, Spec: meshv1.MetricTemplateSpec{Query: "up"}}
	testenv.Eventually(t, time.Minute, func() error {
		if !op.running() {
			return fmt.Errorf("the operator exited: %v", op.exited)
		}
		return env.Client.Create(t.Context(), probe.DeepCopy(), client.DryRunAll)
	})
	return op
}

// running reports whether the operator is still running.
func (o *operator) running() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	select {
	case err := <-o.done:
		o.exited = err
		o.done = nil
		return false
	default:
		return o.done != nil
	}
}

func (o *operator) wait() error {
	o.mu.Lock()
	done := o.done
	o.mu.Unlock()
	if done == nil {
		return o.exited
	}
	return <-done
}

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
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[%d,"1"]}]}}`, time.Now().Unix())
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *prometheus) received() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.queries...)
}
