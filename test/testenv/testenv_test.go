package testenv_test

import (
	"fmt"
	"os"
	"testing"

	"canopy.dev/canopy/test/testenv"
)

// env is one envtest apiserver shared by this package's tests.
var env *testenv.Env

func TestMain(m *testing.M) {
	if os.Getenv(crashingChildEnv) != "" {
		crashingChild()
	}
	testenv.Main(m, testenv.Options{}, &env)
}

// crashingChildEnv makes the test binary start an environment and exit without stopping
// it, as a test binary killed by a timeout would; see TestReaperCleansUpAfterACrash.
const crashingChildEnv = "CANOPY_TESTENV_CRASHING_CHILD"

func crashingChild() {
	e, err := testenv.Start(testenv.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Printf("%s %s\n", e.StateDir, e.Config.Host)
	os.Exit(0)
}
