// Package istio has Istio's own judgement of what canopy ships and renders, offline:
// istioctl validate (the validation istiod's webhook runs) on every sample and on what
// `kubectl canopy render` makes of them, and istioctl analyze over the rendered objects, as
// a user checks them before applying. The cluster-side checks (istiod's webhook judging every
// write, istioctl analyze after each scenario) run in test/e2e.
package istio

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"canopy.dev/canopy/internal/cli"
	"canopy.dev/canopy/test/testenv"
)

func samplesDir(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "config", "samples")
}

// render runs `kubectl canopy render -f dir` offline and writes its output to a file.
func render(t *testing.T, dir string) string {
	t.Helper()
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	var out, errOut bytes.Buffer
	if code := cli.Main(t.Context(), []string{"render", "-f", dir}, cli.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}); code != 0 {
		t.Fatalf("kubectl canopy render -f %s: exit %d: %s", dir, code, errOut.String())
	}
	path := filepath.Join(t.TempDir(), "rendered.yaml")
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSamplesPassIstioValidation: every sample, and every object canopy renders for them,
// passes Istio's own validation, and Istio's analyzers find nothing in the rendered objects.
func TestSamplesPassIstioValidation(t *testing.T) {
	testenv.SkipIfShort(t)
	dir := samplesDir(t)
	samples, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, f := range samples {
		if filepath.Base(f) != "kustomization.yaml" {
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		t.Fatalf("no sample in %s", dir)
	}
	if err := testenv.ValidateIstio(t.Context(), files...); err != nil {
		t.Errorf("the samples: %v", err)
	}
	rendered := render(t, dir)
	if err := testenv.ValidateIstio(t.Context(), rendered); err != nil {
		t.Errorf("kubectl canopy render -f config/samples: %v", err)
	}
	// The rendered objects with the samples' Services and Deployments beside them, as the
	// analyzers see a cluster.
	msgs, err := testenv.AnalyzeIstioFiles(t.Context(), append(files, rendered)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		t.Errorf("istioctl analyze --use-kube=false: %s", m)
	}
}

// TestMeshPolicySurfacePassesIstioAnalyze: MeshPolicies with every shape of the policy
// surface of issue 24 (routes that redirect, answer directly or split by weight, CORS, a
// local rate limit, JWT authentication, authorization with exclusions, conditions and an
// external authorizer, consistent hashing by cookie, header and source address, locality
// failover, an external host through the egress gateway): what `kubectl canopy render`
// makes of them passes Istio's validation, and its analyzers find nothing. Real istiod
// accepting each shape is shown in test/meshsim and test/e2e.
func TestMeshPolicySurfacePassesIstioAnalyze(t *testing.T) {
	testenv.SkipIfShort(t)
	dir := filepath.Join("testdata", "meshpolicy-surface")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	rendered := render(t, dir)
	out, err := os.ReadFile(rendered)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"EnvoyFilter", "RequestAuthentication", "AuthorizationPolicy", "DestinationRule", "VirtualService", "ServiceEntry", "Gateway"} {
		if !bytes.Contains(out, []byte("\nkind: "+kind+"\n")) {
			t.Errorf("kubectl canopy render -f %s wrote no %s", dir, kind)
		}
	}
	if err := testenv.ValidateIstio(t.Context(), rendered); err != nil {
		t.Errorf("kubectl canopy render -f %s: %v", dir, err)
	}
	msgs, err := testenv.AnalyzeIstioFiles(t.Context(), append(files, rendered)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		t.Errorf("istioctl analyze --use-kube=false: %s", m)
	}
}
