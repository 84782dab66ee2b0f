package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/test/e2e/fixture"
	"canopy.dev/canopy/test/testenv"
)

// TestScreenshots shows the main views with a rollout under way and writes them as PNG
// files: to $CANOPY_SCREENSHOTS when set (make dashboard-screenshots writes docs/dashboard),
// else to a temporary directory, so that make test checks every view renders.
func TestScreenshots(t *testing.T) {
	testenv.SkipIfShort(t)
	out := os.Getenv("CANOPY_SCREENSHOTS")
	if out == "" {
		out = t.TempDir()
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := browser(t)
	startOperator(t)
	// A namespace named as in the docs, made (and removed) by this test alone.
	ns := "bookinfo"
	if err := env.Client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	})

	// Started first, the dashboard's history (from the watch) holds the whole rollout.
	url := dashboard(t)
	// ratings: promoted and at rest; reviews: paused at 30% after three steps.
	rollingCanary(t, ns, "ratings", "1s", 25)
	fixture.WaitPhase(t, env.Client, ns, "ratings", meshv1.PhaseSucceeded)
	rollingCanary(t, ns, "reviews", "2s", 10)
	testenv.Eventually(t, 2*time.Minute, func() error {
		if c := fixture.Canary(t, env.Client, ns, "reviews"); c.Status.CanaryWeight < 30 {
			return fmt.Errorf("weight %d, want 30", c.Status.CanaryWeight)
		}
		return nil
	})
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{meshv1.AnnotationRequest: "pause:screenshots"}}})
	if err := env.Client.Patch(t.Context(), &meshv1.Canary{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"}}, client.RawPatch("application/merge-patch+json", patch)); err != nil {
		t.Fatal(err)
	}
	policy := &meshv1.MeshPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec: meshv1.MeshPolicySpec{
			TargetRef: meshv1.ServiceRef{Kind: "Service", Name: "reviews"},
			MTLS:      &meshv1.MTLS{Mode: "STRICT"},
			Authorization: &meshv1.Authorization{DefaultDeny: true, Rules: []meshv1.AuthorizationRule{{
				From: []meshv1.AuthorizationSource{{ServiceAccounts: []string{ns + "/productpage"}}},
				To:   []meshv1.AuthorizationOperation{{Methods: []string{"GET"}}},
			}}},
			Resilience: &meshv1.Resilience{Timeout: "2s", Retries: &meshv1.HTTPRetry{Attempts: 3, PerTryTimeout: "500ms", RetryOn: "5xx"}},
		},
	}
	if err := env.Client.Create(t.Context(), policy); err != nil {
		t.Fatal(err)
	}

	shot := func(name string) {
		t.Helper()
		b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(out, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(t, ctx, "opening the list", chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(`tr[data-canary="bookinfo/reviews"]`)))
	waitText(t, ctx, `tr[data-canary="bookinfo/reviews"] .phase`, time.Minute, contains("paused"))
	shot("list.png")

	// Within the page, as a person follows a link (Navigate waits for a load that a
	// fragment change never fires).
	goTo := func(hash string) { eval[string](t, ctx, "location.hash = "+strconv.Quote(hash)) }
	goTo("#/canary/bookinfo/reviews")
	run(t, ctx, "opening reviews", chromedp.WaitVisible(chromedp.CSS("#weight")),
		chromedp.Click(chromedp.CSS("#show-generated")), chromedp.WaitVisible(chromedp.CSS(`a[href^="#/yaml/"]`)))
	shot("canary.png")

	run(t, ctx, "opening a generated object's YAML", chromedp.Click(chromedp.CSS(`a[href^="#/yaml/"]`)))
	waitText(t, ctx, "pre.yaml", 30*time.Second, contains("apiVersion:", "generated for Canary bookinfo/reviews"))
	shot("yaml.png")

	goTo("#/policies")
	run(t, ctx, "opening the MeshPolicies", chromedp.WaitVisible(chromedp.CSS("section.card")))
	waitText(t, ctx, "section.card", 30*time.Second, contains("STRICT", "productpage", "timeout 2s"))
	shot("policies.png")

	run(t, ctx, "turning dark", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
		return err
	}))
	goTo("#/canary/bookinfo/reviews")
	run(t, ctx, "opening reviews in the dark", chromedp.WaitVisible(chromedp.CSS("#weight")))
	shot("canary-dark.png")
	t.Logf("screenshots in %s", out)
}
