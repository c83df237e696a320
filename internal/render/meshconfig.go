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
	ExtensionProviders    []extensionProvider    `json:"extensionProviders,omitempty"`
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

// extensionProvider is one of meshConfig.extensionProviders: exactly one provider is set.
type extensionProvider struct {
	Name               string              `json:"name"`
	EnvoyFileAccessLog *envoyFileAccessLog `json:"envoyFileAccessLog,omitempty"`
	Zipkin             *tracingService     `json:"zipkin,omitempty"`
	Opentelemetry      *tracingService     `json:"opentelemetry,omitempty"`
}

type envoyFileAccessLog struct {
	Path      string           `json:"path"`
	LogFormat *accessLogFormat `json:"logFormat,omitempty"`
}

type accessLogFormat struct {
	Labels map[string]string `json:"labels"`
}

type tracingService struct {
	Service string `json:"service"`
	Port    int32  `json:"port"`
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
		EnablePrometheusMerge: cp.scrapeAnnotations(),
		ExtensionProviders:    cp.extensionProviders(),
		RootNamespace:         cp.Namespace,
		TrustDomain:           "cluster.local",
	}
	// With spec.telemetry.accessLogging the mesh-wide Telemetry decides, and Istio would
	// ignore the mesh config's access log anyway: the profile's is left out too.
	if cp.Profile == meshv1alpha1.ProfileDemo && cp.telemetry().AccessLogging == nil {
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
