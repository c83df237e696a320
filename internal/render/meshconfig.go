package render

import (
	"fmt"

	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// meshConfig is the part of Istio's MeshConfig (istio.io/api mesh/v1alpha1) that meshplane
// writes, with Istio's JSON field names. Fields are set only when meshplane has an opinion,
// so istiod's own defaults apply to everything else. A test parses the output strictly with
// Istio's proto types, so a misspelt field fails there.
type meshConfig struct {
	AccessLogFile         string                 `json:"accessLogFile,omitempty"`
	AccessLogEncoding     string                 `json:"accessLogEncoding,omitempty"`
	DefaultConfig         proxyConfig            `json:"defaultConfig"`
	DefaultProviders      *defaultProviders      `json:"defaultProviders,omitempty"`
	EnablePrometheusMerge bool                   `json:"enablePrometheusMerge"`
	OutboundTrafficPolicy *outboundTrafficPolicy `json:"outboundTrafficPolicy,omitempty"`
	RootNamespace         string                 `json:"rootNamespace"`
	TrustDomain           string                 `json:"trustDomain"`
}

type proxyConfig struct {
	DiscoveryAddress                string            `json:"discoveryAddress"`
	HoldApplicationUntilProxyStarts *bool             `json:"holdApplicationUntilProxyStarts,omitempty"`
	TerminationDrainDuration        string            `json:"terminationDrainDuration,omitempty"`
	ProxyMetadata                   map[string]string `json:"proxyMetadata,omitempty"`
}

type defaultProviders struct {
	Metrics []string `json:"metrics,omitempty"`
}

type outboundTrafficPolicy struct {
	Mode string `json:"mode"`
}

// DiscoveryAddress is the address proxies reach this revision's istiod at.
func (cp *ControlPlane) DiscoveryAddress() string {
	return fmt.Sprintf("%s.%s.svc:15012", cp.IstiodName(), cp.Namespace)
}

// MeshConfigYAML renders the "mesh" key of the istio ConfigMap. Output is deterministic
// (sigs.k8s.io/yaml sorts keys), so the ConfigMap changes only when the spec does.
func MeshConfigYAML(cp *ControlPlane) (string, error) {
	out, err := yaml.Marshal(meshConfigOf(cp))
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// meshConfigOf resolves the mesh config: upstream's defaults, the profile's, then the spec's.
func meshConfigOf(cp *ControlPlane) meshConfig {
	mc := meshConfig{
		DefaultConfig:         proxyConfig{DiscoveryAddress: cp.DiscoveryAddress()},
		DefaultProviders:      &defaultProviders{Metrics: []string{"prometheus"}},
		EnablePrometheusMerge: true,
		RootNamespace:         cp.Namespace,
		TrustDomain:           "cluster.local",
	}
	if cp.Profile == meshv1alpha1.ProfileDemo {
		mc.AccessLogFile = "/dev/stdout"
	}
	if in := cp.Owner.Spec.MeshConfig; in != nil {
		if in.AccessLogFile != nil {
			mc.AccessLogFile = *in.AccessLogFile
		}
		mc.AccessLogEncoding = string(in.AccessLogEncoding)
		if in.TrustDomain != "" {
			mc.TrustDomain = in.TrustDomain
		}
		if in.OutboundTrafficPolicy != nil {
			mc.OutboundTrafficPolicy = &outboundTrafficPolicy{Mode: string(in.OutboundTrafficPolicy.Mode)}
		}
		if dc := in.DefaultConfig; dc != nil {
			mc.DefaultConfig.HoldApplicationUntilProxyStarts = dc.HoldApplicationUntilProxyStarts
			if dc.TerminationDrainDuration != nil {
				mc.DefaultConfig.TerminationDrainDuration = dc.TerminationDrainDuration.Duration.String()
			}
			if len(dc.ProxyMetadata) > 0 {
				mc.DefaultConfig.ProxyMetadata = make(map[string]string, len(dc.ProxyMetadata))
				for k, v := range dc.ProxyMetadata {
					mc.DefaultConfig.ProxyMetadata[k] = string(v)
				}
			}
		}
	}
	return mc
}

// traceSampling is istiod's PILOT_TRACE_SAMPLING: the spec's percentage, else the profile's.
func (cp *ControlPlane) traceSampling() string {
	if mc := cp.Owner.Spec.MeshConfig; mc != nil && mc.Tracing != nil {
		return mc.Tracing.SamplingPercentage
	}
	if cp.Profile == meshv1alpha1.ProfileDemo {
		return "100"
	}
	return "1"
}

// MeshConfigMapName is the name of the ConfigMap istiod and the proxies read mesh config from.
func (cp *ControlPlane) MeshConfigMapName() string { return cp.suffixed("istio") }

func meshConfigMap(cp *ControlPlane, mesh string) *corev1ac.ConfigMapApplyConfiguration {
	return corev1ac.ConfigMap(cp.MeshConfigMapName(), cp.Namespace).
		WithLabels(cp.labels("Pilot")).
		WithOwnerReferences(cp.ownerReference()).
		WithData(map[string]string{
			"mesh":         mesh,
			"meshNetworks": "networks: {}\n",
		})
}
