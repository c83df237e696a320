package metrics

// The status metrics list the kinds they report from the manager's cache.
// +kubebuilder:rbac:groups=mesh.meshplane.io,resources=meshcontrolplanes;canaries,verbs=list;watch
