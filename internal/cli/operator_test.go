package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

// The plugin against the real operator: what the fake operator of the other tests stands
// for (the request annotation, lastHandledRequest, the Warning event of an ignored request,
// the events.k8s.io events of the Canary) must be what canopy does. On envtest no
// Deployment becomes ready, so the Canary stays Initializing: enough for requests.
func TestRequestsThroughTheRealOperator(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	dir := writeBookinfo(t, ns)
	files, err := readManifests([]string{dir}, false, nil, env.Scheme, ns, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range files {
		switch m.obj.(type) {
		case *appsv1.Deployment, *meshv1.Canary:
			if err := env.Client.Create(t.Context(), m.obj); err != nil {
				t.Fatal(err)
			}
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- manager.Run(ctx, env.Config, manager.Options{
			InProcess:   true,
			MetricsAddr: "0", ProbeAddr: "0", MaxConcurrent: 2, WatchNamespaces: ns, QPS: 100, Burst: 200,
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("operator: %v", err)
		}
	})

	c := &meshv1.Canary{}
	testenv.Eventually(t, 30*time.Second, func() error {
		if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews"}, c); err != nil {
			return err
		}
		if c.Status.Phase != meshv1.PhaseInitializing {
			return fmt.Errorf("phase %q", c.Status.Phase)
		}
		return nil
	})

	out, errOut, code := kubectlCanopy(t, "pause", "reviews", "-n", ns, "--wait", "--timeout", "30s")
	if code != ExitOK || !strings.Contains(out, "canopy handled pause: "+ns+"/reviews is Initializing (paused)") {
		t.Errorf("pause --wait: exit %d\n%s\n%s", code, out, errOut)
	}
	_, errOut, code = kubectlCanopy(t, "promote", "reviews", "-n", ns, "--wait", "--timeout", "30s")
	if code != ExitNo || !strings.Contains(errOut, "canopy ignored promote on "+ns+"/reviews: Request \"promote:") {
		t.Errorf("promote --wait while initializing: exit %d\n%s", code, errOut)
	}
	out, errOut, code = kubectlCanopy(t, "status", "reviews", "-n", ns)
	for _, want := range []string{"Initializing (paused)", "Normal    Initializing", "Warning   ManualPromotion"} {
		if code != ExitOK || !strings.Contains(out, want) {
			t.Errorf("status (exit %d) lacks %q:\n%s\n%s", code, want, out, errOut)
		}
	}
	// What the operator applied is what render and diff compute.
	out, errOut, code = kubectlCanopy(t, "diff", "-f", dir)
	if code != ExitOK {
		t.Errorf("diff against the operator's objects: exit %d\n%s\n%s", code, out, errOut)
	}
}
