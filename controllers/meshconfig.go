package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// DefaultMeshConfig is where istiod's mesh configuration lives in a default install: the
// "mesh" key of the istio ConfigMap in istio-system.
var DefaultMeshConfig = types.NamespacedName{Namespace: "istio-system", Name: "istio"}

// tracingProviderKinds are the kinds of extensionProviders that receive traces.
var tracingProviderKinds = []string{"zipkin", "datadog", "stackdriver", "skywalking", "opentelemetry", "lightstep", "opencensus"}

// tracingProviders reads the names of the tracing providers the mesh configuration declares
// (its extensionProviders). read is false when there is no such configuration to read (no
// ConfigMap, or one canopy may not read): nothing can be said then.
func tracingProviders(ctx context.Context, r client.Reader, at types.NamespacedName) (names []string, read bool, err error) {
	cm := &corev1.ConfigMap{}
	if err := r.Get(ctx, at, cm); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("reading the mesh configuration %s: %w", at, err)
	}
	var mesh struct {
		ExtensionProviders []map[string]any `json:"extensionProviders"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["mesh"]), &mesh); err != nil {
		return nil, false, fmt.Errorf("the mesh configuration %s does not parse: %w", at, err)
	}
	for _, p := range mesh.ExtensionProviders {
		name, _ := p["name"].(string)
		if name == "" {
			continue
		}
		for kind := range p {
			if slices.Contains(tracingProviderKinds, strings.ToLower(kind)) {
				names = append(names, name)
				break
			}
		}
	}
	slices.Sort(names)
	return names, true, nil
}
