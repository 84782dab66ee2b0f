package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

// installAdmissionPolicy creates the ValidatingAdmissionPolicy of config/admission-policy
// and its binding for the ServiceAccount sa of namespace ns (the shipped files name
// config/default's), under names of this test's own, until the test ends.
func installAdmissionPolicy(t *testing.T, ns, sa string) {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	read := func(file string, into any) {
		data, err := os.ReadFile(filepath.Join(root, "config", "admission-policy", file))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(data, into); err != nil {
			t.Fatalf("config/admission-policy/%s: %v", file, err)
		}
	}
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
	read("policy.yaml", policy)
	read("binding.yaml", binding)
	const shipped = "system:serviceaccount:canopy-system:canopy-controller-manager"
	cond := &policy.Spec.MatchConditions[0]
	if !strings.Contains(cond.Expression, shipped) {
		t.Fatalf("the shipped policy matches %q, not config/default's ServiceAccount %s", cond.Expression, shipped)
	}
	cond.Expression = strings.Replace(cond.Expression, shipped, "system:serviceaccount:"+ns+":"+sa, 1)
	policy.Name = "canopy-managed-objects-only-" + ns
	binding.Name, binding.Spec.PolicyName = policy.Name, policy.Name
	for _, o := range []client.Object{policy, binding} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), o) })
	}
}

// With the optional ValidatingAdmissionPolicy installed, canopy's ServiceAccount may write
// nothing but the objects canopy manages (and the scale of Deployments), even where its RBAC
// allows more; canopy still runs a whole rollout and a rollback under it.
func TestRolloutUnderTheAdmissionPolicy(t *testing.T) {
	testenv.SkipIfShort(t)
	opNS, sa, cfg := serviceAccount(t)
	bindClusterRole(t, "role.yaml", "canopy-manager-"+opNS, sa)
	installAdmissionPolicy(t, opNS, sa.Name)
	ns := env.CreateNamespace(t)
	as, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}

	// RBAC lets canopy's identity create Services; the policy refuses one canopy does
	// not label as its own. The policy reaches the apiserver's admission within seconds.
	testenv.Eventually(t, 30*time.Second, func() error {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "not-canopys"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
		}
		err := as.Create(t.Context(), svc)
		if err == nil {
			_ = env.Client.Delete(t.Context(), svc)
			return fmt.Errorf("an unlabelled Service was created as canopy")
		}
		if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "app.kubernetes.io/managed-by=canopy") {
			return fmt.Errorf("refused, but not by the policy: %w", err)
		}
		return nil
	})
	rolloutAs(t, cfg, manager.Options{LeaderElectionNS: opNS, LeaderElectionID: "canopy-" + opNS}, ns)

	// The target was scaled, never edited: an edit of its template is refused.
	target := newDeployment(ns, "reviews", "", 0)
	if err := as.Get(t.Context(), client.ObjectKeyFromObject(target), target); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(target.DeepCopy()) // no resourceVersion: canopy may scale it meanwhile
	target.Spec.Template.Spec.Containers[0].Image = "evil/reviews:v9"
	err = as.Patch(t.Context(), target, patch)
	if err == nil || !strings.Contains(err.Error(), "UPDATE of deployments "+ns+"/reviews refused") {
		t.Errorf("canopy's identity edited the target Deployment: %v", err)
	}
	// Nor may it delete what is not its own.
	err = as.Delete(t.Context(), target)
	if err == nil || !strings.Contains(err.Error(), "DELETE of deployments "+ns+"/reviews refused") {
		t.Errorf("canopy's identity deleted the target Deployment: %v", err)
	}

	// The hand-over of a deleted Canary stays within the policy too: the target (set back
	// to the promoted revision) is scaled up, the apex Service, canopy's, selects its pods
	// and is released, and what canopy generated is deleted.
	setImage(t, ns, "reviews", "bookinfo/reviews:v2")
	if err := env.Client.Delete(t.Context(), &meshv1.Canary{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 2*time.Minute, func() error {
		if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews"}, &meshv1.Canary{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("the Canary is still there (%v)", err)
		}
		return nil
	})
	apex := &corev1.Service{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews"}, apex); err != nil {
		t.Fatal(err)
	}
	if apex.Spec.Selector["app"] != "reviews" {
		t.Errorf("after the hand-over the apex Service selects %v, want the target's pods", apex.Spec.Selector)
	}
}
