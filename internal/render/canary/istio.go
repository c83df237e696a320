package canary

import (
	networkingv1ac "istio.io/client-go/pkg/applyconfiguration/networking/v1"
)

// VirtualServiceApplyConfiguration is Istio's generated apply configuration with the
// accessors controller-runtime's Client.Apply and the applier need, which Istio's lacks.
type VirtualServiceApplyConfiguration struct {
	*networkingv1ac.VirtualServiceApplyConfiguration
}

// IsApplyConfiguration marks it as an apply configuration.
func (VirtualServiceApplyConfiguration) IsApplyConfiguration() {}

// GetAPIVersion returns the apiVersion.
func (v VirtualServiceApplyConfiguration) GetAPIVersion() *string { return v.APIVersion }

// GetKind returns the kind.
func (v VirtualServiceApplyConfiguration) GetKind() *string { return v.Kind }

// GetName returns the name.
func (v VirtualServiceApplyConfiguration) GetName() *string { return v.Name }

// GetNamespace returns the namespace.
func (v VirtualServiceApplyConfiguration) GetNamespace() *string { return v.Namespace }

// DestinationRuleApplyConfiguration is Istio's generated apply configuration with the
// accessors controller-runtime's Client.Apply and the applier need.
type DestinationRuleApplyConfiguration struct {
	*networkingv1ac.DestinationRuleApplyConfiguration
}

// IsApplyConfiguration marks it as an apply configuration.
func (DestinationRuleApplyConfiguration) IsApplyConfiguration() {}

// GetAPIVersion returns the apiVersion.
func (d DestinationRuleApplyConfiguration) GetAPIVersion() *string { return d.APIVersion }

// GetKind returns the kind.
func (d DestinationRuleApplyConfiguration) GetKind() *string { return d.Kind }

// GetName returns the name.
func (d DestinationRuleApplyConfiguration) GetName() *string { return d.Name }

// GetNamespace returns the namespace.
func (d DestinationRuleApplyConfiguration) GetNamespace() *string { return d.Namespace }
