// Package v1alpha1 contains the API of canopy: Canary, MeshPolicy and MetricTemplate
// in the group mesh.canopy.dev.
// +kubebuilder:object:generate=true
// +groupName=mesh.canopy.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "mesh.canopy.dev", Version: "v1alpha1"}

	// SchemeBuilder adds the Go types of this group-version to a scheme. It depends on
	// apimachinery only, so that the API package stays light to import.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types in this group-version to the given scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&Canary{}, &CanaryList{},
		&MeshPolicy{}, &MeshPolicyList{},
		&MetricTemplate{}, &MetricTemplateList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
