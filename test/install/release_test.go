package install

import (
	"context"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"canopy.dev/canopy/test/testenv"
)

// TestHelmRelease installs, upgrades and uninstalls a release with bin/helm against the
// envtest apiserver, as docs/operations.md tells users to: the CRDs are upgraded with the
// release and kept when it goes.
func TestHelmRelease(t *testing.T) {
	testenv.SkipIfShort(t)
	chart, _ := chartDir(t)
	ctx := t.Context()
	const release, ns = "rel", "helm-release"
	helm := func(args ...string) string {
		return string(run(t, "helm", append(args, "--kubeconfig", env.Kubeconfig, "--namespace", ns)...))
	}

	// The CRDs exist already (installed by the test bed, as by `make install` or kustomize):
	// Helm takes over only what carries its ownership metadata (docs/operations.md).
	adoptCRDs(t, release, ns)

	out := helm("install", release, chart, "--create-namespace")
	if !strings.Contains(out, "canopy 0.1.0 is installed in namespace "+ns+" as rel-canopy") {
		t.Errorf("helm install printed no NOTES:\n%s", out)
	}
	d := &appsv1.Deployment{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "rel-canopy"}, d); err != nil {
		t.Fatalf("the release's Deployment: %v", err)
	}
	if *d.Spec.Replicas != 2 {
		t.Errorf("installed with %d replicas, want 2", *d.Spec.Replicas)
	}

	helm("upgrade", release, chart, "--set", "replicaCount=3", "--set", "operator.maxConcurrentReconciles=8", "--set", "crds.keep=true")
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(d), d); err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 3 || !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--max-concurrent-reconciles=8") {
		t.Errorf("after the upgrade: %d replicas, args %q", *d.Spec.Replicas, d.Spec.Template.Spec.Containers[0].Args)
	}
	crd := newCRD()
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "canaries.mesh.canopy.dev"}, crd); err != nil {
		t.Fatal(err)
	}
	if crd.GetLabels()["app.kubernetes.io/instance"] != release {
		t.Errorf("the CRD is not managed by the release after the upgrade: labels %v", crd.GetLabels())
	}

	helm("uninstall", release)
	err := env.Client.Get(ctx, client.ObjectKey{Name: "rel-canopy-manager"}, &rbacv1.ClusterRole{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("the manager's ClusterRole after uninstall: %v, want it gone", err)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "canaries.mesh.canopy.dev"}, crd); err != nil || crd.GetDeletionTimestamp() != nil {
		t.Errorf("the Canary CRD after uninstall: %v (deleting: %v), want it kept", err, crd.GetDeletionTimestamp() != nil)
	}
}

// adoptCRDs gives canopy's CRDs the metadata by which Helm recognizes its own objects.
func adoptCRDs(t *testing.T, release, namespace string) {
	t.Helper()
	for _, name := range []string{"canaries.mesh.canopy.dev", "meshpolicies.mesh.canopy.dev", "metrictemplates.mesh.canopy.dev"} {
		crd := newCRD()
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, crd); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(crd.DeepCopy())
		crd.SetLabels(merge(crd.GetLabels(), map[string]string{"app.kubernetes.io/managed-by": "Helm"}))
		crd.SetAnnotations(merge(crd.GetAnnotations(), map[string]string{
			"meta.helm.sh/release-name":      release,
			"meta.helm.sh/release-namespace": namespace,
		}))
		if err := env.Client.Patch(context.Background(), crd, patch); err != nil {
			t.Fatalf("adopting CRD %s: %v", name, err)
		}
	}
}

// newCRD is an empty CustomResourceDefinition to read into (the test bed's scheme does not
// register apiextensions).
func newCRD() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
	return u
}

func merge(into, from map[string]string) map[string]string {
	if into == nil {
		into = map[string]string{}
	}
	for k, v := range from {
		into[k] = v
	}
	return into
}
