package install

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
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
	// One namespace watched: the manager's rules in a Role there, the webhooks scoped to it.
	t.Run("namespaced", func(t *testing.T) {
		objs := parse(t, run(t, "kustomize", "build", repoPath(t, "config", "namespaced")))
		r := check(t, objs, expectation{image: "ghcr.io/canopy-dev/canopy:latest", namespace: "canopy-system"})
		checkNamespacedScope(t, r, "apps")
		if sa := r.deployment.Spec.Template.Spec.ServiceAccountName; sa != "canopy-controller-manager" {
			t.Fatalf("the manager runs as %q", sa)
		}
		for _, b := range find(objs, "RoleBinding") {
			rb := convert[rbacv1.RoleBinding](t, b)
			if rb.RoleRef.Kind != "Role" || findNamed(objs, "Role", rb.Namespace, rb.RoleRef.Name) == nil ||
				len(rb.Subjects) != 1 || rb.Subjects[0].Namespace != "canopy-system" || rb.Subjects[0].Name != "canopy-controller-manager" {
				t.Errorf("%s: binds %+v to %+v, want a rendered Role of its namespace to the manager", describe(b), rb.RoleRef, rb.Subjects)
			}
		}
		apply(t, objs, "apps")
	})
	// The optional admission policy names config/default's ServiceAccount.
	t.Run("admission-policy", func(t *testing.T) {
		objs := parse(t, run(t, "kustomize", "build", repoPath(t, "config", "admission-policy")))
		checkAdmissionPolicy(t, objs, "system:serviceaccount:canopy-system:canopy-controller-manager", "Deny")
		apply(t, objs)
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
