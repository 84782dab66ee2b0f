// Package install checks canopy's two install paths, the Helm chart (charts/canopy) and
// kustomize (config/default): each is rendered by the real tool built from source
// (bin/helm, bin/kustomize), every document is parsed and checked for the invariants an
// operator relies on, and everything is applied with server-side apply to an envtest
// apiserver, which validates it against the real schemas. cert-manager's controllers run
// too, so the webhooks' serving certificate is really issued.
package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"canopy.dev/canopy/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, testenv.Options{CertManager: true}, &env) }

// fieldOwner is the field manager of the applies, as `kubectl apply --server-side` would be.
const fieldOwner = "canopy-install-test"

// repoPath is a path in the repository.
func repoPath(t testing.TB, elem ...string) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(append([]string{root}, elem...)...)
}

// run runs a tool from bin/ and returns its standard output.
func run(t testing.TB, tool string, args ...string) []byte {
	t.Helper()
	path, err := testenv.Tool(tool)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), path, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// parse splits a multi-document YAML stream into objects; every document must be a
// Kubernetes object with an apiVersion, a kind and a name.
func parse(t testing.TB, manifests []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	for i := 0; ; i++ {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
			t.Fatalf("document %d is not a Kubernetes object (apiVersion, kind and metadata.name): %v", i, u.Object)
		}
		objs = append(objs, u)
	}
	if len(objs) == 0 {
		t.Fatal("no objects rendered")
	}
	return objs
}

// applyOrder puts what other objects need first: namespaces, then CRDs.
func applyOrder(u *unstructured.Unstructured) int {
	switch u.GetKind() {
	case "Namespace":
		return 0
	case "CustomResourceDefinition":
		return 1
	}
	return 2
}

// kindsWithoutCRD are the kinds whose CRDs the test bed lacks: the Prometheus Operator's
// are in no Go module the repository requires, so a ServiceMonitor is checked as rendered
// but not applied.
var kindsWithoutCRD = []string{"ServiceMonitor"}

// apply creates the namespaces objs live in and applies objs with server-side apply and
// strict field validation, so that the apiserver refuses unknown or misplaced fields.
func apply(t *testing.T, objs []*unstructured.Unstructured, namespaces ...string) {
	t.Helper()
	testenv.SkipIfShort(t)
	ctx := t.Context()
	for _, ns := range namespaces {
		err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating namespace %s: %v", ns, err)
		}
	}
	c := client.WithFieldValidation(env.Client, metav1.FieldValidationStrict)
	sorted := slices.Clone(objs)
	slices.SortStableFunc(sorted, func(a, b *unstructured.Unstructured) int { return applyOrder(a) - applyOrder(b) })
	for _, u := range sorted {
		if slices.Contains(kindsWithoutCRD, u.GetKind()) {
			t.Logf("not applied (no CRD in the test bed): %s", describe(u))
			continue
		}
		err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u.DeepCopy()), client.FieldOwner(fieldOwner), client.ForceOwnership)
		if err != nil {
			t.Errorf("applying %s: %v", describe(u), err)
		}
	}
}

func describe(u *unstructured.Unstructured) string {
	if u.GetNamespace() != "" {
		return fmt.Sprintf("%s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
	}
	return fmt.Sprintf("%s %s", u.GetKind(), u.GetName())
}

// waitForCertificates waits for cert-manager to issue the Certificates of a rendering
// that brings its own Issuer (the others name an Issuer the test bed does not have).
func waitForCertificates(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, cert := range find(objs, "Certificate") {
		issuer, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name")
		if findNamed(objs, "Issuer", cert.GetNamespace(), issuer) == nil {
			continue
		}
		secret, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
		waitForSecret(t, cert.GetNamespace(), secret)
	}
}

// waitForSecret waits for cert-manager to write a Secret (a Certificate was issued).
func waitForSecret(t *testing.T, namespace, name string) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, func() error {
		var s corev1.Secret
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, &s); err != nil {
			return fmt.Errorf("secret %s/%s: %w", namespace, name, err)
		}
		if len(s.Data[corev1.TLSCertKey]) == 0 {
			return fmt.Errorf("secret %s/%s has no %s yet", namespace, name, corev1.TLSCertKey)
		}
		return nil
	})
}

// readFile returns a file of the repository.
func readFile(t testing.TB, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoPath(t, elem...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// execOutput runs a command expected to fail and returns its combined output.
func execOutput(t testing.TB, path string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), path, args...).CombinedOutput()
	return string(out), err
}
