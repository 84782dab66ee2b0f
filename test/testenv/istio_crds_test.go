package testenv_test

import (
	"os"
	"path/filepath"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"canopy.dev/canopy/test/testenv"
)

// TestIstioCRDsServeWhatIstiodWatches checks that the Istio CRDs the test bed installs (those
// of the istio.io/api release the operator's go.mod requires) serve every kind and version
// that the istiod under test ships CRDs for (its own chart's, from the istio.io/istio commit
// hack/tools/istio pins), so that istiod watches nothing the test bed lacks.
func TestIstioCRDsServeWhatIstiodWatches(t *testing.T) {
	installed, err := testenv.IstioCRDPath()
	if err != nil {
		t.Fatal(err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	istio, err := testenv.ModuleDir(filepath.Join(root, "hack", "tools", "istio"), "istio.io/istio")
	if err != nil {
		t.Fatal(err)
	}
	served := servedVersions(t, installed)
	if len(served) == 0 {
		t.Fatalf("no CRD read from %s", installed)
	}
	for kv := range servedVersions(t, filepath.Join(istio, "manifests", "charts", "base", "files", "crd-all.gen.yaml")) {
		if !served[kv] {
			t.Errorf("istiod's chart serves %s; the test bed's CRDs (%s) do not", kv, installed)
		}
	}
}

// TestGatewayAPICRDsServeWhatIstiodWatches checks that the Gateway API CRDs the test bed
// installs (the standard channel of the gateway-api release the operator's go.mod requires)
// serve every kind and version of the standard channel of the release the istiod under test
// is built with, so that its Gateway API controller watches nothing the test bed lacks.
func TestGatewayAPICRDsServeWhatIstiodWatches(t *testing.T) {
	installed, err := testenv.GatewayAPICRDPath()
	if err != nil {
		t.Fatal(err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	istiods, err := testenv.ModuleDir(filepath.Join(root, "hack", "tools", "istio"), "sigs.k8s.io/gateway-api")
	if err != nil {
		t.Fatal(err)
	}
	served := servedVersionsIn(t, installed)
	if !served["gateway.networking.k8s.io/v1/HTTPRoute"] {
		t.Fatalf("the test bed's Gateway API CRDs (%s) serve no gateway.networking.k8s.io/v1 HTTPRoute", installed)
	}
	for kv := range servedVersionsIn(t, filepath.Join(istiods, "config", "crd", "standard")) {
		if !served[kv] {
			t.Errorf("istiod's Gateway API release serves %s; the test bed's CRDs (%s) do not", kv, installed)
		}
	}
}

// servedVersionsIn reads every file of a directory of CRDs, as servedVersions does one.
func servedVersionsIn(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRD file in %s: %v", dir, err)
	}
	out := map[string]bool{}
	for _, f := range files {
		for kv := range servedVersions(t, f) {
			out[kv] = true
		}
	}
	return out
}

// servedVersions reads a file of CRDs into "group/version/kind" keys of what they serve.
func servedVersions(t *testing.T, path string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := testenv.DecodeManifests(data)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		raw, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(raw, &crd); err != nil {
			t.Fatal(err)
		}
		for _, v := range crd.Spec.Versions {
			if v.Served {
				out[crd.Spec.Group+"/"+v.Name+"/"+crd.Spec.Names.Kind] = true
			}
		}
	}
	return out
}
