package install

import (
	"testing"
)

// TestKustomize builds config/default (the full install) and the overlays it is made of,
// checks them and applies them.
func TestKustomize(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		objs := parse(t, run(t, "kustomize", "build", repoPath(t, "config", "default")))
		r := check(t, objs, expectation{image: "ghcr.io/canopy-dev/canopy:latest", namespace: "canopy-system"})
		if *r.deployment.Spec.Replicas != 2 || !r.options.LeaderElect {
			t.Errorf("want 2 replicas with leader election, got %d, leader election %v", *r.deployment.Spec.Replicas, r.options.LeaderElect)
		}
		if len(find(objs, "Namespace")) != 1 {
			t.Error("config/default does not create its namespace")
		}
		checkCRDsSynced(t, objs)
		checkManagerRules(t, objs, "ClusterRole")
		apply(t, objs)
		waitForCertificates(t, objs)
	})
	// The overlays are applied on their own too (make install applies config/crd); the
	// ServiceMonitor of config/prometheus is parsed only, as the test bed lacks its CRD.
	for _, overlay := range []string{"crd", "rbac", "prometheus"} {
		t.Run(overlay, func(t *testing.T) {
			objs := parse(t, run(t, "kustomize", "build", repoPath(t, "config", overlay)))
			checkRBAC(t, objs)
			if overlay == "rbac" || overlay == "prometheus" {
				// Without config/default's namespace, these stay in the placeholder one.
				apply(t, objs, "system")
			} else {
				apply(t, objs)
			}
		})
	}
}
