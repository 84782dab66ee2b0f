package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/test/testenv"
)

// applySamples server-side applies the resources listed by dir's kustomization.yaml.
func applySamples(ctx context.Context, env *testenv.Env, dir string, fast bool) error {
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return err
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(raw, &k); err != nil {
		return fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	for _, file := range k.Resources {
		if err := applyFile(ctx, env, filepath.Join(dir, file), fast); err != nil {
			return err
		}
	}
	return nil
}

// applyFile server-side applies every document of a YAML file.
func applyFile(ctx context.Context, env *testenv.Env, path string, fast bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%s: %w", path, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if fast && u.GetKind() == "Canary" {
			speedUp(u)
		}
		if err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("canopy-demo"), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying %s %s from %s: %w", u.GetKind(), u.GetName(), path, err)
		}
		say("applied %s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
	}
}

// speedUp shortens a Canary's intervals so that the demo's rollouts take a minute or two.
func speedUp(u *unstructured.Unstructured) {
	_ = unstructured.SetNestedField(u.Object, "10s", "spec", "analysis", "interval")
	metrics, _, _ := unstructured.NestedSlice(u.Object, "spec", "analysis", "metrics")
	for _, m := range metrics {
		if mm, ok := m.(map[string]any); ok {
			mm["interval"] = "30s"
		}
	}
	_ = unstructured.SetNestedSlice(u.Object, metrics, "spec", "analysis", "metrics")
}

// ensureNamespaces creates the namespaces that do not exist yet.
func ensureNamespaces(ctx context.Context, env *testenv.Env, names ...string) error {
	for _, name := range names {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if err := env.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating namespace %s: %w", name, err)
		}
	}
	return nil
}

// reportPolicies prints the e-commerce MeshPolicies' state once they are Ready (or after a
// minute): what was generated and the ingress certificate cert-manager issued.
func reportPolicies(ctx context.Context, env *testenv.Env) error {
	deadline := time.Now().Add(time.Minute)
	for {
		list := &meshv1.MeshPolicyList{}
		if err := env.Client.List(ctx, list); err != nil {
			return err
		}
		ready := 0
		for _, p := range list.Items {
			if c := apimeta.FindStatusCondition(p.Status.Conditions, meshv1.ConditionReady); c != nil && c.Status == metav1.ConditionTrue {
				ready++
			}
		}
		if ready == len(list.Items) || time.Now().After(deadline) {
			for _, p := range list.Items {
				msg := "no Ready condition yet"
				if c := apimeta.FindStatusCondition(p.Status.Conditions, meshv1.ConditionReady); c != nil {
					msg = fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
				}
				say("MeshPolicy %s/%s: %d generated objects; %s", p.Namespace, p.Name, len(p.Status.Objects), msg)
				for _, cert := range p.Status.Certificates {
					say("  certificate %s/%s ready=%t notAfter=%v", cert.Namespace, cert.Name, cert.Ready, cert.NotAfter)
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// playBookinfo promotes reviews v2, then has a bad v3 rolled back, printing the progress.
func playBookinfo(ctx context.Context, env *testenv.Env) error {
	key := client.ObjectKey{Namespace: "bookinfo", Name: "reviews"}
	say("waiting for canopy to initialize reviews (primary generated, traffic on it)")
	if _, err := follow(ctx, env, key, meshv1.PhaseInitialized); err != nil {
		return err
	}
	say("new revision: reviews v2 (healthy)")
	if err := setRevision(ctx, env, key, "docker.io/istio/examples-bookinfo-reviews-v2:1.20.2", "0.001", "p50=25,p99=90"); err != nil {
		return err
	}
	if _, err := follow(ctx, env, key, meshv1.PhaseProgressing); err != nil {
		return err
	}
	if _, err := follow(ctx, env, key, meshv1.PhaseSucceeded, meshv1.PhaseFailed); err != nil {
		return err
	}
	say("new revision: reviews v3, which answers 20%% of requests with errors")
	if err := setRevision(ctx, env, key, "docker.io/istio/examples-bookinfo-reviews-v3:1.20.2", "0.2", "p50=25,p99=90"); err != nil {
		return err
	}
	if _, err := follow(ctx, env, key, meshv1.PhaseProgressing); err != nil {
		return err
	}
	c, err := follow(ctx, env, key, meshv1.PhaseFailed, meshv1.PhaseSucceeded)
	if err != nil {
		return err
	}
	for _, cond := range c.Status.Conditions {
		if cond.Type == meshv1.ConditionReady {
			say("rolled back: %s", cond.Message)
		}
	}
	return nil
}

func setRevision(ctx context.Context, env *testenv.Env, key client.ObjectKey, image, errorRate, latency string) error {
	d := &appsv1.Deployment{}
	if err := env.Client.Get(ctx, key, d); err != nil {
		return err
	}
	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.Template.Spec.Containers[0].Image = image
	if d.Spec.Template.Annotations == nil {
		d.Spec.Template.Annotations = map[string]string{}
	}
	d.Spec.Template.Annotations["meshsim.canopy.dev/error-rate"] = errorRate
	d.Spec.Template.Annotations["meshsim.canopy.dev/latency-ms"] = latency
	return env.Client.Patch(ctx, d, patch)
}

// follow prints a line whenever the Canary's progress changes, until it reaches one of phases.
func follow(ctx context.Context, env *testenv.Env, key client.ObjectKey, phases ...meshv1.CanaryPhase) (*meshv1.Canary, error) {
	last := ""
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		c := &meshv1.Canary{}
		if err := env.Client.Get(ctx, key, c); err == nil {
			if line := progressLine(c); line != last {
				say("%s", line)
				last = line
			}
			for _, p := range phases {
				if c.Status.Phase == p && c.Status.ObservedGeneration == c.Generation {
					return c, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

func progressLine(c *meshv1.Canary) string {
	st := c.Status
	var b strings.Builder
	fmt.Fprintf(&b, "%-12s weight %3d%%  step %d  failed checks %d/%d", st.Phase, st.CanaryWeight, st.StepIndex, st.FailedChecks, c.Spec.Analysis.Threshold)
	for _, ch := range st.Checks {
		v := ch.Value
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(&b, "  %s %s (%s, %s)", ch.Name, v, ch.Threshold, ch.Outcome)
	}
	return b.String()
}

// reportIstioAnalysis runs Istio's analyzers over the samples' namespaces, as a user would
// run istioctl analyze, and prints what they found (findings about the test bed itself are
// left out: testenv says which and why).
func reportIstioAnalysis(ctx context.Context, env *testenv.Env, namespaces ...string) error {
	msgs, err := env.AnalyzeIstio(ctx, namespaces...)
	if err != nil {
		return err
	}
	if len(msgs) == 0 {
		say("istioctl analyze: no warning or error in %v: istiod accepts canopy's objects as they are", namespaces)
		return nil
	}
	say("istioctl analyze: %d findings in %v:", len(msgs), namespaces)
	for _, m := range msgs {
		say("  %s", m)
	}
	return nil
}
