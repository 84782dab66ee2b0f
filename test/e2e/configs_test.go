package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/internal/workload"
	"canopy.dev/canopy/test/testenv"
)

// configAnalyzer judges a revision by the target's ConfigMap "<target>-config": a mode of
// "bad" fails every check, as a config that breaks the service would.
type configAnalyzer struct{ c client.Client }

func (a configAnalyzer) Run(ctx context.Context, c *meshv1.Canary) []meshv1.CheckStatus {
	cm := &corev1.ConfigMap{}
	outcome, value := meshv1.OutcomePass, "100"
	if err := a.c.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: c.Spec.TargetRef.Name + "-config"}, cm); err != nil {
		outcome, value = meshv1.OutcomeError, ""
	} else if cm.Data["mode"] == "bad" {
		outcome, value = meshv1.OutcomeFail, "42"
	}
	return checksOf(c, outcome, value)
}

// A ConfigMap change of a live target is a rollout: the primary's copy keeps the old data
// while the canary is analysed and after the failed analysis rolled it back, and takes the
// new data only when a good change is promoted. The operator runs with the generated
// ClusterRole, which lets it copy a Secret without listing or watching any.
func TestConfigChangeIsCanaried(t *testing.T) {
	testenv.SkipIfShort(t)
	opNS, sa, cfg := serviceAccount(t)
	bindClusterRole(t, "role.yaml", "canopy-manager-"+opNS, sa)
	ns := env.CreateNamespace(t)
	startOperatorWith(t, cfg, manager.Options{
		Analyzer: configAnalyzer{env.Client}, LeaderElect: true, LeaderElectionNS: opNS, LeaderElectionID: "canopy-" + opNS,
	})
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews-config"}, Data: map[string]string{"mode": "v1"}}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews-db"}, Data: map[string][]byte{"password": []byte("one")}}
	d := newDeployment(ns, "reviews", "bookinfo/reviews:v1", 2)
	d.Spec.Template.Spec.Volumes = []corev1.Volume{
		{Name: "config", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "reviews-config"}},
		}},
		{Name: "db", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "reviews-db"}}},
	}
	for _, o := range []client.Object{cm, secret, d, newCanary(ns, "reviews", 10, 30)} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	waitPhase(t, ns, "reviews", meshv1.PhaseInitialized)
	primaryPods := map[string]string{"app": "reviews-primary"}
	expectPrimaryOnCopy := func() {
		t.Helper()
		testenv.Eventually(t, time.Minute, func() error {
			if n := readyPods(t, ns, primaryPods, "bookinfo/reviews:v1"); n != 2 {
				return fmt.Errorf("%d primary pods Ready, want 2", n)
			}
			pods := &corev1.PodList{}
			if err := env.Client.List(t.Context(), pods, client.InNamespace(ns), client.MatchingLabels(primaryPods)); err != nil {
				return err
			}
			for _, p := range pods.Items {
				// Injected volumes (the mesh's CA, the API server's) come besides.
				if refs := workload.ConfigMapRefs(&p.Spec); !slices.Contains(refs, "reviews-config-primary") || slices.Contains(refs, "reviews-config") {
					return fmt.Errorf("primary pod %s reads ConfigMaps %v, want its copy reviews-config-primary, not reviews-config", p.Name, refs)
				}
			}
			return nil
		})
	}
	expectPrimaryOnCopy()
	expectCopy(t, ns, "v1")
	dbCopy := &corev1.Secret{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews-db-primary"}, dbCopy); err != nil || string(dbCopy.Data["password"]) != "one" {
		t.Fatalf("the primary's copy of Secret reviews-db: %v, %v", err, dbCopy.Data)
	}

	// A bad config: analysed on the canary, rolled back, the primary's copy untouched.
	setMode(t, ns, "bad")
	sawAnalysis := false
	testenv.Eventually(t, 2*time.Minute, func() error {
		c := getCanary(t, ns, "reviews")
		if mode := copyMode(t, ns); mode != "v1" {
			t.Fatalf("the primary's copy holds mode %q in phase %s (weight %d), want v1", mode, c.Status.Phase, c.Status.CanaryWeight)
		}
		if c.Status.Phase == meshv1.PhaseProgressing && c.Status.CanaryWeight > 0 {
			sawAnalysis = true
		}
		if c.Status.Phase != meshv1.PhaseFailed {
			return fmt.Errorf("phase %s", c.Status.Phase)
		}
		return nil
	})
	if !sawAnalysis {
		t.Log("the rollout went to Failed before a poll saw it analysing with traffic")
	}
	c := getCanary(t, ns, "reviews")
	if c.Status.FailedChecks < 2 {
		t.Fatalf("rolled back after %d failed checks, want the threshold 2", c.Status.FailedChecks)
	}
	expectCopy(t, ns, "v1")
	expectPrimaryOnCopy()

	// A good config is promoted: the copy takes it.
	setMode(t, ns, "v2")
	waitPhase(t, ns, "reviews", meshv1.PhaseSucceeded)
	expectCopy(t, ns, "v2")
}

func setMode(t *testing.T, ns, mode string) {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews-config"}, cm); err != nil {
		t.Fatal(err)
	}
	cm.Data["mode"] = mode
	if err := env.Client.Update(t.Context(), cm); err != nil {
		t.Fatal(err)
	}
}

func copyMode(t *testing.T, ns string) string {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews-config-primary"}, cm); err != nil {
		t.Fatalf("reading the primary's copy: %v", err)
	}
	return cm.Data["mode"]
}

func expectCopy(t *testing.T, ns, mode string) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() error {
		if got := copyMode(t, ns); got != mode {
			return errors.New("the primary's copy holds mode " + got + ", want " + mode)
		}
		return nil
	})
}
