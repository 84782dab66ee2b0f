package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/meshsim"
	"canopy.dev/canopy/test/testenv"
)

// Session affinity (Flagger's analysis.sessionAffinity): during a weighted rollout, every
// request carrying the canary's cookie reaches the canary workload, whatever the weights,
// while the others are split by them; once the rollout is promoted the cookie routes
// nothing. The routing is istiod's translation of the VirtualService canopy wrote, as the
// mesh simulator receives it; istioctl analyze judges the namespace when the test ends.
func TestSessionAffinity(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	startOperator(t, manager.Options{WatchNamespaces: ns, Analyzer: imageAnalyzer{env.Client}})
	c := newCanary(ns, "reviews", 10, 50)
	c.Spec.Analysis.Interval = "2s"
	c.Spec.Analysis.SessionAffinity = &meshv1.SessionAffinity{CookieName: "flagger-cookie", MaxAge: 3600}
	deployReviews(t, c)

	// A rollout held at its first step, by a pause request.
	setImage(t, ns, "reviews", "bookinfo/reviews:v2")
	testenv.Eventually(t, time.Minute, func() error {
		if c := getCanary(t, ns, "reviews"); c.Status.Phase != meshv1.PhaseProgressing || c.Status.CanaryWeight == 0 {
			return fmt.Errorf("%s at %d%%, waiting for the first step", c.Status.Phase, c.Status.CanaryWeight)
		}
		return nil
	})
	requestAction(t, ns, "reviews", "pause:1")
	testenv.Eventually(t, 30*time.Second, func() error {
		if c := getCanary(t, ns, "reviews"); !c.Status.Paused {
			return fmt.Errorf("not paused yet (%s at %d%%)", c.Status.Phase, c.Status.CanaryWeight)
		}
		return nil
	})
	c = getCanary(t, ns, "reviews")
	rev := c.Status.CurrentRevision
	t.Logf("paused at %d%%, the canary runs %s", c.Status.CanaryWeight, rev)

	// The canary's answers set the cookie.
	vs := &istionetv1.VirtualService{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews"}, vs); err != nil {
		t.Fatal(err)
	}
	weighted := vs.Spec.Http[len(vs.Spec.Http)-1]
	if got, want := weighted.Route[1].GetHeaders().GetResponse().GetAdd()["Set-Cookie"], "flagger-cookie="+rev+"; Max-Age=3600; Path=/"; got != want {
		t.Errorf("the canary's Set-Cookie %q, want %q", got, want)
	}

	// Users who were sent to the canary come back with its cookie among others.
	ctx, cancel := context.WithCancel(context.Background())
	sim, err := meshsim.Start(ctx, env.Config, meshsim.Options{
		XDSAddress:     env.Istio.XDSAddress,
		Namespaces:     []string{ns},
		Headers:        map[string]string{"cookie": "session=42; flagger-cookie=" + rev + "; theme=dark"},
		HeaderFraction: 0.3,
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-sim.Done() })
	count := func(workload string, tagged bool) int64 {
		return sim.Stats().Requests(func(k meshsim.RouteKey) bool {
			return k.Namespace == ns && k.Workload == workload && k.Tagged == tagged && !k.Mirror
		})
	}
	testenv.Eventually(t, time.Minute, func() error {
		if n := count("reviews", true); n < 100 {
			return fmt.Errorf("%d requests with the cookie reached the canary, waiting for 100", n)
		}
		if count("reviews", false) == 0 || count("reviews-primary", false) == 0 {
			return fmt.Errorf("requests without the cookie: %d to the canary, %d to the primary; waiting for both",
				count("reviews", false), count("reviews-primary", false))
		}
		return nil
	})
	if n := count("reviews-primary", true); n != 0 {
		t.Errorf("%d requests with the canary's cookie reached the primary, want none", n)
	}
	t.Logf("with the cookie: %d to the canary; without: %d to the canary, %d to the primary",
		count("reviews", true), count("reviews", false), count("reviews-primary", false))

	// Promoted: the cookie routes nothing; its requests go where everyone's go.
	requestAction(t, ns, "reviews", "resume:1")
	waitPhase(t, ns, "reviews", meshv1.PhaseSucceeded)
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews"}, vs); err != nil {
		t.Fatal(err)
	}
	for _, rt := range vs.Spec.Http {
		if rt.Match != nil || strings.Contains(rt.String(), "Set-Cookie") {
			t.Errorf("after the promotion, route %v still matches or sets the cookie", rt)
		}
	}
	before := count("reviews-primary", true)
	testenv.Eventually(t, time.Minute, func() error {
		if n := count("reviews-primary", true) - before; n < 20 {
			return fmt.Errorf("%d requests with the cookie reached the promoted primary since, waiting for 20", n)
		}
		return nil
	})
}

// requestAction sets the Canary's mesh.canopy.dev/request annotation.
func requestAction(t *testing.T, ns, name, value string) {
	t.Helper()
	patch := []byte(`{"metadata":{"annotations":{"` + meshv1.AnnotationRequest + `":"` + value + `"}}}`)
	c := &meshv1.Canary{}
	c.Namespace, c.Name = ns, name
	if err := env.Client.Patch(t.Context(), c, client.RawPatch("application/merge-patch+json", patch)); err != nil {
		t.Fatal(err)
	}
}
