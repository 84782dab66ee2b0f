package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

// A real Deployment revision goes from 0 to promoted: the primary ends on the new image with
// its pods Ready; then a bad revision is rolled back with the primary untouched.
func TestCanaryOnLocalCluster(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	startOperator(t, manager.Options{Analyzer: imageAnalyzer{env.Client}})
	if err := env.Client.Create(t.Context(), newDeployment(ns, "reviews", "bookinfo/reviews:v1", 2)); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(t.Context(), newCanary(ns, "reviews", 10, 30)); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, ns, "reviews", meshv1.PhaseInitialized)
	primaryPods := map[string]string{"app": "reviews-primary"}
	testenv.Eventually(t, time.Minute, func() error {
		if n := readyPods(t, ns, primaryPods, "bookinfo/reviews:v1"); n != 2 {
			return fmt.Errorf("%d primary pods Ready on v1, want 2", n)
		}
		return nil
	})

	weights := watchWeights(t, ns, "reviews")
	setImage(t, ns, "reviews", "bookinfo/reviews:v2")
	c := waitPhase(t, ns, "reviews", meshv1.PhaseSucceeded)
	if got, want := weights.values(), []int32{0, 10, 20, 30, 0}; !slices.Equal(got, want) {
		t.Fatalf("canary weights went %v, want %v", got, want)
	}
	testenv.Eventually(t, time.Minute, func() error {
		if n := readyPods(t, ns, primaryPods, "bookinfo/reviews:v2"); n != 2 {
			return fmt.Errorf("%d primary pods Ready on v2, want 2", n)
		}
		return nil
	})
	if c.Status.LastPromotedRevision != c.Status.CurrentRevision {
		t.Fatalf("last promoted %q, current %q", c.Status.LastPromotedRevision, c.Status.CurrentRevision)
	}

	setImage(t, ns, "reviews", "bookinfo/reviews:bad-v3")
	c = waitPhase(t, ns, "reviews", meshv1.PhaseFailed)
	if c.Status.FailedChecks < 2 {
		t.Fatalf("rolled back after %d failed checks, want the threshold 2", c.Status.FailedChecks)
	}
	if n := readyPods(t, ns, primaryPods, "bookinfo/reviews:v2"); n != 2 {
		t.Fatalf("%d primary pods Ready on v2 after the rollback, want 2 (primary untouched)", n)
	}
	testenv.Eventually(t, time.Minute, func() error {
		if n := readyPods(t, ns, map[string]string{"app": "reviews"}, "bookinfo/reviews:bad-v3"); n != 0 {
			return fmt.Errorf("%d canary pods still running after the rollback", n)
		}
		return nil
	})
}

// An operator stopped mid-rollout and started again continues at the step it was on: the
// weights go up one step at a time, none skipped or repeated.
func TestCanaryResumesAfterRestart(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	op := startOperator(t, manager.Options{Analyzer: imageAnalyzer{env.Client}})
	if err := env.Client.Create(t.Context(), newDeployment(ns, "ratings", "bookinfo/ratings:v1", 1)); err != nil {
		t.Fatal(err)
	}
	c := newCanary(ns, "ratings", 10, 50)
	c.Spec.Analysis.Interval = "2s"
	if err := env.Client.Create(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, ns, "ratings", meshv1.PhaseInitialized)
	weights := watchWeights(t, ns, "ratings")
	setImage(t, ns, "ratings", "bookinfo/ratings:v2")
	testenv.Eventually(t, 2*time.Minute, func() error {
		if w := getCanary(t, ns, "ratings").Status.CanaryWeight; w < 20 {
			return fmt.Errorf("weight %d, waiting for 20", w)
		}
		return nil
	})
	op.stop(t)
	stoppedAt := getCanary(t, ns, "ratings").Status
	time.Sleep(3 * time.Second) // more than an interval passes while no operator runs
	if st := getCanary(t, ns, "ratings").Status; st.CanaryWeight != stoppedAt.CanaryWeight {
		t.Fatalf("weight moved from %d to %d with no operator running", stoppedAt.CanaryWeight, st.CanaryWeight)
	}

	startOperator(t, manager.Options{Analyzer: imageAnalyzer{env.Client}})
	waitPhase(t, ns, "ratings", meshv1.PhaseSucceeded)
	if got, want := weights.values(), []int32{0, 10, 20, 30, 40, 50, 0}; !slices.Equal(got, want) {
		t.Fatalf("weights across the restart went %v, want %v (stopped at %d)", got, want, stoppedAt.CanaryWeight)
	}
}
