package testenv

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Main is a package's TestMain: it starts one environment shared by the package's tests,
// stores it in *env, runs the tests, prints the components' logs if a test failed, stops
// the environment and exits. With -short (make test-short) it starts nothing and leaves
// *env nil; cluster tests call SkipIfShort first.
//
// Main sends controller-runtime's log to stderr, errors only, unless the package called
// ctrl.SetLogger before (the first call wins).
func Main(m *testing.M, opts Options, env **Env) {
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	if testing.Short() {
		os.Exit(m.Run())
	}
	start := time.Now()
	e, err := Start(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		os.Exit(1)
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "testenv: started in %s; state in %s\n", time.Since(start).Round(time.Millisecond), e.StateDir)
	}
	*env = e
	code := m.Run()
	if code != 0 {
		e.DumpLogs(os.Stderr)
	}
	if err := e.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: stopping: %v\n", err)
		code = max(code, 1)
	}
	os.Exit(code)
}

// SkipIfShort skips a test that needs a cluster when tests run with -short.
func SkipIfShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a cluster; skipped with -short")
	}
}

// CreateNamespace creates a namespace with a generated name for one test and deletes it
// when the test ends. (On envtest nothing empties a deleted namespace, so it stays
// Terminating; the names never collide.)
func (e *Env) CreateNamespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"}}
	if err := e.Client.Create(t.Context(), ns); err != nil {
		t.Fatalf("creating a namespace: %v", err)
	}
	t.Cleanup(func() {
		// t.Context() is already canceled during cleanup.
		if err := e.Client.Delete(context.Background(), ns); err != nil {
			t.Errorf("deleting namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}
