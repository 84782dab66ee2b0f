package testenv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ModulePath is the Go module of canopy's repository; the repository root is found by
// walking up to the go.mod that declares it.
const ModulePath = "canopy.dev/canopy"

// RepoRoot returns the root of canopy's repository: the nearest parent of the working
// directory (a test's package directory) whose go.mod declares ModulePath.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && declaresModule(data, ModulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod declaring module %s above the working directory", ModulePath)
		}
		dir = parent
	}
}

func declaresModule(gomod []byte, module string) bool {
	for line := range strings.Lines(string(gomod)) {
		fields := strings.Fields(line)
		if len(fields) == 2 && fields[0] == "module" && strings.Trim(fields[1], `"`) == module {
			return true
		}
	}
	return false
}

// BinDir returns where `make components` puts the test bed's binaries: $CANOPY_BIN if
// set, else bin/ in the repository root.
func BinDir() (string, error) {
	if dir := os.Getenv("CANOPY_BIN"); dir != "" {
		return filepath.Abs(dir)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin"), nil
}

// binaries returns the paths of components built by `make components`, or an error that
// names the missing ones and says how to build them: a missing binary fails the test
// rather than skipping it, so that CI cannot pass without running the cluster tests.
func binaries(names ...string) (map[string]string, error) {
	dir, err := BinDir()
	if err != nil {
		return nil, err
	}
	paths := map[string]string{}
	var missing []string
	for _, name := range names {
		path := filepath.Join(dir, name)
		if info, err := os.Stat(path); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			missing = append(missing, name)
		}
		paths[name] = path
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s missing from %s: run `make components` to build the test bed",
			strings.Join(missing, ", "), dir)
	}
	return paths, nil
}

func binary(name string) (string, error) {
	paths, err := binaries(name)
	return paths[name], err
}

// ModuleDir returns the module cache directory of a module required by the Go module in
// dir (the repository root, or a tool module under hack/tools), downloading it if the
// cache lacks it. Other projects' files (CRDs, kwok's stages) are read from there rather
// than copied into the repository.
func ModuleDir(dir, module string) (string, error) {
	var info struct{ Dir, Version string }
	out, err := goCommand(dir, "list", "-m", "-json", module)
	if err == nil {
		err = json.Unmarshal(out, &info)
	}
	if err != nil {
		return "", fmt.Errorf("resolving module %s in %s: %w", module, dir, err)
	}
	if info.Dir != "" {
		return info.Dir, nil
	}
	// `go list -m` leaves Dir empty when the module is not in the cache yet.
	out, err = goCommand(dir, "mod", "download", "-json", module+"@"+info.Version)
	if err == nil {
		err = json.Unmarshal(out, &info)
	}
	if err != nil || info.Dir == "" {
		return "", fmt.Errorf("downloading module %s@%s: %w", module, info.Version, err)
	}
	return info.Dir, nil
}

func goCommand(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return nil, fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return nil, fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}

// IstioCRDPath is the file of Istio's CRDs in the module cache.
func IstioCRDPath() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	istio, err := ModuleDir(root, "istio.io/api")
	if err != nil {
		return "", err
	}
	return filepath.Join(istio, "kubernetes", "customresourcedefinitions.gen.yaml"), nil
}

// CertManagerCRDPath returns the directory of cert-manager's CRDs in the module cache.
func CertManagerCRDPath() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	certManager, err := ModuleDir(root, "github.com/cert-manager/cert-manager")
	if err != nil {
		return "", err
	}
	return filepath.Join(certManager, "deploy", "crds"), nil
}

// GatewayAPICRDPath returns the directory of the Gateway API's standard channel CRDs in
// the module cache (canopy writes only standard channel fields). Its ValidatingAdmissionPolicy
// (safe-upgrades) is in the same directory; envtest installs only the CRDs.
func GatewayAPICRDPath() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	gw, err := ModuleDir(root, "sigs.k8s.io/gateway-api")
	if err != nil {
		return "", err
	}
	return filepath.Join(gw, "config", "crd", "standard"), nil
}

// CRDPaths returns the CRD files and directories installed in every environment:
// canopy's own (config/crd/bases), Istio's, cert-manager's and the Gateway API's, the last
// three from the module cache at the versions go.mod requires. The Gateway API's are there
// before istiod starts, which enables its Gateway API controller only when they exist.
func CRDPaths() ([]string, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	istio, err := IstioCRDPath()
	if err != nil {
		return nil, err
	}
	certManager, err := CertManagerCRDPath()
	if err != nil {
		return nil, err
	}
	gatewayAPI, err := GatewayAPICRDPath()
	if err != nil {
		return nil, err
	}
	return []string{filepath.Join(root, "config", "crd", "bases"), istio, certManager, gatewayAPI}, nil
}
