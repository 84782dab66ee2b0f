package testenv

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
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
// Terminating; the names never collide.) With istiod running, the namespace is labeled for
// sidecar injection, and when the test ends, before the namespace goes, Istio's analyzers
// judge what is in it: a finding of level Warning or Error fails the test, unless the test
// expected it (ExpectIstioFindings).
func (e *Env) CreateNamespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"}}
	if e.Istio != nil {
		ns.Labels = map[string]string{InjectionLabel: "enabled"}
	}
	if err := e.Client.Create(t.Context(), ns); err != nil {
		t.Fatalf("creating a namespace: %v", err)
	}
	t.Cleanup(func() {
		// t.Context() is already canceled during cleanup.
		if err := e.Client.Delete(context.Background(), ns); err != nil {
			t.Errorf("deleting namespace %s: %v", ns.Name, err)
		}
	})
	if e.Istio != nil {
		// Pods are admitted only once the namespace has its default ServiceAccount.
		e.waitForDefaultServiceAccount(t, ns.Name)
		// Cleanups run last first: this one before the deletion above.
		t.Cleanup(func() { e.expectNoIstioFindings(t, ns.Name) })
	}
	return ns.Name
}

// ExpectIstioFindings says that the test writes, on purpose, what Istio's analyzers report
// with these codes in namespace ns (a conflict it provokes, say): CreateNamespace's check
// lets them pass, and fails the test if they are not found, so the expectation stays true.
func (e *Env) ExpectIstioFindings(t testing.TB, ns string, codes ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.expectedFindings == nil {
		e.expectedFindings = map[string][]string{}
	}
	e.expectedFindings[ns] = append(e.expectedFindings[ns], codes...)
}

func (e *Env) expectNoIstioFindings(t testing.TB, ns string) {
	if t.Failed() {
		return // the failure is what to read
	}
	e.mu.Lock()
	expected := e.expectedFindings[ns]
	delete(e.expectedFindings, ns)
	e.mu.Unlock()
	msgs, err := e.AnalyzeIstio(context.Background(), ns)
	if err != nil {
		t.Errorf("istioctl analyze -n %s: %v", ns, err)
		return
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		if slices.Contains(expected, m.Code) {
			seen[m.Code] = true
			continue
		}
		t.Errorf("istioctl analyze -n %s: %s", ns, m)
	}
	for _, code := range expected {
		if !seen[code] {
			t.Errorf("istioctl analyze -n %s: the expected finding %s was not reported", ns, code)
		}
	}
}

// waitForDefaultServiceAccount waits until the controller-manager created the namespace's
// "default" ServiceAccount, without which the ServiceAccount admission plugin refuses pods.
func (e *Env) waitForDefaultServiceAccount(t testing.TB, ns string) {
	t.Helper()
	err := waitFor("the default ServiceAccount of "+ns, func() error {
		return e.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "default"}, &corev1.ServiceAccount{})
	})
	if err != nil {
		t.Fatal(err)
	}
}
