package inject

import (
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"istio.io/api/label"
)

// workload is the object that owns the pod, as upstream's GetDeployMetaFromPod guesses it.
type workload struct {
	name, namespace  string
	apiVersion, kind string
}

var cronJobName = regexp.MustCompile(`(.+)-\d{8,10}$`)

// workloadOf follows the controller reference of a pod whose name is generated: a ReplicaSet
// named <deployment>-<pod-template-hash> is its Deployment, a Job named <cronjob>-<timestamp>
// its CronJob, an OpenShift DeploymentConfig's ReplicationController its DeploymentConfig.
// Otherwise it is the pod itself (an empty name for a generateName pod without a controller,
// as upstream).
func workloadOf(pod *corev1.Pod, namespace string) workload {
	w := workload{name: pod.Name, namespace: namespace, apiVersion: "v1", kind: "Pod"}
	if pod.GenerateName == "" {
		return w
	}
	var ref *metav1.OwnerReference
	for i := range pod.OwnerReferences {
		if c := pod.OwnerReferences[i].Controller; c != nil && *c {
			ref = &pod.OwnerReferences[i]
			break
		}
	}
	if ref == nil {
		return w
	}
	w.apiVersion, w.kind, w.name = ref.APIVersion, ref.Kind, ref.Name
	hash := pod.Labels["pod-template-hash"]
	switch {
	case w.kind == "ReplicaSet" && hash != "" && strings.HasSuffix(ref.Name, hash):
		w.name, w.kind = strings.TrimSuffix(ref.Name, "-"+hash), "Deployment"
	case w.kind == "ReplicationController" && pod.Labels["deploymentconfig"] != "":
		w.name, w.kind = pod.Labels["deploymentconfig"], "DeploymentConfig"
	case w.kind == "Job":
		if m := cronJobName.FindStringSubmatch(ref.Name); len(m) == 2 {
			w.name, w.kind, w.apiVersion = m[1], "CronJob", "batch/v1"
		}
	}
	if w.name == "" {
		w.name = pod.Name
	}
	return w
}

// owner is ISTIO_META_OWNER, or "" when upstream leaves it out.
func (w workload) owner() string {
	if w.apiVersion == "" || w.name == "" {
		return ""
	}
	ns := w.namespace
	if ns == "" {
		ns = "default"
	}
	return "kubernetes://apis/" + w.apiVersion + "/namespaces/" + ns + "/" + strings.ToLower(w.kind) + "s/" + w.name
}

// firstNonEmpty is sprig's `a | default b` chain.
func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// truncLabel is the template's `trunc 63 | trimSuffix "-"`.
func truncLabel(s string) string {
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.TrimSuffix(s, "-")
}

// hboneTunnelLabel marks HBONE-capable sidecars; istio.io/api has no constant for it.
const hboneTunnelLabel = "networking.istio.io/tunnel"

// templateLabels are the labels upstream's template sets on the pod.
func templateLabels(pod *corev1.Pod, w workload, o *options) map[string]string {
	l := pod.Labels
	out := map[string]string{
		label.SecurityTlsMode.Name: firstNonEmpty(l[label.SecurityTlsMode.Name], "istio"),
		label.ServiceCanonicalName.Name: truncLabel(firstNonEmpty(l[label.ServiceCanonicalName.Name],
			l["app.kubernetes.io/name"], l["app"], w.name)),
		label.ServiceCanonicalRevision.Name: firstNonEmpty(l[label.ServiceCanonicalRevision.Name],
			l["app.kubernetes.io/version"], l["version"], "latest"),
	}
	if o.proxyConfig.GetProxyMetadata()["ISTIO_META_ENABLE_HBONE"] == "true" {
		out[hboneTunnelLabel] = firstNonEmpty(l[hboneTunnelLabel], "http")
	}
	return out
}

// Prometheus annotation keys as Prometheus' service discovery sanitises them: it treats
// prometheus.io/scrape, prometheus.io.scrape and prometheus-io/scrape alike.
const (
	promScrape = "prometheus_io_scrape"
	promPort   = "prometheus_io_port"
	promPath   = "prometheus_io_path"
)

func sanitizeLabelName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}

// promScrapeConfig is the agent's ISTIO_PROMETHEUS_ANNOTATIONS.
type promScrapeConfig struct {
	Scrape string `json:"scrape"`
	Path   string `json:"path"`
	Port   string `json:"port"`
}

// applyPrometheusMerge points the pod's scrape annotations at the agent, which merges the
// application's metrics (described by ISTIO_PROMETHEUS_ANNOTATIONS) with Envoy's. A pod that
// opts out of scraping keeps its annotations.
func applyPrometheusMerge(pod *corev1.Pod, sidecar *corev1.Container, enabled bool) {
	if !enabled {
		return
	}
	keys := make([]string, 0, len(pod.Annotations))
	for k := range pod.Annotations {
		keys = append(keys, k)
	}
	slices.Sort(keys) // upstream walks the map; sorting keeps our output stable
	var cfg promScrapeConfig
	var matched []string
	scrapeDecided, portSeen := false, false
	for _, k := range keys {
		v := pod.Annotations[k]
		switch sanitizeLabelName(k) {
		case promScrape:
			if scrape, err := strconv.ParseBool(v); err == nil && !scrapeDecided {
				if !scrape {
					return
				}
				scrapeDecided = true
			}
			cfg.Scrape = v
		case promPort:
			if !portSeen && v == strconv.Itoa(statusPort) {
				return // already pointing at the agent
			}
			portSeen = true
			cfg.Port = v
		case promPath:
			cfg.Path = v
		default:
			continue
		}
		matched = append(matched, k)
	}
	if sidecar != nil && cfg != (promScrapeConfig{}) {
		b, _ := json.Marshal(cfg) // three strings: cannot fail
		sidecar.Env = append(sidecar.Env, corev1.EnvVar{Name: "ISTIO_PROMETHEUS_ANNOTATIONS", Value: string(b)})
	}
	for _, k := range matched {
		delete(pod.Annotations, k)
	}
	pod.Annotations["prometheus.io/port"] = strconv.Itoa(statusPort)
	pod.Annotations["prometheus.io/path"] = "/stats/prometheus"
	pod.Annotations["prometheus.io/scrape"] = "true"
}

// sidecarStatus is the sidecar.istio.io/status annotation: what the template added, so a
// re-injection (or istioctl x uninject) can find it.
type sidecarStatus struct {
	InitContainers   []string `json:"initContainers"`
	Containers       []string `json:"containers"`
	Volumes          []string `json:"volumes"`
	ImagePullSecrets []string `json:"imagePullSecrets"`
	Revision         string   `json:"revision"`
}
