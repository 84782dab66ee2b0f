package testenv

import (
	"k8s.io/apimachinery/pkg/runtime"

	"canopy.dev/canopy/internal/scheme"
)

// Scheme returns a new scheme with every type canopy reads or writes: Kubernetes'
// built-in types, canopy's API, Istio's networking, security and telemetry v1 and
// cert-manager's v1. It is the operator's own scheme, so tests decode what it decodes.
func Scheme() *runtime.Scheme { return scheme.New() }
