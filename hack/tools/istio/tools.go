//go:build tools

// Package tools pins Istio's control plane (istiod, pilot-discovery) and CLI (istioctl), which
// judge what canopy writes in the test bed: istiod's validating webhook and sidecar injector,
// the xDS it computes for the mesh simulator, and istioctl's validate and analyze.
package tools

import (
	_ "istio.io/istio/istioctl/cmd/istioctl"
	_ "istio.io/istio/pilot/cmd/pilot-discovery"
)
