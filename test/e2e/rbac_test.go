package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

// readRBAC reads one of the RBAC manifests under config/rbac: the generated ClusterRole
// (role.yaml, from the +kubebuilder:rbac markers) or a hand-written one.
func readRBAC(t *testing.T, file string, into any) {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "rbac", file))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("config/rbac/%s: %v", file, err)
	}
}

// serviceAccount creates a ServiceAccount for the operator in its own namespace, with the
// leader election Role of config/rbac bound to it, and returns a client config that acts as
// it (impersonation, so the apiserver's RBAC authorizer judges every request the operator
// makes).
func serviceAccount(t *testing.T) (opNS string, sa rbacv1.Subject, cfg *rest.Config) {
	t.Helper()
	opNS = env.CreateNamespace(t)
	if err := env.Client.Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: opNS, Name: "canopy"}}); err != nil {
		t.Fatal(err)
	}
	sa = rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: opNS, Name: "canopy"}
	var election rbacv1.Role
	readRBAC(t, "leader_election_role.yaml", &election)
	bind(t, opNS, election.Rules, sa)
	cfg = rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + opNS + ":canopy",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + opNS, "system:authenticated"},
	}
	return opNS, sa, cfg
}

// bind grants rules to the subject in one namespace, with a Role and a RoleBinding.
func bind(t *testing.T, ns string, rules []rbacv1.PolicyRule, sa rbacv1.Subject) {
	t.Helper()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "canopy-" + strings.ToLower(sa.Name)}, Rules: rules}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{sa},
	}
	for _, o := range []client.Object{role, binding} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
}

// bindClusterRole creates the ClusterRole of a config/rbac file under the given name (the
// tests share one cluster) and binds it to the subject cluster-wide, until the test ends.
func bindClusterRole(t *testing.T, file, name string, subject rbacv1.Subject) {
	t.Helper()
	var role rbacv1.ClusterRole
	readRBAC(t, file, &role)
	role.Name = name
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{subject},
	}
	for _, o := range []client.Object{&role, binding} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), o) })
	}
}

// rolloutAs runs a whole rollout (initialization, 10-20-30, promotion, then a rollback) with
// the operator acting as cfg's user, in namespace ns.
func rolloutAs(t *testing.T, cfg *rest.Config, opts manager.Options, ns string) {
	t.Helper()
	opts.Analyzer = imageAnalyzer{env.Client}
	opts.LeaderElect = true
	startOperatorWith(t, cfg, opts)
	if err := env.Client.Create(t.Context(), newDeployment(ns, "reviews", "bookinfo/reviews:v1", 1)); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(t.Context(), newCanary(ns, "reviews", 10, 30)); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, ns, "reviews", meshv1.PhaseInitialized)
	weights := watchWeights(t, ns, "reviews")
	setImage(t, ns, "reviews", "bookinfo/reviews:v2")
	waitPhase(t, ns, "reviews", meshv1.PhaseSucceeded)
	if got, want := weights.values(), []int32{0, 10, 20, 30, 0}; !slices.Equal(got, want) {
		t.Fatalf("canary weights went %v, want %v", got, want)
	}
	setImage(t, ns, "reviews", "bookinfo/reviews:bad-v3")
	waitPhase(t, ns, "reviews", meshv1.PhaseFailed)
}

// expectForbidden checks that the operator's identity really is confined: it may not do
// what its RBAC does not grant.
func expectForbidden(t *testing.T, cfg *rest.Config, attrs ...authorizationv1.ResourceAttributes) {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(cfg)
	for _, a := range attrs {
		review, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(t.Context(),
			&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &a}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if review.Status.Allowed {
			t.Fatalf("the operator's identity may %s %s in %q; it should not", a.Verb, a.Resource, a.Namespace)
		}
	}
}

// The operator runs a whole rollout with exactly the ClusterRole generated from its
// +kubebuilder:rbac markers (config/rbac/role.yaml) and the leader election Role, as a
// ServiceAccount and not as an admin.
func TestRolloutWithTheGeneratedClusterRole(t *testing.T) {
	testenv.SkipIfShort(t)
	opNS, sa, cfg := serviceAccount(t)
	bindClusterRole(t, "role.yaml", "canopy-manager-"+opNS, sa)
	ns := env.CreateNamespace(t)
	expectForbidden(t, cfg,
		authorizationv1.ResourceAttributes{Verb: "list", Resource: "secrets"},
		authorizationv1.ResourceAttributes{Verb: "watch", Resource: "secrets", Namespace: ns},
		authorizationv1.ResourceAttributes{Verb: "delete", Resource: "namespaces"},
		authorizationv1.ResourceAttributes{Verb: "update", Group: "mesh.canopy.dev", Resource: "metrictemplates", Namespace: ns},
	)
	rolloutAs(t, cfg, manager.Options{LeaderElectionNS: opNS, LeaderElectionID: "canopy-" + opNS}, ns)
}

// Namespace-scoped install: the same rules granted by a Role in each watched namespace, no
// ClusterRole at all, and --watch-namespaces. The operator runs a whole rollout and has no
// access to any other namespace.
func TestRolloutWithNamespacedRoles(t *testing.T) {
	testenv.SkipIfShort(t)
	opNS, sa, cfg := serviceAccount(t)
	var role rbacv1.ClusterRole
	readRBAC(t, "role.yaml", &role)
	ns, other := env.CreateNamespace(t), env.CreateNamespace(t)
	bind(t, ns, role.Rules, rbacv1.Subject{Kind: sa.Kind, Namespace: sa.Namespace, Name: sa.Name})
	expectForbidden(t, cfg,
		authorizationv1.ResourceAttributes{Verb: "list", Group: "mesh.canopy.dev", Resource: "canaries"},
		authorizationv1.ResourceAttributes{Verb: "get", Group: "apps", Resource: "deployments", Namespace: other},
		authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: other},
	)
	rolloutAs(t, cfg, manager.Options{WatchNamespaces: ns, LeaderElectionNS: opNS, LeaderElectionID: "canopy-" + opNS}, ns)
}

// The generated and hand-written roles grant no wildcard verbs, resources or groups, and
// Secrets only by name: get, and create and patch for the server-side apply of the primary's
// copies; never list or watch.
func TestRBACHasNoWildcards(t *testing.T) {
	for _, file := range []string{"role.yaml", "leader_election_role.yaml", "metrics_auth_role.yaml", "metrics_reader_role.yaml", "canary_viewer_role.yaml", "canary_editor_role.yaml"} {
		var role rbacv1.ClusterRole // a Role has the same rules field
		readRBAC(t, file, &role)
		for _, r := range role.Rules {
			for _, v := range slices.Concat(r.Verbs, r.Resources, r.APIGroups, r.NonResourceURLs) {
				if strings.Contains(v, "*") {
					t.Errorf("config/rbac/%s grants a wildcard: %+v", file, r)
				}
			}
			if slices.Contains(r.APIGroups, "") && slices.Contains(r.Resources, "secrets") &&
				slices.ContainsFunc(r.Verbs, func(v string) bool { return !slices.Contains([]string{"get", "create", "patch"}, v) }) {
				t.Errorf("config/rbac/%s grants %v on Secrets; canopy only gets them by name and applies the primary's copies", file, r.Verbs)
			}
		}
	}
}
