package inject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"sigs.k8s.io/yaml"

	"istio.io/api/annotation"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
)

const defaultDiscoveryAddress = "istiod.istio-system.svc:15012"

// defaultProxyConfig is upstream's mesh.DefaultProxyConfig (1.29–1.31): the values the
// agent assumes, and that are left out of PROXY_CONFIG when unchanged.
func defaultProxyConfig() *meshv1alpha1.ProxyConfig {
	return &meshv1alpha1.ProxyConfig{
		ConfigPath:               "./etc/istio/proxy",
		BinaryPath:               "/usr/local/bin/envoy",
		ClusterName:              &meshv1alpha1.ProxyConfig_ServiceCluster{ServiceCluster: "istio-proxy"},
		DrainDuration:            durationpb.New(45 * time.Second),
		TerminationDrainDuration: durationpb.New(5 * time.Second),
		ProxyAdminPort:           15000,
		ControlPlaneAuthPolicy:   meshv1alpha1.AuthenticationPolicy_MUTUAL_TLS,
		DiscoveryAddress:         defaultDiscoveryAddress,
		StatNameLength:           189,
		StatusPort:               statusPort,
	}
}

var strictJSON = protojson.UnmarshalOptions{}

// parseProxyConfig reads a ProxyConfig from YAML or JSON, rejecting unknown fields. An empty
// document is an empty config.
func parseProxyConfig(doc []byte) (*meshv1alpha1.ProxyConfig, error) {
	pc := &meshv1alpha1.ProxyConfig{}
	// Most documents are JSON (the mesh config always is): skip the YAML conversion for them.
	if trimmed := bytes.TrimSpace(doc); len(trimmed) > 0 && trimmed[0] == '{' {
		if err := strictJSON.Unmarshal(trimmed, pc); err == nil {
			return pc, nil
		}
		pc.Reset()
	}
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, err
	}
	if s := strings.TrimSpace(string(js)); s == "null" || s == "" {
		return pc, nil
	}
	if err := strictJSON.Unmarshal(js, pc); err != nil {
		return nil, err
	}
	return pc, nil
}

// overlayProxyConfig applies src over dst as upstream's MergeProxyConfig does: every field src
// sets replaces dst's, except proxyMetadata, which is merged key by key.
func overlayProxyConfig(dst, src *meshv1alpha1.ProxyConfig) {
	var metadata map[string]string
	if len(dst.ProxyMetadata) > 0 && len(src.ProxyMetadata) > 0 {
		metadata = make(map[string]string, len(dst.ProxyMetadata)+len(src.ProxyMetadata))
		for k, v := range dst.ProxyMetadata {
			metadata[k] = v
		}
		for k, v := range src.ProxyMetadata {
			metadata[k] = v
		}
	}
	d := dst.ProtoReflect()
	src.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		d.Set(fd, v)
		return true
	})
	if metadata != nil {
		dst.ProxyMetadata = metadata
	}
}

// effectiveProxyConfig is the pod's proxy config: upstream's defaults, then the mesh default
// config, then the pod's proxy.istio.io/config annotation.
func effectiveProxyConfig(c *Config, annos map[string]string) (*meshv1alpha1.ProxyConfig, error) {
	pc := defaultProxyConfig()
	pc.DiscoveryAddress = c.DiscoveryAddress
	if len(c.MeshProxyConfig) > 0 {
		js, err := json.Marshal(c.MeshProxyConfig)
		if err != nil {
			return nil, fmt.Errorf("mesh default proxy config: %w", err)
		}
		mesh, err := parseProxyConfig(js)
		if err != nil {
			return nil, fmt.Errorf("mesh default proxy config: %w", err)
		}
		overlayProxyConfig(pc, mesh)
	}
	if v, ok := annos[annotation.ProxyConfig.Name]; ok {
		pod, err := parseProxyConfig([]byte(v))
		if err != nil {
			return nil, annotationError(annotation.ProxyConfig.Name, v, err)
		}
		overlayProxyConfig(pc, pod)
	}
	return pc, nil
}

// proxyConfigJSON is PROXY_CONFIG: the effective config without the fields left at their
// defaults (upstream's cleanProxyConfig), as compact JSON.
func proxyConfigJSON(pc *meshv1alpha1.ProxyConfig) (string, error) {
	clean := proto.Clone(pc).(*meshv1alpha1.ProxyConfig)
	def := defaultProxyConfig()
	if clean.ConfigPath == def.ConfigPath {
		clean.ConfigPath = ""
	}
	if clean.BinaryPath == def.BinaryPath {
		clean.BinaryPath = ""
	}
	if clean.ControlPlaneAuthPolicy == def.ControlPlaneAuthPolicy {
		clean.ControlPlaneAuthPolicy = 0
	}
	if clean.GetServiceCluster() == def.GetServiceCluster() {
		if _, ok := clean.ClusterName.(*meshv1alpha1.ProxyConfig_ServiceCluster); ok {
			clean.ClusterName = nil
		}
	}
	if proto.Equal(clean.DrainDuration, def.DrainDuration) {
		clean.DrainDuration = nil
	}
	if proto.Equal(clean.TerminationDrainDuration, def.TerminationDrainDuration) {
		clean.TerminationDrainDuration = nil
	}
	if clean.DiscoveryAddress == def.DiscoveryAddress {
		clean.DiscoveryAddress = ""
	}
	if clean.ProxyAdminPort == def.ProxyAdminPort {
		clean.ProxyAdminPort = 0
	}
	if clean.StatNameLength == def.StatNameLength {
		clean.StatNameLength = 0
	}
	if clean.StatusPort == def.StatusPort {
		clean.StatusPort = 0
	}
	if len(clean.ProxyMetadata) == 0 {
		clean.ProxyMetadata = nil
	}
	b, err := protojson.Marshal(clean)
	if err != nil {
		return "", err
	}
	// protojson randomises whitespace on purpose; the pod spec must be stable.
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return "", err
	}
	return out.String(), nil
}
