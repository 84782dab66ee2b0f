// Package browser tests kubectl canopy dashboard in a real browser: Debian's chromium,
// driven headless by chromedp, against the local cluster with the operator in-process.
// The dashboard runs as `kubectl canopy dashboard` does (cli.Main), as the admin or as an
// impersonated ServiceAccount, so the apiserver's RBAC judges what the page may do.
//
// chromium is installed by hack/install-chromium.sh (make test runs it). Without it the
// tests skip, saying so, except in CI (CI=true), where they fail.
package browser

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/cli"
	dashboardpkg "canopy.dev/canopy/internal/dashboard"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/e2e/fixture"
	"canopy.dev/canopy/test/testenv"
)

var env *testenv.Env

// TestMain starts the local cluster (kwok makes the pods Ready); neither istiod nor
// cert-manager is needed to watch and steer rollouts.
func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Options{LocalCluster: true}, &env)
}

// chromium is the browser's path; the test skips without one, or fails in CI.
func chromium(t testing.TB) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	msg := "no chromium: install it with hack/install-chromium.sh (make test does), or set CHROMIUM to a Chrome or Chromium binary"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// browser is a fresh headless chromium for one test, with its own profile. The flags keep
// it from reaching out (the closed network here refuses, and it must work offline anyway).
func browser(t testing.TB, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first action starts the browser, and must not run under a deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// run runs browser actions with a deadline, failing the test on error.
func run(t testing.TB, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(actx, actions...); err != nil {
		t.Fatalf("%s: %v\nthe page shows:\n%s", what, err, pageText(ctx))
	}
}

// pageText is what the page shows, for failure messages.
func pageText(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t testing.TB, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// dashboard runs kubectl canopy dashboard with args (and the admin kubeconfig) until the
// test ends, and returns its URL.
func dashboard(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	errOut := &syncWriter{}
	go func() {
		done <- cli.Main(ctx, append([]string{"dashboard", "--kubeconfig", env.Kubeconfig, "--address", "127.0.0.1:0"}, args...),
			cli.IOStreams{In: strings.NewReader(""), Out: pw, ErrOut: errOut})
		_ = pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("kubectl canopy dashboard exited %d: %s", code, errOut.String())
		}
	})
	urls := dashboardpkg.URLFrom(pr)
	select {
	case u := <-urls:
		return u
	case <-time.After(time.Minute):
		t.Fatalf("kubectl canopy dashboard printed no URL: %s", errOut.String())
	}
	return ""
}

// syncWriter is a strings.Builder written by the command and read by the test.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// startOperator runs canopy in this process until the test ends, with a stand-in analyzer
// that passes every check (the browser tests are about the page, not the analysis).
func startOperator(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- manager.Run(ctx, env.Config, manager.Options{InProcess: true, MetricsAddr: "0", ProbeAddr: "0",
			MaxConcurrent: 4, QPS: 200, Burst: 400, Analyzer: passing{}})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the operator exited with an error: %v", err)
		}
	})
}

// passing answers every check with 100 against >= 99.
type passing struct{}

func (passing) Run(_ context.Context, c *meshv1.Canary) []meshv1.CheckStatus {
	now := metav1.Now()
	var out []meshv1.CheckStatus
	for _, m := range c.Spec.Analysis.Metrics {
		out = append(out, meshv1.CheckStatus{Name: m.Name, Outcome: meshv1.OutcomePass, Value: "100", Threshold: ">= 99", LastMeasured: &now})
	}
	return out
}

// rollingCanary makes a Deployment and its Canary, waits until the Canary is initialized,
// then starts a rollout (a new image) stepping stepWeight every interval up to 50%.
func rollingCanary(t testing.TB, ns, name, interval string, stepWeight int32) {
	t.Helper()
	c := &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: meshv1.CanarySpec{
			TargetRef: meshv1.TargetRef{APIVersion: "apps/v1", Kind: "Deployment", Name: name},
			Service:   meshv1.CanaryService{Port: 9080},
			Analysis: meshv1.CanaryAnalysis{
				Interval: meshv1.Duration(interval), Threshold: 2, StepWeight: &stepWeight, MaxWeight: 50,
				Metrics: []meshv1.CanaryMetric{{Name: "request-success-rate", ThresholdRange: meshv1.ThresholdRange{Min: ptr.To(99.0)}}},
			},
		},
	}
	for _, o := range []client.Object{fixture.Deployment(ns, name, "example/"+name+":v1", 1), c} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	fixture.WaitPhase(t, env.Client, ns, name, meshv1.PhaseInitialized)
	fixture.SetImage(t, env.Client, ns, name, "example/"+name+":v2")
	fixture.WaitPhase(t, env.Client, ns, name, meshv1.PhaseProgressing)
}

// viewer is a ServiceAccount of ns bound to the built-in view ClusterRole in ns only
// (canopy's viewer role, config/rbac/canary_viewer_role.yaml as installed, aggregates into
// it): it may read Canaries, not request actions.
func viewer(t testing.TB, ns string) string {
	t.Helper()
	installViewerRole(t)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "viewer"}}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "viewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "viewer"}},
	}
	for _, o := range []client.Object{sa, rb} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf("system:serviceaccount:%s:viewer", ns)
}

// installViewerRole applies canopy's viewer ClusterRole, as an install does, and waits until
// kube-controller-manager aggregated it into view.
func installViewerRole(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "canary_viewer_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(b, role); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(t.Context(), role); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, func() error {
		view := &rbacv1.ClusterRole{}
		if err := env.Client.Get(t.Context(), client.ObjectKey{Name: "view"}, view); err != nil {
			return err
		}
		for _, r := range view.Rules {
			if slices.Contains(r.APIGroups, meshv1.GroupVersion.Group) {
				return nil
			}
		}
		return fmt.Errorf("the view ClusterRole has no rule for %s yet", meshv1.GroupVersion.Group)
	})
}
