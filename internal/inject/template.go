package inject

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"istio.io/api/annotation"
	"istio.io/api/label"
)

// Ports of Istio's data plane.
const (
	statusPort       = 15020 // agent: health, merged metrics, app probes
	readinessPort    = 15021 // Envoy's /healthz/ready
	envoyPromPort    = 15090
	outboundPort     = "15001"
	inboundPort      = "15006"
	proxyUID         = 1337
	proxyGID         = 1337
	startupFailures  = 600
	probeTimeoutSecs = 3
)

// rendered is the output of upstream's sidecar template for one pod, before it is merged into
// the pod: the pieces the status annotation records.
type rendered struct {
	labels           map[string]string
	annotations      map[string]string
	initContainers   []corev1.Container
	containers       []corev1.Container
	volumes          []corev1.Volume
	imagePullSecrets []string
}

// render builds what the template would render for pod.
func render(pod *corev1.Pod, w workload, c *Config, o *options) (*rendered, error) {
	r := &rendered{
		labels:           templateLabels(pod, w, o),
		annotations:      map[string]string{annotation.IoIstioRev.Name: c.Revision},
		volumes:          volumes(o),
		imagePullSecrets: slices.Clone(c.ImagePullSecrets),
	}
	apps := appContainerNames(pod)
	if len(apps) > 0 {
		for _, a := range []string{"kubectl.kubernetes.io/default-logs-container", "kubectl.kubernetes.io/default-container"} {
			if _, ok := pod.Annotations[a]; !ok {
				r.annotations[a] = apps[0]
			}
		}
	}
	proxy, err := proxyContainer(pod, w, c, o, apps)
	if err != nil {
		return nil, err
	}
	if o.interception != modeNone {
		r.initContainers = append(r.initContainers, initContainer(o))
	}
	if o.native {
		r.initContainers = append(r.initContainers, proxy)
	} else {
		r.containers = append(r.containers, proxy)
	}
	return r, nil
}

// appContainerNames are the pod's containers other than a user-defined istio-proxy.
func appContainerNames(pod *corev1.Pod) []string {
	names := make([]string, 0, len(pod.Spec.Containers))
	for i := range pod.Spec.Containers {
		if n := pod.Spec.Containers[i].Name; n != ProxyContainerName {
			names = append(names, n)
		}
	}
	return names
}

// excludeInboundPorts is upstream's excludeInboundPort: the agent's status port is always
// excluded from inbound capture, appended unless already listed.
func excludeInboundPorts(excluded string) string {
	port := strconv.Itoa(statusPort)
	var out []string
	for _, p := range strings.Split(excluded, ",") {
		if p == port {
			return excluded
		}
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(append(out, port), ",")
}

// initContainer is istio-init, which installs the pod's iptables redirection.
func initContainer(o *options) corev1.Container {
	args := []string{
		"istio-iptables",
		"-p", outboundPort,
		"-z", inboundPort,
		"-u", strconv.Itoa(proxyUID),
		"-m", o.interception,
		"-i", o.includeIPRanges,
		"-x", o.excludeIPRanges,
		"-b", o.includeInboundPorts,
		"-d", "15090,15021," + excludeInboundPorts(o.excludeInboundPorts),
	}
	if o.includeOutboundPorts != nil {
		args = append(args, "-q", *o.includeOutboundPorts)
	}
	if o.excludeOutboundPorts != nil {
		args = append(args, "-o", *o.excludeOutboundPorts)
	}
	if o.virtualInterfaces != nil {
		args = append(args, "-k", *o.virtualInterfaces)
	}
	if o.excludeInterfaces != nil {
		args = append(args, "-c", *o.excludeInterfaces)
	}
	args = append(args, "--log_output_level="+o.agentLogLevel)
	return corev1.Container{
		Name:      InitContainerName,
		Image:     o.image,
		Args:      args,
		Env:       metadataEnv(o),
		Resources: *o.resources.DeepCopy(),
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			Privileged:               ptr.To(false),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
			ReadOnlyRootFilesystem: ptr.To(false),
			RunAsGroup:             ptr.To[int64](0),
			RunAsNonRoot:           ptr.To(false),
			RunAsUser:              ptr.To[int64](0),
		},
	}
}

// metadataEnv is the proxy config's proxyMetadata as env, in key order (as the template's
// range over the map yields it).
func metadataEnv(o *options) []corev1.EnvVar {
	md := o.proxyConfig.GetProxyMetadata()
	if len(md) == 0 {
		return nil
	}
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	env := make([]corev1.EnvVar, 0, len(keys))
	for _, k := range keys {
		env = append(env, corev1.EnvVar{Name: k, Value: md[k]})
	}
	return env
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

func resourceEnv(name, res string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: res}}}
}

// podPortsJSON is ISTIO_META_POD_PORTS, laid out byte for byte as the template's block scalar.
func podPortsJSON(pod *corev1.Pod) string {
	var b strings.Builder
	b.WriteString("[")
	first := true
	for i := range pod.Spec.Containers {
		for _, p := range pod.Spec.Containers[i].Ports {
			js, err := json.Marshal(p)
			if err != nil {
				continue
			}
			b.WriteString("\n    ")
			if !first {
				b.WriteString(",")
			}
			b.Write(js)
			first = false
		}
	}
	b.WriteString("\n]")
	return b.String()
}

func proxyEnv(pod *corev1.Pod, w workload, c *Config, o *options, apps []string) ([]corev1.EnvVar, error) {
	pcJSON, err := proxyConfigJSON(o.proxyConfig)
	if err != nil {
		return nil, err
	}
	env := make([]corev1.EnvVar, 0, 24+len(o.proxyConfig.GetProxyMetadata()))
	env = append(env,
		corev1.EnvVar{Name: "PILOT_CERT_PROVIDER", Value: "istiod"},
		corev1.EnvVar{Name: "CA_ADDR", Value: c.CAAddress},
		fieldEnv("POD_NAME", "metadata.name"),
		fieldEnv("POD_NAMESPACE", "metadata.namespace"),
		fieldEnv("INSTANCE_IP", "status.podIP"),
		fieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"),
		fieldEnv("HOST_IP", "status.hostIP"),
		resourceEnv("ISTIO_CPU_LIMIT", "limits.cpu"),
		corev1.EnvVar{Name: "PROXY_CONFIG", Value: pcJSON + "\n"},
		corev1.EnvVar{Name: "ISTIO_META_POD_PORTS", Value: podPortsJSON(pod)},
		corev1.EnvVar{Name: "ISTIO_META_APP_CONTAINERS", Value: strings.Join(apps, ",")},
		resourceEnv("GOMEMLIMIT", "limits.memory"),
		resourceEnv("GOMAXPROCS", "limits.cpu"),
		corev1.EnvVar{Name: "ISTIO_META_CLUSTER_ID", Value: c.ClusterID},
		fieldEnv("ISTIO_META_NODE_NAME", "spec.nodeName"),
		corev1.EnvVar{Name: "ISTIO_META_INTERCEPTION_MODE", Value: o.interception},
	)
	if c.Network != "" {
		env = append(env, corev1.EnvVar{Name: "ISTIO_META_NETWORK", Value: c.Network})
	}
	if name := firstNonEmpty(pod.Labels[label.ServiceWorkloadName.Name], w.name); name != "" {
		env = append(env, corev1.EnvVar{Name: "ISTIO_META_WORKLOAD_NAME", Value: name})
	}
	if owner := w.owner(); owner != "" {
		env = append(env, corev1.EnvVar{Name: "ISTIO_META_OWNER", Value: owner})
	}
	if o.bootstrapOverride != "" {
		env = append(env, corev1.EnvVar{Name: "ISTIO_BOOTSTRAP_OVERRIDE", Value: customBootstrapPath + "/custom_bootstrap.json"})
	}
	env = append(env,
		corev1.EnvVar{Name: "ISTIO_META_MESH_ID", Value: c.MeshID},
		corev1.EnvVar{Name: "TRUST_DOMAIN", Value: c.TrustDomain},
	)
	return append(env, metadataEnv(o)...), nil
}

func healthProbe(period, failures, delay int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: "/healthz/ready",
			Port: intstr.FromInt32(readinessPort),
		}},
		InitialDelaySeconds: delay,
		PeriodSeconds:       period,
		TimeoutSeconds:      probeTimeoutSecs,
		FailureThreshold:    failures,
	}
}

// proxySecurityContext is the proxy's: unprivileged, except TPROXY interception, which needs
// NET_ADMIN as root, and iptables trace logging.
func proxySecurityContext(o *options) *corev1.SecurityContext {
	if o.proxyConfig.GetProxyMetadata()["IPTABLES_TRACE_LOGGING"] == "true" {
		return &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(true),
			Capabilities:             &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}, Drop: []corev1.Capability{"ALL"}},
			Privileged:               ptr.To(true),
			ReadOnlyRootFilesystem:   ptr.To(true),
			RunAsGroup:               ptr.To[int64](proxyGID),
			RunAsNonRoot:             ptr.To(false),
			RunAsUser:                ptr.To[int64](0),
		}
	}
	sc := &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		Privileged:               ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		RunAsGroup:               ptr.To[int64](proxyGID),
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To[int64](proxyUID),
	}
	if o.interception == modeTProxy {
		sc.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		sc.RunAsNonRoot, sc.RunAsUser = ptr.To(false), ptr.To[int64](0)
	}
	return sc
}

// proxyContainer is istio-proxy: pilot-agent and Envoy.
func proxyContainer(pod *corev1.Pod, w workload, c *Config, o *options, apps []string) (corev1.Container, error) {
	env, err := proxyEnv(pod, w, c, o, apps)
	if err != nil {
		return corev1.Container{}, err
	}
	ctr := corev1.Container{
		Name:  ProxyContainerName,
		Image: o.image,
		Ports: []corev1.ContainerPort{{Name: "http-envoy-prom", ContainerPort: envoyPromPort, Protocol: corev1.ProtocolTCP}},
		Args: []string{
			"proxy", "sidecar",
			"--domain", "$(POD_NAMESPACE).svc." + c.ClusterDomain,
			"--proxyLogLevel=" + o.logLevel,
			"--proxyComponentLogLevel=" + o.componentLogLevel,
			"--log_output_level=" + o.agentLogLevel,
		},
		Env:             env,
		StartupProbe:    healthProbe(1, startupFailures, 0),
		ReadinessProbe:  healthProbe(o.readinessPeriod, o.readinessFailures, o.readinessDelay),
		SecurityContext: proxySecurityContext(o),
		Resources:       *o.resources.DeepCopy(),
		VolumeMounts:    volumeMounts(o),
	}
	switch {
	case o.native:
		// A native sidecar outlives the app containers; draining on preStop lets in-flight
		// requests finish before the kubelet sends SIGTERM.
		ctr.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		ctr.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			Command: []string{"pilot-agent", "request", "--debug-port=" + strconv.Itoa(statusPort), "POST", "drain"},
		}}}
	case o.hold:
		// The kubelet starts containers in order and waits for postStart: the app starts once
		// the proxy is ready.
		ctr.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			Command: []string{"pilot-agent", "wait"},
		}}}
	}
	return ctr, nil
}

// customBootstrapPath is where a sidecar.istio.io/bootstrapOverride ConfigMap is mounted.
const customBootstrapPath = "/etc/istio/custom-bootstrap"

// volumeMounts are the proxy's mounts, in the template's order.
func volumeMounts(o *options) []corev1.VolumeMount {
	m := make([]corev1.VolumeMount, 0, 10+len(o.userMounts))
	m = append(m,
		corev1.VolumeMount{Name: "workload-socket", MountPath: "/var/run/secrets/workload-spiffe-uds"},
		corev1.VolumeMount{Name: "credential-socket", MountPath: "/var/run/secrets/credential-uds"},
		corev1.VolumeMount{Name: "workload-certs", MountPath: "/var/run/secrets/workload-spiffe-credentials"},
		corev1.VolumeMount{Name: "istiod-ca-cert", MountPath: "/var/run/secrets/istio"},
		corev1.VolumeMount{Name: "istio-ca-crl", MountPath: "/var/run/secrets/istio/crl"},
		corev1.VolumeMount{Name: "istio-data", MountPath: "/var/lib/istio/data"},
	)
	if o.bootstrapOverride != "" {
		m = append(m, corev1.VolumeMount{Name: "custom-bootstrap-volume", MountPath: customBootstrapPath})
	}
	m = append(m,
		corev1.VolumeMount{Name: "istio-envoy", MountPath: "/etc/istio/proxy"},
		corev1.VolumeMount{Name: "istio-token", MountPath: "/var/run/secrets/tokens"},
		corev1.VolumeMount{Name: "istio-podinfo", MountPath: "/etc/istio/pod"},
	)
	return append(m, o.userMounts...)
}

// volumes are the sidecar's volumes, in the template's order.
func volumes(o *options) []corev1.Volume {
	emptyDir := func(name string, medium corev1.StorageMedium) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: medium}}}
	}
	v := make([]corev1.Volume, 0, 10+len(o.userVolumes))
	v = append(v,
		emptyDir("workload-socket", ""),
		emptyDir("credential-socket", ""),
		emptyDir("workload-certs", ""),
	)
	if o.bootstrapOverride != "" {
		v = append(v, corev1.Volume{Name: "custom-bootstrap-volume", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: o.bootstrapOverride},
		}}})
	}
	v = append(v,
		emptyDir("istio-envoy", corev1.StorageMediumMemory),
		emptyDir("istio-data", ""),
		corev1.Volume{Name: "istio-podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			Items: []corev1.DownwardAPIVolumeFile{
				{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
				{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
			},
		}}},
		corev1.Volume{Name: "istio-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Path:              "istio-token",
				ExpirationSeconds: ptr.To[int64](43200),
				Audience:          "istio-ca",
			}}},
		}}},
		corev1.Volume{Name: "istiod-ca-cert", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "istio-ca-root-cert"},
		}}},
		corev1.Volume{Name: "istio-ca-crl", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "istio-ca-crl"},
			Optional:             ptr.To(true),
		}}},
	)
	return append(v, o.userVolumes...)
}
