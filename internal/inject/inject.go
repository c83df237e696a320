// Package inject adds Istio's sidecar to pods. It reproduces, in typed Go, what upstream
// Istio's injector renders from its default "sidecar" template (Istio 1.29–1.31) followed by
// its post-processing (probe rewriting, Prometheus merge, container ordering, status
// annotation), so a workload moved from an istioctl install gets the same pod.
//
// It is pure: no API calls, no text templates.
package inject

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"istio.io/api/annotation"
	"istio.io/api/label"
)

// Container names are Istio's contract with its tooling (istioctl, kubectl defaults, CNI).
const (
	ProxyContainerName = "istio-proxy"
	InitContainerName  = "istio-init"
)

// Config is what the injector needs to know about one revision (resolved from a
// MeshControlPlane by the caller).
type Config struct {
	Version          string // Istio release, e.g. "1.31.1"; proxy image is <Hub>/proxyv2:<Version>
	Hub              string
	Revision         string // "default" or the revision name (istio.io/rev value)
	DiscoveryAddress string // "istiod.istio-system.svc:15012" (or istiod-<rev>...)
	CAAddress        string // usually == DiscoveryAddress
	ClusterID        string // "Kubernetes" by default
	MeshID           string // defaults to TrustDomain when empty
	TrustDomain      string // "cluster.local"
	NativeSidecar    bool   // istio-proxy as an init container with restartPolicy: Always
	// ProxyResources are the proxy's (and istio-init's) resources; default requests
	// 100m/128Mi, limits 2000m/1024Mi (applied when zero).
	ProxyResources corev1.ResourceRequirements
	LogLevel       string // proxy log level, default "warning"
	// MeshProxyConfig is the mesh-wide default proxy config (meshConfig.defaultConfig) as JSON in
	// Istio's ProxyConfig field names (e.g. {"discoveryAddress":"...","holdApplicationUntilProxyStarts":true}); the pod's
	// proxy.istio.io/config annotation is merged over it.
	MeshProxyConfig  map[string]any
	RewriteAppProbes bool // default true upstream: callers set it

	// Fields below are upstream values the default template reads that the fields above do not
	// cover. Their zero values give upstream's defaults.

	// Network is values.global.network: the proxy's ISTIO_META_NETWORK and the pod's
	// topology.istio.io/network label (a pod's own label wins). Empty for single-network meshes.
	Network string
	// ClusterDomain is values.global.proxy.clusterDomain, the DNS suffix in the proxy's
	// --domain argument; default "cluster.local".
	ClusterDomain string
	// ImagePullSecrets is values.global.imagePullSecrets, added to every injected pod.
	ImagePullSecrets []string
	// DisablePrometheusMerge is meshConfig.enablePrometheusMerge=false: leave the pod's
	// prometheus.io annotations alone instead of pointing them at the agent's merged endpoint.
	DisablePrometheusMerge bool
}

// Inject returns a mutated deep copy of pod with the sidecar added, injected=true; or the pod
// unchanged and injected=false when it must not be injected (already injected: has the
// sidecar.istio.io/status annotation; or sidecar.istio.io/inject annotation/label "false";
// hostNetwork pods). namespace is the pod's namespace (pods created through Deployments may have
// no name yet, only generateName, and sometimes no namespace in the object).
// A malformed annotation value returns an error naming the annotation and the value, e.g.
// `annotation sidecar.istio.io/proxyCPU: invalid value "lots": quantities must match ...`.
// It never panics, whatever the input.
func Inject(pod *corev1.Pod, namespace string, cfg *Config) (out *corev1.Pod, injected bool, err error) {
	if pod == nil {
		return nil, false, errors.New("inject: no pod")
	}
	if cfg == nil {
		return nil, false, errors.New("inject: no config")
	}
	if namespace == "" {
		namespace = pod.Namespace
	}
	if !injectionRequired(pod, namespace) {
		return pod, false, nil
	}
	c := cfg.resolved()
	opts, err := parseOptions(pod, &c)
	if err != nil {
		return nil, false, err
	}
	out = pod.DeepCopy()
	if err := mutate(out, namespace, &c, opts); err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// ignoredNamespaces are never injected, whatever their labels (upstream's IgnoredNamespaces).
var ignoredNamespaces = map[string]bool{
	"kube-system":        true,
	"kube-public":        true,
	"kube-node-lease":    true,
	"local-path-storage": true,
}

// injectionRequired is upstream's policy check with policy "enabled" and no never/always
// selectors: the webhook's selectors already chose the pod, only the pod can opt out.
func injectionRequired(pod *corev1.Pod, namespace string) bool {
	if pod.Spec.HostNetwork || ignoredNamespaces[namespace] {
		return false
	}
	if _, done := pod.Annotations[annotation.SidecarStatus.Name]; done {
		return false
	}
	value := pod.Annotations[annotation.SidecarInject.Name]
	if l, ok := pod.Labels[label.SidecarInject.Name]; ok { // the label is the newer API and wins
		value = l
	}
	// Anything but "false" (including invalid values, which upstream logs and ignores) falls
	// back to the default policy, which is to inject.
	return value != "false"
}

// resolved returns the config with upstream's defaults filled in.
func (c *Config) resolved() Config {
	r := *c
	if r.Revision == "" {
		r.Revision = "default"
	}
	if r.ClusterID == "" {
		r.ClusterID = defaultClusterID
	}
	if r.TrustDomain == "" {
		r.TrustDomain = "cluster.local"
	}
	if r.MeshID == "" {
		r.MeshID = r.TrustDomain
	}
	if r.ClusterDomain == "" {
		r.ClusterDomain = "cluster.local"
	}
	if r.LogLevel == "" {
		r.LogLevel = "warning"
	}
	if r.DiscoveryAddress == "" {
		r.DiscoveryAddress = defaultDiscoveryAddress
		if r.Revision != "default" {
			r.DiscoveryAddress = fmt.Sprintf("istiod-%s.istio-system.svc:15012", r.Revision)
		}
	}
	if r.CAAddress == "" {
		r.CAAddress = r.DiscoveryAddress
	}
	return r
}
