//go:build tools

// Package tools pins the Kubernetes control-plane commands that the local test cluster runs.
// They are built from source because prebuilt binaries cannot be downloaded here.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
