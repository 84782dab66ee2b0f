//go:build tools

// Package tools pins Helm, which renders charts/canopy in the install tests (helm template, helm lint).
package tools

import _ "helm.sh/helm/v3/cmd/helm"
