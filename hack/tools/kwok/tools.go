//go:build tools

// Package tools pins kwok, which manages the local cluster's fake node and makes its pods Ready.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
