// Package v1alpha1 contains the meshplane API: MeshControlPlane, Canary and, later,
// RemoteCluster, in the group mesh.meshplane.io.
// +kubebuilder:object:generate=true
// +kubebuilder:ac:generate=true
// +groupName=mesh.meshplane.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is group version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "mesh.meshplane.io", Version: "v1alpha1"}

	// SchemeGroupVersion is GroupVersion under the name generated apply configurations use.
	SchemeGroupVersion = GroupVersion

	// SchemeBuilder is used to add go types to the GroupVersionKind scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types in this group-version to the given scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
