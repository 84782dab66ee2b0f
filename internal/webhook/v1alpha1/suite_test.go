package v1alpha1_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

// env is an envtest apiserver with canopy's webhook configurations installed, as
// generated into config/webhook/manifests.yaml; TestMain runs the operator in this
// process with its webhook server where envtest points them.
var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Options{Webhooks: true}, &env)
}

// startOperator runs the manager with its webhooks on, as deployed, and waits until the
// apiserver reaches them.
func startOperator(t *testing.T, opts manager.Options) {
	t.Helper()
	testenv.SkipIfShort(t)
	opts.MetricsAddr, opts.ProbeAddr = "0", "0"
	opts.EnableWebhooks = true
	opts.WebhookHost, opts.WebhookPort, opts.WebhookCertDir = env.Webhook.Host, env.Webhook.Port, env.Webhook.CertDir
	opts.MaxConcurrent, opts.QPS, opts.Burst = 2, 200, 400
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- manager.Run(ctx, env.Config, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the operator exited with an error: %v", err)
		}
	})
	probe := &meshv1.MetricTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "default"},
		Spec:       meshv1.MetricTemplateSpec{Query: "up"},
	}
	testenv.Eventually(t, time.Minute, func() error {
		select {
		case err := <-done:
			return fmt.Errorf("the operator exited: %v", err)
		default:
		}
		return env.Client.Create(t.Context(), probe.DeepCopy(), client.DryRunAll)
	})
}

// warnings collects the apiserver's warnings (admission warnings included).
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.list...)
}

// warningClient is a client whose requests' warnings are collected.
func warningClient(t *testing.T) (client.Client, *warnings) {
	t.Helper()
	w := &warnings{}
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandlerWithContext = w
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c, w
}
