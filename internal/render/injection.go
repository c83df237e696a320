package render

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/inject"
)

// InjectionConfigFor resolves what the injector needs for a MeshControlPlane's revision.
// The webhook and the offline kube-inject command both call it, so they inject alike.
func InjectionConfigFor(mcp *meshv1alpha1.MeshControlPlane) (*inject.Config, error) {
	cp, err := Resolve(mcp)
	if err != nil {
		return nil, err
	}
	return InjectionConfig(cp)
}

// InjectionConfig is the injector's view of a resolved control plane.
func InjectionConfig(cp *ControlPlane) (*inject.Config, error) {
	mc := meshConfigOf(cp)
	// The mesh's default proxy config, in Istio's field names, as the injector merges the
	// pod's proxy.istio.io/config annotation over it.
	raw, err := json.Marshal(mc.DefaultConfig)
	if err != nil {
		return nil, err
	}
	proxyConfig := map[string]any{}
	if err := json.Unmarshal(raw, &proxyConfig); err != nil {
		return nil, err
	}
	cfg := &inject.Config{
		Version:          cp.Release.Version,
		Hub:              cp.Hub,
		Revision:         cp.RevisionLabel(),
		DiscoveryAddress: cp.DiscoveryAddress(),
		CAAddress:        cp.DiscoveryAddress(),
		ClusterID:        "Kubernetes",
		TrustDomain:      mc.TrustDomain,
		MeshProxyConfig:  proxyConfig,
		RewriteAppProbes: true,
		LogLevel:         "warning",
		ProxyResources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1Gi")},
		},
		DisablePrometheusMerge: !mc.EnablePrometheusMerge,
	}
	if cp.Profile == meshv1alpha1.ProfileDemo {
		cfg.ProxyResources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("40Mi")}
	}
	if si := cp.Owner.Spec.SidecarInjector; si != nil {
		cfg.NativeSidecar = si.Mode == meshv1alpha1.SidecarModeNativeSidecar
		if si.Resources != nil {
			cfg.ProxyResources = *si.Resources.DeepCopy()
		}
		if si.LogLevel != "" {
			cfg.LogLevel = string(si.LogLevel)
		}
		if si.RewriteAppHTTPProbers != nil {
			cfg.RewriteAppProbes = *si.RewriteAppHTTPProbers
		}
	}
	if cfg.TrustDomain == "" {
		return nil, fmt.Errorf("no trust domain")
	}
	return cfg, nil
}
