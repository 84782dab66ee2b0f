package v1alpha1_test

import (
	"context"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/inprocess"
	"canopy.dev/canopy/test/testenv"
)

// env is an envtest apiserver with canopy's webhook configurations installed, as
// generated into config/webhook/manifests.yaml; TestMain runs the operator in this
// process with its webhook server where envtest points them.
var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Options{Webhooks: true}, &env)
}

// startOperator runs the manager with its webhooks on, as deployed.
func startOperator(t *testing.T, opts manager.Options) { inprocess.Start(t, env, opts) }

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
