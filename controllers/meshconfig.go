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

// The kinds of extensionProviders that receive traces, and those that authorize requests.
var (
	tracingProviderKinds       = []string{"zipkin", "datadog", "stackdriver", "skywalking", "opentelemetry", "lightstep", "opencensus"}
	authorizationProviderKinds = []string{"envoyextauthzhttp", "envoyextauthzgrpc"}
)

// meshProviders are the names of the mesh configuration's extensionProviders by use.
type meshProviders struct {
	tracing, authorization []string
}

// readMeshProviders reads the extensionProviders the mesh configuration declares. read is
// false when there is no such configuration to read (no ConfigMap, or one canopy may not
// read): nothing can be said then.
func readMeshProviders(ctx context.Context, r client.Reader, at types.NamespacedName) (p meshProviders, read bool, err error) {
	cm := &corev1.ConfigMap{}
	if err := r.Get(ctx, at, cm); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
			return p, false, nil
		}
		return p, false, fmt.Errorf("reading the mesh configuration %s: %w", at, err)
	}
	var mesh struct {
		ExtensionProviders []map[string]any `json:"extensionProviders"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["mesh"]), &mesh); err != nil {
		return p, false, fmt.Errorf("the mesh configuration %s does not parse: %w", at, err)
	}
	for _, ep := range mesh.ExtensionProviders {
		name, _ := ep["name"].(string)
		if name == "" {
			continue
		}
		for kind := range ep {
			switch k := strings.ToLower(kind); {
			case slices.Contains(tracingProviderKinds, k):
				p.tracing = append(p.tracing, name)
			case slices.Contains(authorizationProviderKinds, k):
				p.authorization = append(p.authorization, name)
			}
		}
	}
	slices.Sort(p.tracing)
	slices.Sort(p.authorization)
	return p, true, nil
}
