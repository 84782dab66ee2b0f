package testenv_test

import (
	"testing"

	"canopy.dev/canopy/test/testenv"
)

// env is one envtest apiserver shared by this package's tests.
var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, testenv.Options{}, &env) }
