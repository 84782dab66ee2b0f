package render

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

const (
	// SelectorLabel is the pod label the renderer owns on the primary Deployment: the
	// primary's selector is {SelectorLabel: "<name>-primary"}, and the apex and primary
	// Services select it.
	SelectorLabel = "app"

	// AnnotationRevision is set on the primary Deployment and on its pod template to the
	// revision (see Revision) of the target template it was rendered from.
	AnnotationRevision = "mesh.canopy.dev/revision"

	// PrimarySuffix and CanarySuffix name the generated primary and canary objects.
	PrimarySuffix = "-primary"
	CanarySuffix  = "-canary"

	// KindCanary and KindMeshPolicy are the values of meshv1.LabelOwnerKind.
	KindCanary     = "Canary"
	KindMeshPolicy = "MeshPolicy"

	// maxServiceName is the longest Service name (a DNS-1035 label).
	maxServiceName = 63
	// maxObjectName is the longest name of any other generated object (a DNS-1123 subdomain).
	maxObjectName = 253
	// maxLabelValue is the longest label value.
	maxLabelValue = 63
)

// PrimaryName is the name of the primary Deployment, Service and DestinationRule.
func PrimaryName(name string) string { return name + PrimarySuffix }

// CanaryName is the name of the canary Service and DestinationRule.
func CanaryName(name string) string { return name + CanarySuffix }

// OwnerLabels are the labels on every object generated for the owner of the given kind.
// The namespace label matters for objects outside the owner's namespace, which cannot
// carry an ownerReference and are found (and cleaned up) by these labels instead.
func OwnerLabels(kind, namespace, name string) map[string]string {
	return map[string]string{
		meshv1.LabelManagedBy:      meshv1.ManagedByValue,
		meshv1.LabelOwnerKind:      kind,
		meshv1.LabelOwnerName:      LabelValue(name),
		meshv1.LabelOwnerNamespace: namespace,
	}
}

// LabelValue fits s into a label value: names longer than 63 characters keep a prefix
// and end in a hash of the whole name, so they stay unique and stable.
func LabelValue(s string) string { return limit(s, maxLabelValue) }

// limit shortens s to at most max characters, replacing the tail by a short hash of s.
func limit(s string, max int) string {
	if len(s) <= max {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	h := hex.EncodeToString(sum[:])[:8]
	prefix := strings.TrimRight(s[:max-len(h)-1], "-.")
	return prefix + "-" + h
}

// CreatedBefore orders canopy's resources as its controllers and CLI decide which of two
// claiming one thing wins (two MeshPolicies of a Service, two Canaries of a Deployment): by
// creation, then by name.
func CreatedBefore(a, b metav1.Object) bool {
	ta, tb := a.GetCreationTimestamp(), b.GetCreationTimestamp()
	if !ta.Equal(&tb) {
		return ta.Before(&tb)
	}
	return a.GetName() < b.GetName()
}
