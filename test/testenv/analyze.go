package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
)

// IstioMessage is one finding of Istio's analyzers (istioctl analyze -o json).
type IstioMessage struct {
	Code    string `json:"code"`
	Level   string `json:"level"`
	Message string `json:"message"`
	// Origin is the object the finding is about, "Kind namespace/name" (or "Kind name").
	Origin           string `json:"origin"`
	Reference        string `json:"reference"`
	DocumentationURL string `json:"documentationUrl"`
}

func (m IstioMessage) String() string {
	return fmt.Sprintf("%s [%s] (%s) %s", m.Level, m.Code, m.Origin, m.Message)
}

// testBedFindings are the analyzers' findings about the test bed itself, not about what
// canopy writes: each is dropped by AnalyzeIstio, for the reason given. This is the one
// place they are filtered.
var testBedFindings = map[string]string{
	// Pods the test bed runs for itself before any namespace is labeled (in kube-system) have
	// no sidecar; test and sample namespaces are injected, and so is the ingress gateway.
	"IST0103": "pods of the test bed itself (kube-system) have no sidecar",
}

// AnalyzeIstio runs Istio's analyzers (bin/istioctl analyze) over the cluster, or over the
// given namespaces only, and returns their findings of level Warning and Error that are not
// about the test bed itself (testBedFindings).
func (e *Env) AnalyzeIstio(ctx context.Context, namespaces ...string) ([]IstioMessage, error) {
	istioctl, err := binary("istioctl")
	if err != nil {
		return nil, err
	}
	scopes := [][]string{{"--all-namespaces"}}
	if len(namespaces) > 0 {
		scopes = nil
		for _, ns := range namespaces {
			scopes = append(scopes, []string{"--namespace", ns})
		}
	}
	var out []IstioMessage
	for _, scope := range scopes {
		args := append([]string{"analyze", "--kubeconfig", e.Kubeconfig, "--istioNamespace", IstioNamespace,
			"--output", "json", "--output-threshold", "Warning", "--failure-threshold", "Error", "--timeout", "60s"}, scope...)
		msgs, err := runAnalyze(ctx, istioctl, args)
		if err != nil {
			return nil, err
		}
		out = append(out, msgs...)
	}
	return slices.DeleteFunc(out, func(m IstioMessage) bool { return testBedFindings[m.Code] != "" }), nil
}

// AnalyzeIstioFiles runs Istio's analyzers offline over manifests (istioctl analyze
// --use-kube=false), as a user checks `kubectl canopy render` before applying it, and returns
// their findings of level Warning and Error but those about the test bed (testBedFindings:
// offline, no pod exists at all).
func AnalyzeIstioFiles(ctx context.Context, files ...string) ([]IstioMessage, error) {
	istioctl, err := binary("istioctl")
	if err != nil {
		return nil, err
	}
	args := append([]string{"analyze", "--use-kube=false", "--all-namespaces", "--output", "json", "--output-threshold", "Warning",
		"--failure-threshold", "Error"}, files...)
	msgs, err := runAnalyze(ctx, istioctl, args)
	return slices.DeleteFunc(msgs, func(m IstioMessage) bool { return testBedFindings[m.Code] != "" }), err
}

// runAnalyze runs istioctl analyze; its exit code is 79 when it found errors, which is not
// a failure to analyze.
func runAnalyze(ctx context.Context, istioctl string, args []string) ([]IstioMessage, error) {
	cmd := exec.CommandContext(ctx, istioctl, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !(errors.As(err, &exitErr) && exitErr.ExitCode() == 79) {
		return nil, fmt.Errorf("istioctl %s: %w: %s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	var msgs []IstioMessage
	if out := bytes.TrimSpace(stdout.Bytes()); len(out) > 0 && out[0] == '[' {
		if err := json.Unmarshal(out, &msgs); err != nil {
			return nil, fmt.Errorf("reading istioctl analyze's output: %w: %s", err, out)
		}
	}
	return msgs, nil
}

// ValidateIstio runs Istio's own validation of manifests offline (istioctl validate -f),
// the judgement istiod's webhook passes on each object; it returns istioctl's report when
// an object is refused.
func ValidateIstio(ctx context.Context, files ...string) error {
	istioctl, err := binary("istioctl")
	if err != nil {
		return err
	}
	args := []string{"validate"}
	for _, f := range files {
		args = append(args, "-f", f)
	}
	cmd := exec.CommandContext(ctx, istioctl, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("istioctl validate: %w:\n%s", err, out.String())
	}
	return nil
}
