package v1alpha1_test

import (
	"testing"

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
