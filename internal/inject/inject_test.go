package inject

import (
	"encoding/json"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"istio.io/api/annotation"
	"istio.io/api/label"
)

// simplePod is a bare pod with one container.
func simplePod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: "demo", Labels: map[string]string{"app": "hello"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "hello",
			Image: "example.com/hello:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		}}},
	}
}

func withAnnotations(p *corev1.Pod, kv ...string) *corev1.Pod {
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		p.Annotations[kv[i]] = kv[i+1]
	}
	return p
}

func container(pod *corev1.Pod, name string) *corev1.Container {
	return findContainer(pod, name)
}

func lookupEnv(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func envValue(c *corev1.Container, name string) string {
	v, _ := lookupEnv(c, name)
	return v
}

func envNames(c *corev1.Container) []string {
	var out []string
	for _, e := range c.Env {
		out = append(out, e.Name)
	}
	return out
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// argAfter returns the argument following flag in args.
func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return "<absent>"
}

func mustInject(t *testing.T, pod *corev1.Pod, cfg *Config) *corev1.Pod {
	t.Helper()
	out, injected, err := Inject(pod, "demo", cfg)
	if err != nil {
		t.Fatalf("Inject: %v", err)
	}
	if !injected {
		t.Fatalf("Inject: pod was not injected")
	}
	return out
}

func TestNotInjected(t *testing.T) {
	hostNet := simplePod()
	hostNet.Spec.HostNetwork = true
	labelFalse := simplePod()
	labelFalse.Labels[label.SidecarInject.Name] = "false"
	labelWins := withAnnotations(simplePod(), annotation.SidecarInject.Name, "true")
	labelWins.Labels[label.SidecarInject.Name] = "false"
	// Malformed annotations do not matter on a pod that is not injected.
	optedOutMalformed := withAnnotations(simplePod(), annotation.SidecarInject.Name, "false", annotation.SidecarProxyCPU.Name, "lots")
	injected := mustInject(t, typicalPod(), testConfig())

	for _, tc := range []struct {
		name      string
		pod       *corev1.Pod
		namespace string
	}{
		{"already injected", injected, "demo"},
		{"annotation false", withAnnotations(simplePod(), annotation.SidecarInject.Name, "false"), "demo"},
		{"label false", labelFalse, "demo"},
		{"label wins over annotation", labelWins, "demo"},
		{"host network", hostNet, "demo"},
		{"kube-system", simplePod(), "kube-system"},
		{"opted out with malformed annotations", optedOutMalformed, "demo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			before := tc.pod.DeepCopy()
			out, ok, err := Inject(tc.pod, tc.namespace, testConfig())
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(ok).To(BeFalse())
			g.Expect(out).To(Equal(before))
			g.Expect(tc.pod).To(Equal(before))
		})
	}
}

func TestInjectedDespiteUnusualInjectValues(t *testing.T) {
	// Upstream ignores values other than "true"/"false" and applies the default policy.
	for _, v := range []string{"true", "maybe", ""} {
		t.Run(v, func(t *testing.T) {
			g := NewWithT(t)
			pod := withAnnotations(simplePod(), annotation.SidecarInject.Name, v)
			_, ok, err := Inject(pod, "demo", testConfig())
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(ok).To(BeTrue())
		})
	}
}

func TestInjectDoesNotModifyInput(t *testing.T) {
	g := NewWithT(t)
	pod := typicalPod()
	before := pod.DeepCopy()
	out := mustInject(t, pod, testConfig())
	g.Expect(pod).To(Equal(before))
	g.Expect(out).NotTo(BeIdenticalTo(pod))
}

func TestNoInputs(t *testing.T) {
	g := NewWithT(t)
	_, ok, err := Inject(nil, "demo", testConfig())
	g.Expect(err).To(HaveOccurred())
	g.Expect(ok).To(BeFalse())
	_, ok, err = Inject(simplePod(), "demo", nil)
	g.Expect(err).To(HaveOccurred())
	g.Expect(ok).To(BeFalse())
}

func TestAnnotations(t *testing.T) {
	for _, tc := range []struct {
		name    string
		annos   []string
		wantErr string // substring; empty means success
		check   func(g Gomega, pod *corev1.Pod)
	}{
		{
			name:  "proxyCPU",
			annos: []string{annotation.SidecarProxyCPU.Name, "250m"},
			check: func(g Gomega, pod *corev1.Pod) {
				r := container(pod, ProxyContainerName).Resources
				g.Expect(r.Requests).To(Equal(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}))
				g.Expect(r.Limits).To(BeEmpty(), "an annotation replaces the default resources entirely, as upstream")
				g.Expect(container(pod, InitContainerName).Resources).To(Equal(r))
			},
		},
		{
			name:    "proxyCPU malformed",
			annos:   []string{annotation.SidecarProxyCPU.Name, "lots"},
			wantErr: `annotation sidecar.istio.io/proxyCPU: invalid value "lots": quantities must match`,
		},
		{
			name:  "proxyMemory",
			annos: []string{annotation.SidecarProxyMemory.Name, "1Gi"},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(container(pod, ProxyContainerName).Resources.Requests).To(Equal(corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}))
			},
		},
		{
			name:    "proxyMemory malformed",
			annos:   []string{annotation.SidecarProxyMemory.Name, "1 GB"},
			wantErr: `annotation sidecar.istio.io/proxyMemory: invalid value "1 GB"`,
		},
		{
			name:  "limits only",
			annos: []string{annotation.SidecarProxyCPULimit.Name, "2", annotation.SidecarProxyMemoryLimit.Name, "2Gi"},
			check: func(g Gomega, pod *corev1.Pod) {
				r := container(pod, ProxyContainerName).Resources
				g.Expect(r.Requests).To(BeEmpty())
				g.Expect(r.Limits).To(Equal(corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("2Gi"),
				}))
			},
		},
		{
			name:    "proxyCPULimit malformed",
			annos:   []string{annotation.SidecarProxyCPULimit.Name, "two"},
			wantErr: `annotation sidecar.istio.io/proxyCPULimit: invalid value "two"`,
		},
		{
			name:    "proxyMemoryLimit malformed",
			annos:   []string{annotation.SidecarProxyMemoryLimit.Name, "512 Mi"},
			wantErr: `annotation sidecar.istio.io/proxyMemoryLimit: invalid value "512 Mi"`,
		},
		{
			name:  "logLevel",
			annos: []string{annotation.SidecarLogLevel.Name, "debug"},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(container(pod, ProxyContainerName).Args).To(ContainElement("--proxyLogLevel=debug"))
			},
		},
		{
			name:    "logLevel malformed",
			annos:   []string{annotation.SidecarLogLevel.Name, "verbose"},
			wantErr: `annotation sidecar.istio.io/logLevel: invalid value "verbose": must be one of trace, debug, info, warning, error, critical, off`,
		},
		{
			name:  "component and agent log levels",
			annos: []string{annotation.SidecarComponentLogLevel.Name, "upstream:debug", annotation.SidecarAgentLogLevel.Name, "default:debug"},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(container(pod, ProxyContainerName).Args).To(ContainElements(
					"--proxyComponentLogLevel=upstream:debug", "--log_output_level=default:debug"))
				g.Expect(container(pod, InitContainerName).Args).To(ContainElement("--log_output_level=default:debug"))
			},
		},
		{
			name:  "proxy config as YAML",
			annos: []string{annotation.ProxyConfig.Name, "holdApplicationUntilProxyStarts: true\nproxyMetadata:\n  ISTIO_META_DNS_CAPTURE: \"true\"\n"},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(names(pod.Spec.Containers)[0]).To(Equal(ProxyContainerName))
				proxy := container(pod, ProxyContainerName)
				g.Expect(proxy.Lifecycle.PostStart.Exec.Command).To(Equal([]string{"pilot-agent", "wait"}))
				g.Expect(envValue(proxy, "ISTIO_META_DNS_CAPTURE")).To(Equal("true"))
				g.Expect(envValue(proxy, "PROXY_CONFIG")).To(Equal(
					`{"proxyMetadata":{"ISTIO_META_DNS_CAPTURE":"true"},"holdApplicationUntilProxyStarts":true}` + "\n"))
				g.Expect(envValue(container(pod, InitContainerName), "ISTIO_META_DNS_CAPTURE")).To(Equal("true"))
			},
		},
		{
			name:  "proxy config as JSON",
			annos: []string{annotation.ProxyConfig.Name, `{"concurrency": 4, "terminationDrainDuration": "30s"}`},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(envValue(container(pod, ProxyContainerName), "PROXY_CONFIG")).To(Equal(
					`{"concurrency":4,"terminationDrainDuration":"30s"}` + "\n"))
			},
		},
		{
			name:    "proxy config unknown field",
			annos:   []string{annotation.ProxyConfig.Name, "holdApplicationUntilProxyStart: true"},
			wantErr: `annotation proxy.istio.io/config: invalid value "holdApplicationUntilProxyStart: true": `,
		},
		{
			name:    "proxy config not YAML",
			annos:   []string{annotation.ProxyConfig.Name, "{concurrency: [}"},
			wantErr: `annotation proxy.istio.io/config: invalid value "{concurrency: [}"`,
		},
		{
			name:    "proxy config wrong type",
			annos:   []string{annotation.ProxyConfig.Name, "concurrency: lots"},
			wantErr: `annotation proxy.istio.io/config`,
		},
		{
			name:  "proxy config empty",
			annos: []string{annotation.ProxyConfig.Name, ""},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(envValue(container(pod, ProxyContainerName), "PROXY_CONFIG")).To(Equal("{}\n"))
			},
		},
		{
			name:  "proxy config interception mode",
			annos: []string{annotation.ProxyConfig.Name, "interceptionMode: TPROXY"},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(argAfter(container(pod, InitContainerName).Args, "-m")).To(Equal(modeTProxy))
				g.Expect(envValue(container(pod, ProxyContainerName), "ISTIO_META_INTERCEPTION_MODE")).To(Equal(modeTProxy))
			},
		},
		{
			name:  "includeOutboundIPRanges",
			annos: []string{annotation.SidecarTrafficIncludeOutboundIPRanges.Name, "10.0.0.0/8,fd00::/8"},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(argAfter(container(pod, InitContainerName).Args, "-i")).To(Equal("10.0.0.0/8,fd00::/8"))
			},
		},
		{
			name:  "includeOutboundIPRanges empty captures nothing",
			annos: []string{annotation.SidecarTrafficIncludeOutboundIPRanges.Name, ""},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(argAfter(container(pod, InitContainerName).Args, "-i")).To(Equal(""))
			},
		},
		{
			name:    "includeOutboundIPRanges malformed",
			annos:   []string{annotation.SidecarTrafficIncludeOutboundIPRanges.Name, "10.0.0.0/33"},
			wantErr: `annotation traffic.sidecar.istio.io/includeOutboundIPRanges: invalid value "10.0.0.0/33": "10.0.0.0/33" is not a CIDR`,
		},
		{
			name:  "excludeOutboundIPRanges",
			annos: []string{annotation.SidecarTrafficExcludeOutboundIPRanges.Name, "169.254.169.254/32"},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(argAfter(container(pod, InitContainerName).Args, "-x")).To(Equal("169.254.169.254/32"))
			},
		},
		{
			name:    "excludeOutboundIPRanges star",
			annos:   []string{annotation.SidecarTrafficExcludeOutboundIPRanges.Name, "*"},
			wantErr: `annotation traffic.sidecar.istio.io/excludeOutboundIPRanges: invalid value "*"`,
		},
		{
			name:    "excludeOutboundIPRanges blank",
			annos:   []string{annotation.SidecarTrafficExcludeOutboundIPRanges.Name, "10.0.0.0/8, 10.1.0.0/16"},
			wantErr: `annotation traffic.sidecar.istio.io/excludeOutboundIPRanges`,
		},
		{
			name:  "excludeOutboundPorts",
			annos: []string{annotation.SidecarTrafficExcludeOutboundPorts.Name, "5432,6379"},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(argAfter(container(pod, InitContainerName).Args, "-o")).To(Equal("5432,6379"))
			},
		},
		{
			name:    "excludeOutboundPorts zero",
			annos:   []string{annotation.SidecarTrafficExcludeOutboundPorts.Name, "0"},
			wantErr: `annotation traffic.sidecar.istio.io/excludeOutboundPorts: invalid value "0": "0" is not a port (1-65535)`,
		},
		{
			name:    "excludeOutboundPorts too large",
			annos:   []string{annotation.SidecarTrafficExcludeOutboundPorts.Name, "80,70000"},
			wantErr: `"70000" is not a port`,
		},
		{
			name:  "excludeInboundPorts",
			annos: []string{annotation.SidecarTrafficExcludeInboundPorts.Name, "8080, 9090"},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(argAfter(container(pod, InitContainerName).Args, "-d")).To(Equal("15090,15021,8080,9090,15020"))
			},
		},
		{
			name:  "excludeInboundPorts already has the status port",
			annos: []string{annotation.SidecarTrafficExcludeInboundPorts.Name, "15020,8080"},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(argAfter(container(pod, InitContainerName).Args, "-d")).To(Equal("15090,15021,15020,8080"))
			},
		},
		{
			name:    "excludeInboundPorts malformed",
			annos:   []string{annotation.SidecarTrafficExcludeInboundPorts.Name, "http"},
			wantErr: `annotation traffic.sidecar.istio.io/excludeInboundPorts: invalid value "http"`,
		},
		{
			name:  "includeInboundPorts and includeOutboundPorts",
			annos: []string{annotation.SidecarTrafficIncludeInboundPorts.Name, "8080", annotation.SidecarTrafficIncludeOutboundPorts.Name, "443"},
			check: func(g Gomega, pod *corev1.Pod) {
				args := container(pod, InitContainerName).Args
				g.Expect(argAfter(args, "-b")).To(Equal("8080"))
				g.Expect(argAfter(args, "-q")).To(Equal("443"))
			},
		},
		{
			name:    "includeInboundPorts malformed",
			annos:   []string{annotation.SidecarTrafficIncludeInboundPorts.Name, "*,8080"},
			wantErr: `annotation traffic.sidecar.istio.io/includeInboundPorts`,
		},
		{
			name: "interfaces",
			annos: []string{annotation.SidecarTrafficKubevirtInterfaces.Name, "net1", annotation.IoIstioRerouteVirtualInterfaces.Name, "net2",
				annotation.SidecarTrafficExcludeInterfaces.Name, "eth1"},
			check: func(g Gomega, pod *corev1.Pod) {
				args := container(pod, InitContainerName).Args
				g.Expect(argAfter(args, "-k")).To(Equal("net2"), "the newer annotation wins")
				g.Expect(argAfter(args, "-c")).To(Equal("eth1"))
			},
		},
		{
			name:  "interception TPROXY",
			annos: []string{annotation.SidecarInterceptionMode.Name, modeTProxy},
			check: func(g Gomega, pod *corev1.Pod) {
				sc := container(pod, ProxyContainerName).SecurityContext
				g.Expect(sc.Capabilities.Add).To(Equal([]corev1.Capability{"NET_ADMIN"}))
				g.Expect(*sc.RunAsUser).To(BeZero())
				g.Expect(*sc.RunAsNonRoot).To(BeFalse())
				g.Expect(argAfter(container(pod, InitContainerName).Args, "-m")).To(Equal(modeTProxy))
			},
		},
		{
			name:  "interception NONE",
			annos: []string{annotation.SidecarInterceptionMode.Name, modeNone},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(pod.Spec.InitContainers).To(BeEmpty())
				g.Expect(pod.Annotations[annotation.SidecarStatus.Name]).To(HavePrefix(`{"initContainers":null,"containers":["istio-proxy"]`))
			},
		},
		{
			name:    "interception malformed",
			annos:   []string{annotation.SidecarInterceptionMode.Name, "redirect"},
			wantErr: `annotation sidecar.istio.io/interceptionMode: invalid value "redirect"`,
		},
		{
			name:  "readiness",
			annos: []string{annotation.SidecarStatusReadinessInitialDelaySeconds.Name, "5", annotation.SidecarStatusReadinessPeriodSeconds.Name, "7", annotation.SidecarStatusReadinessFailureThreshold.Name, "9"},
			check: func(g Gomega, pod *corev1.Pod) {
				p := container(pod, ProxyContainerName).ReadinessProbe
				g.Expect([]int32{p.InitialDelaySeconds, p.PeriodSeconds, p.FailureThreshold}).To(Equal([]int32{5, 7, 9}))
			},
		},
		{
			name:    "readiness malformed",
			annos:   []string{annotation.SidecarStatusReadinessPeriodSeconds.Name, "-1"},
			wantErr: `annotation readiness.status.sidecar.istio.io/periodSeconds: invalid value "-1"`,
		},
		{
			name:  "merge metrics off",
			annos: []string{annotation.PrometheusMergeMetrics.Name, "false", "prometheus.io/port", "9090"},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(pod.Annotations).To(HaveKeyWithValue("prometheus.io/port", "9090"))
				g.Expect(pod.Annotations).NotTo(HaveKey("prometheus.io/path"))
			},
		},
		{
			name:    "merge metrics malformed",
			annos:   []string{annotation.PrometheusMergeMetrics.Name, "nope"},
			wantErr: `annotation prometheus.istio.io/merge-metrics: invalid value "nope": must be a boolean`,
		},
		{
			name:  "proxy image",
			annos: []string{annotation.SidecarProxyImage.Name, "registry.example.com/istio/proxyv2:1.31.1-patched"},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(container(pod, ProxyContainerName).Image).To(Equal("registry.example.com/istio/proxyv2:1.31.1-patched"))
				g.Expect(container(pod, InitContainerName).Image).To(Equal("registry.example.com/istio/proxyv2:1.31.1-patched"))
			},
		},
		{
			name:  "proxy image name without registry is ignored",
			annos: []string{annotation.SidecarProxyImage.Name, "proxyv2"},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(container(pod, ProxyContainerName).Image).To(Equal("docker.io/istio/proxyv2:1.31.1"))
			},
		},
		{
			name:  "proxy image type",
			annos: []string{annotation.SidecarProxyImageType.Name, "distroless"},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(container(pod, ProxyContainerName).Image).To(Equal("docker.io/istio/proxyv2:1.31.1-distroless"))
			},
		},
		{
			name: "user volumes and mounts",
			annos: []string{
				annotation.SidecarUserVolume.Name, `{"wasm":{"configMap":{"name":"filters"}},"certs":{"secret":{"secretName":"extra-certs"}}}`,
				annotation.SidecarUserVolumeMount.Name, `{"wasm":{"mountPath":"/var/local/wasm","readOnly":true}}`,
			},
			check: func(g Gomega, pod *corev1.Pod) {
				n := len(pod.Spec.Volumes)
				g.Expect(pod.Spec.Volumes[n-2].Name).To(Equal("certs"), "in name order, after the sidecar's own")
				g.Expect(pod.Spec.Volumes[n-2].Secret.SecretName).To(Equal("extra-certs"))
				g.Expect(pod.Spec.Volumes[n-1].ConfigMap.Name).To(Equal("filters"))
				mounts := container(pod, ProxyContainerName).VolumeMounts
				g.Expect(mounts[len(mounts)-1]).To(Equal(corev1.VolumeMount{Name: "wasm", MountPath: "/var/local/wasm", ReadOnly: true}))
				g.Expect(pod.Annotations[annotation.SidecarStatus.Name]).To(ContainSubstring(`"istio-ca-crl","certs","wasm"]`))
			},
		},
		{
			name:  "user volumes as a list",
			annos: []string{annotation.SidecarUserVolume.Name, `[{"name":"tmp","emptyDir":{}}]`},
			check: func(g Gomega, pod *corev1.Pod) {
				g.Expect(pod.Spec.Volumes[len(pod.Spec.Volumes)-1].Name).To(Equal("tmp"))
			},
		},
		{
			name:    "user volume malformed",
			annos:   []string{annotation.SidecarUserVolume.Name, `{"wasm":`},
			wantErr: `annotation sidecar.istio.io/userVolume: invalid value "{\"wasm\":": must be a JSON object of name to item`,
		},
		{
			name:    "user volume mount malformed",
			annos:   []string{annotation.SidecarUserVolumeMount.Name, `[{"mountPath":"/x"}]`},
			wantErr: `annotation sidecar.istio.io/userVolumeMount: invalid value "[{\"mountPath\":\"/x\"}]": item 0 has no name`,
		},
		{
			name:  "bootstrap override",
			annos: []string{annotation.SidecarBootstrapOverride.Name, "my-bootstrap"},
			check: func(g Gomega, pod *corev1.Pod) {
				proxy := container(pod, ProxyContainerName)
				g.Expect(envValue(proxy, "ISTIO_BOOTSTRAP_OVERRIDE")).To(Equal("/etc/istio/custom-bootstrap/custom_bootstrap.json"))
				g.Expect(proxy.VolumeMounts).To(ContainElement(corev1.VolumeMount{Name: "custom-bootstrap-volume", MountPath: "/etc/istio/custom-bootstrap"}))
				g.Expect(pod.Spec.Volumes[3].Name).To(Equal("custom-bootstrap-volume"))
				g.Expect(pod.Spec.Volumes[3].ConfigMap.Name).To(Equal("my-bootstrap"))
			},
		},
		{
			name:  "sidecar template",
			annos: []string{annotation.InjectTemplates.Name, "sidecar"},
			check: func(g Gomega, pod *corev1.Pod) { g.Expect(container(pod, ProxyContainerName)).NotTo(BeNil()) },
		},
		{
			name:    "other templates are refused",
			annos:   []string{annotation.InjectTemplates.Name, "gateway"},
			wantErr: `annotation inject.istio.io/templates: invalid value "gateway": only the sidecar template is supported`,
		},
		{
			name: "all malformed values are reported",
			annos: []string{annotation.SidecarProxyCPU.Name, "lots", annotation.SidecarLogLevel.Name, "loud",
				annotation.SidecarTrafficExcludeOutboundPorts.Name, "x"},
			wantErr: "proxyCPU",
			check: func(g Gomega, _ *corev1.Pod) {
				_, _, err := Inject(withAnnotations(simplePod(), annotation.SidecarProxyCPU.Name, "lots",
					annotation.SidecarLogLevel.Name, "loud", annotation.SidecarTrafficExcludeOutboundPorts.Name, "x"), "demo", testConfig())
				g.Expect(err.Error()).To(And(ContainSubstring("sidecar.istio.io/logLevel"),
					ContainSubstring("traffic.sidecar.istio.io/excludeOutboundPorts"), ContainSubstring("sidecar.istio.io/proxyCPU")))
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			out, ok, err := Inject(withAnnotations(simplePod(), tc.annos...), "demo", testConfig())
			if tc.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
				g.Expect(ok).To(BeFalse())
				g.Expect(out).To(BeNil())
				if tc.check != nil {
					tc.check(g, nil)
				}
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(ok).To(BeTrue())
			tc.check(g, out)
		})
	}
}

func TestDefaults(t *testing.T) {
	g := NewWithT(t)
	pod := mustInject(t, simplePod(), testConfig())
	proxy := container(pod, ProxyContainerName)
	g.Expect(proxy.Resources).To(Equal(corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2000m"), corev1.ResourceMemory: resource.MustParse("1024Mi")},
	}))
	g.Expect(envNames(proxy)).To(Equal([]string{
		"PILOT_CERT_PROVIDER", "CA_ADDR", "POD_NAME", "POD_NAMESPACE", "INSTANCE_IP", "SERVICE_ACCOUNT", "HOST_IP",
		"ISTIO_CPU_LIMIT", "PROXY_CONFIG", "ISTIO_META_POD_PORTS", "ISTIO_META_APP_CONTAINERS", "GOMEMLIMIT", "GOMAXPROCS",
		"ISTIO_META_CLUSTER_ID", "ISTIO_META_NODE_NAME", "ISTIO_META_INTERCEPTION_MODE", "ISTIO_META_WORKLOAD_NAME",
		"ISTIO_META_OWNER", "ISTIO_META_MESH_ID", "TRUST_DOMAIN",
	}))
	g.Expect(envValue(proxy, "ISTIO_META_POD_PORTS")).To(Equal("[\n    {\"name\":\"http\",\"containerPort\":8080}\n]"))
	g.Expect(envValue(proxy, "PROXY_CONFIG")).To(Equal("{}\n"))
	g.Expect(pod.Labels).To(HaveKeyWithValue(label.SecurityTlsMode.Name, "istio"))
	g.Expect(pod.Labels).NotTo(HaveKey(label.IoIstioRev.Name), "upstream records the revision in annotations, not the label")
	g.Expect(pod.Annotations).To(HaveKeyWithValue(annotation.IoIstioRev.Name, "default"))
	g.Expect(pod.Annotations).To(HaveKeyWithValue("kubectl.kubernetes.io/default-container", "hello"))

	// Zero config fields take upstream's defaults.
	sparse := mustInject(t, simplePod(), &Config{Hub: "docker.io/istio", Version: "1.30.2"})
	g.Expect(sparse.Annotations).To(HaveKeyWithValue(annotation.IoIstioRev.Name, "default"))
	g.Expect(envValue(container(sparse, ProxyContainerName), "CA_ADDR")).To(Equal("istiod.istio-system.svc:15012"))
	g.Expect(envValue(container(sparse, ProxyContainerName), "ISTIO_META_MESH_ID")).To(Equal("cluster.local"))
	g.Expect(container(sparse, ProxyContainerName).Args).To(ContainElement("--proxyLogLevel=warning"))

	custom := testConfig()
	custom.ProxyResources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")}}
	custom.MeshID, custom.ClusterDomain = "mesh1", "corp.internal"
	c := container(mustInject(t, simplePod(), custom), ProxyContainerName)
	g.Expect(c.Resources).To(Equal(custom.ProxyResources))
	g.Expect(envValue(c, "ISTIO_META_MESH_ID")).To(Equal("mesh1"))
	g.Expect(c.Args).To(ContainElement("$(POD_NAMESPACE).svc.corp.internal"))
}

func TestSidecarModes(t *testing.T) {
	userInit := func() *corev1.Pod {
		p := simplePod()
		p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "example.com/migrate:1"}}
		return p
	}
	native := testConfig()
	native.NativeSidecar = true
	hold := testConfig()
	hold.MeshProxyConfig = map[string]any{"holdApplicationUntilProxyStarts": true}
	nativeHold := testConfig()
	nativeHold.NativeSidecar = true
	nativeHold.MeshProxyConfig = hold.MeshProxyConfig

	for _, tc := range []struct {
		name           string
		pod            *corev1.Pod
		cfg            *Config
		initContainers []string
		containers     []string
		postStart      bool
		preStop        bool
	}{
		{"classic: istio-init runs last, proxy last", userInit(), testConfig(), []string{"migrate", "istio-init"}, []string{"hello", "istio-proxy"}, false, false},
		{"native: istio-init then the proxy first", userInit(), native, []string{"istio-init", "istio-proxy", "migrate"}, []string{"hello"}, false, true},
		{"native by annotation", withAnnotations(userInit(), annotation.SidecarNativeSidecar.Name, "true"), testConfig(), []string{"istio-init", "istio-proxy", "migrate"}, []string{"hello"}, false, true},
		{"classic by annotation", withAnnotations(userInit(), annotation.SidecarNativeSidecar.Name, "false"), native, []string{"migrate", "istio-init"}, []string{"hello", "istio-proxy"}, false, false},
		{"hold: proxy first, waits", userInit(), hold, []string{"migrate", "istio-init"}, []string{"istio-proxy", "hello"}, true, false},
		{"hold by annotation", withAnnotations(userInit(), annotation.ProxyConfig.Name, `{"holdApplicationUntilProxyStarts":true}`), testConfig(), []string{"migrate", "istio-init"}, []string{"istio-proxy", "hello"}, true, false},
		{"hold annotation overrides mesh", withAnnotations(userInit(), annotation.ProxyConfig.Name, `holdApplicationUntilProxyStarts: false`), hold, []string{"migrate", "istio-init"}, []string{"hello", "istio-proxy"}, false, false},
		{"native ignores hold", userInit(), nativeHold, []string{"istio-init", "istio-proxy", "migrate"}, []string{"hello"}, false, true},
		{"native without interception", withAnnotations(userInit(), annotation.SidecarInterceptionMode.Name, modeNone), native, []string{"istio-proxy", "migrate"}, []string{"hello"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			pod := mustInject(t, tc.pod, tc.cfg)
			g.Expect(names(pod.Spec.InitContainers)).To(Equal(tc.initContainers))
			g.Expect(names(pod.Spec.Containers)).To(Equal(tc.containers))
			proxy := container(pod, ProxyContainerName)
			g.Expect(proxy.Lifecycle != nil && proxy.Lifecycle.PostStart != nil).To(Equal(tc.postStart))
			g.Expect(proxy.Lifecycle != nil && proxy.Lifecycle.PreStop != nil).To(Equal(tc.preStop))
			inInit := indexOf(pod.Spec.InitContainers, ProxyContainerName) >= 0
			g.Expect(proxy.RestartPolicy != nil && *proxy.RestartPolicy == corev1.ContainerRestartPolicyAlways).To(Equal(inInit))
			g.Expect(proxy.StartupProbe).NotTo(BeNil())
		})
	}
}

func TestRevisions(t *testing.T) {
	g := NewWithT(t)
	cfg := testConfig()
	cfg.Revision, cfg.DiscoveryAddress, cfg.CAAddress = "1-31-1", "istiod-1-31-1.istio-system.svc:15012", "istiod-1-31-1.istio-system.svc:15012"
	cfg.MeshProxyConfig = map[string]any{"discoveryAddress": cfg.DiscoveryAddress}
	pod := simplePod()
	pod.Labels[label.IoIstioRev.Name] = "prod" // a revision tag selected the pod
	out := mustInject(t, pod, cfg)
	g.Expect(out.Annotations).To(HaveKeyWithValue(annotation.IoIstioRev.Name, "1-31-1"))
	g.Expect(out.Labels).To(HaveKeyWithValue(label.IoIstioRev.Name, "prod"), "the tag label must survive injection")
	var status sidecarStatus
	g.Expect(json.Unmarshal([]byte(out.Annotations[annotation.SidecarStatus.Name]), &status)).To(Succeed())
	g.Expect(status.Revision).To(Equal("1-31-1"))
	proxy := container(out, ProxyContainerName)
	g.Expect(envValue(proxy, "CA_ADDR")).To(Equal("istiod-1-31-1.istio-system.svc:15012"))
	g.Expect(envValue(proxy, "PROXY_CONFIG")).To(Equal(`{"discoveryAddress":"istiod-1-31-1.istio-system.svc:15012"}` + "\n"))

	// Without a mesh config the configured discovery address is the proxy's.
	cfg.MeshProxyConfig = nil
	proxy = container(mustInject(t, simplePod(), cfg), ProxyContainerName)
	g.Expect(envValue(proxy, "PROXY_CONFIG")).To(Equal(`{"discoveryAddress":"istiod-1-31-1.istio-system.svc:15012"}` + "\n"))

	cfg.MeshProxyConfig = map[string]any{"discoveryAdress": "typo"}
	_, _, err := Inject(simplePod(), "demo", cfg)
	g.Expect(err).To(MatchError(ContainSubstring("mesh default proxy config")))
}

func TestProxyMetadataMerge(t *testing.T) {
	g := NewWithT(t)
	cfg := testConfig()
	cfg.MeshProxyConfig = map[string]any{"proxyMetadata": map[string]any{"A": "mesh", "B": "mesh"}, "concurrency": 2}
	pod := withAnnotations(simplePod(), annotation.ProxyConfig.Name, "proxyMetadata: {B: pod, C: pod}")
	proxy := container(mustInject(t, pod, cfg), ProxyContainerName)
	g.Expect(envValue(proxy, "A")).To(Equal("mesh"))
	g.Expect(envValue(proxy, "B")).To(Equal("pod"))
	g.Expect(envValue(proxy, "C")).To(Equal("pod"))
	g.Expect(envValue(proxy, "PROXY_CONFIG")).To(Equal(`{"concurrency":2,"proxyMetadata":{"A":"mesh","B":"pod","C":"pod"}}` + "\n"))
	g.Expect(envNames(proxy)[len(envNames(proxy))-3:]).To(Equal([]string{"A", "B", "C"}))

	hbone := withAnnotations(simplePod(), annotation.ProxyConfig.Name, `proxyMetadata: {ISTIO_META_ENABLE_HBONE: "true"}`)
	g.Expect(mustInject(t, hbone, testConfig()).Labels).To(HaveKeyWithValue("networking.istio.io/tunnel", "http"))
}

func TestWorkloadNaming(t *testing.T) {
	owned := func(kind, name string, labels map[string]string) *corev1.Pod {
		p := simplePod()
		p.Name, p.GenerateName, p.Namespace = "", name+"-", ""
		p.Labels = labels
		p.OwnerReferences = []metav1.OwnerReference{
			{APIVersion: "v1", Kind: "Node", Name: "not-the-controller"},
			{APIVersion: map[string]string{"ReplicaSet": "apps/v1", "StatefulSet": "apps/v1", "Job": "batch/v1"}[kind],
				Kind: kind, Name: name, Controller: ptr.To(true)},
		}
		return p
	}
	generatedOnly := simplePod()
	generatedOnly.Name, generatedOnly.GenerateName = "", "hello-"
	generatedOnly.Labels = nil
	longName := owned("StatefulSet", strings.Repeat("a", 62)+"-b", nil)

	for _, tc := range []struct {
		name          string
		pod           *corev1.Pod
		namespace     string
		workload      string
		owner         string
		canonicalName string
		canonicalRev  string
	}{
		{"deployment", owned("ReplicaSet", "reviews-v2-7d8f9c6b5", map[string]string{"pod-template-hash": "7d8f9c6b5"}), "bookinfo",
			"reviews-v2", "kubernetes://apis/apps/v1/namespaces/bookinfo/deployments/reviews-v2", "reviews-v2", "latest"},
		{"replicaset without template hash", owned("ReplicaSet", "bare-rs", map[string]string{"app": "web", "version": "v3"}), "shop",
			"bare-rs", "kubernetes://apis/apps/v1/namespaces/shop/replicasets/bare-rs", "web", "v3"},
		{"statefulset", owned("StatefulSet", "db", map[string]string{"app.kubernetes.io/name": "postgres", "app": "db", "app.kubernetes.io/version": "16"}), "data",
			"db", "kubernetes://apis/apps/v1/namespaces/data/statefulsets/db", "postgres", "16"},
		{"cronjob", owned("Job", "backup-29312480", nil), "ops",
			"backup", "kubernetes://apis/batch/v1/namespaces/ops/cronjobs/backup", "backup", "latest"},
		{"bare pod", simplePod(), "demo",
			"hello", "kubernetes://apis/v1/namespaces/demo/pods/hello", "hello", "latest"},
		{"bare pod without namespace", simplePod(), "",
			"hello", "kubernetes://apis/v1/namespaces/demo/pods/hello", "hello", "latest"},
		{"generateName without controller", generatedOnly, "demo", "", "", "", "latest"},
		{"canonical name is truncated", longName, "demo", longName.OwnerReferences[1].Name, "kubernetes://apis/apps/v1/namespaces/demo/statefulsets/" + longName.OwnerReferences[1].Name,
			strings.Repeat("a", 62), "latest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			out, ok, err := Inject(tc.pod, tc.namespace, testConfig())
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(ok).To(BeTrue())
			proxy := container(out, ProxyContainerName)
			wl, hasWL := lookupEnv(proxy, "ISTIO_META_WORKLOAD_NAME")
			g.Expect(wl).To(Equal(tc.workload))
			g.Expect(hasWL).To(Equal(tc.workload != ""))
			owner, hasOwner := lookupEnv(proxy, "ISTIO_META_OWNER")
			g.Expect(owner).To(Equal(tc.owner))
			g.Expect(hasOwner).To(Equal(tc.owner != ""))
			g.Expect(out.Labels).To(HaveKeyWithValue(label.ServiceCanonicalName.Name, tc.canonicalName))
			g.Expect(out.Labels).To(HaveKeyWithValue(label.ServiceCanonicalRevision.Name, tc.canonicalRev))
			g.Expect(out.Namespace).To(Equal(tc.pod.Namespace), "the namespace is not written into the pod")
		})
	}

	g := NewWithT(t)
	named := simplePod()
	named.Labels[label.ServiceWorkloadName.Name] = "custom"
	named.Labels[label.ServiceCanonicalName.Name] = "svc"
	out := mustInject(t, named, testConfig())
	g.Expect(envValue(container(out, ProxyContainerName), "ISTIO_META_WORKLOAD_NAME")).To(Equal("custom"))
	g.Expect(out.Labels).To(HaveKeyWithValue(label.ServiceCanonicalName.Name, "svc"))
}

func probePod() *corev1.Pod {
	p := simplePod()
	p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
		ProbeHandler:   corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTPS}},
		TimeoutSeconds: 2,
	}
	p.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9000}}}
	p.Spec.Containers[0].StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/start", Port: intstr.FromString("missing")}}}
	p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{
		PreStop:   &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/stop", Port: intstr.FromInt32(8080)}},
		PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}},
	}
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{
		Name: "worker", Image: "example.com/worker:1",
		LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}},
	})
	return p
}

func TestProbeRewriting(t *testing.T) {
	g := NewWithT(t)
	out := mustInject(t, probePod(), testConfig())
	app := container(out, "hello")
	g.Expect(app.ReadinessProbe.HTTPGet).To(Equal(&corev1.HTTPGetAction{Path: "/app-health/hello/readyz", Port: intstr.FromInt32(15020), Scheme: corev1.URISchemeHTTP}))
	g.Expect(app.ReadinessProbe.TimeoutSeconds).To(Equal(int32(2)))
	g.Expect(app.LivenessProbe.GRPC).To(BeNil())
	g.Expect(app.LivenessProbe.HTTPGet).To(Equal(&corev1.HTTPGetAction{Path: "/app-health/hello/livez", Port: intstr.FromInt32(15020)}))
	g.Expect(app.StartupProbe.HTTPGet.Path).To(Equal("/app-health/hello/startupz"))
	g.Expect(app.Lifecycle.PreStop.HTTPGet).To(Equal(&corev1.HTTPGetAction{Path: "/app-lifecycle/hello/prestopz", Port: intstr.FromInt32(15020)}))
	g.Expect(app.Lifecycle.PostStart.Exec).NotTo(BeNil(), "exec hooks stay")
	g.Expect(container(out, "worker").LivenessProbe.Exec).NotTo(BeNil(), "exec probes stay")

	probers, ok := lookupEnv(container(out, ProxyContainerName), "ISTIO_KUBE_APP_PROBERS")
	g.Expect(ok).To(BeTrue())
	g.Expect(probers).To(MatchJSON(`{
		"/app-health/hello/readyz": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTPS"}, "timeoutSeconds": 2},
		"/app-health/hello/livez": {"grpc": {"port": 9000, "service": null}},
		"/app-lifecycle/hello/prestopz": {"httpGet": {"path": "/stop", "port": 8080}}
	}`), "a probe on an unknown named port is not handed to the agent, as upstream")

	for _, tc := range []struct {
		name  string
		pod   *corev1.Pod
		apply func(*Config)
	}{
		{"annotation false", withAnnotations(probePod(), annotation.SidecarRewriteAppHTTPProbers.Name, "false"), nil},
		{"config false", probePod(), func(c *Config) { c.RewriteAppProbes = false }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cfg := testConfig()
			if tc.apply != nil {
				tc.apply(cfg)
			}
			out := mustInject(t, tc.pod, cfg)
			g.Expect(container(out, "hello").ReadinessProbe).To(Equal(probePod().Spec.Containers[0].ReadinessProbe))
			_, ok := lookupEnv(container(out, ProxyContainerName), "ISTIO_KUBE_APP_PROBERS")
			g.Expect(ok).To(BeFalse())
		})
	}

	// The annotation can turn rewriting on; an unparsable value keeps the configured default.
	cfg := testConfig()
	cfg.RewriteAppProbes = false
	on := mustInject(t, withAnnotations(probePod(), annotation.SidecarRewriteAppHTTPProbers.Name, "true"), cfg)
	g.Expect(container(on, "hello").ReadinessProbe.HTTPGet.Port).To(Equal(intstr.FromInt32(15020)))
	junk := mustInject(t, withAnnotations(probePod(), annotation.SidecarRewriteAppHTTPProbers.Name, "yes please"), testConfig())
	g.Expect(container(junk, "hello").ReadinessProbe.HTTPGet.Port).To(Equal(intstr.FromInt32(15020)))

	// Probes of native sidecars the user runs as init containers are rewritten too.
	withSidecar := simplePod()
	withSidecar.Spec.InitContainers = []corev1.Container{{Name: "log", Image: "x", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(24224)}}}}}
	out = mustInject(t, withSidecar, testConfig())
	g.Expect(container(out, "log").ReadinessProbe.HTTPGet.Path).To(Equal("/app-health/log/readyz"))
}

func TestPrometheusMerge(t *testing.T) {
	g := NewWithT(t)
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		cfg     *Config
		want    map[string]string
		wantEnv string
		absent  []string
	}{
		{
			name:    "app annotations are handed to the agent",
			pod:     withAnnotations(simplePod(), "prometheus.io/scrape", "true", "prometheus.io.port", "9090", "prometheus-io/path", "/metrics"),
			cfg:     testConfig(),
			want:    map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "15020", "prometheus.io/path": "/stats/prometheus"},
			wantEnv: `{"scrape":"true","path":"/metrics","port":"9090"}`,
			absent:  []string{"prometheus.io.port", "prometheus-io/path"},
		},
		{
			name: "scrape disabled by the app",
			pod:  withAnnotations(simplePod(), "prometheus.io/scrape", "false", "prometheus.io/port", "9090"),
			cfg:  testConfig(),
			want: map[string]string{"prometheus.io/scrape": "false", "prometheus.io/port": "9090"},
		},
		{
			name: "already pointing at the agent",
			pod:  withAnnotations(simplePod(), "prometheus.io/port", "15020", "prometheus.io/path", "/custom"),
			cfg:  testConfig(),
			want: map[string]string{"prometheus.io/port": "15020", "prometheus.io/path": "/custom"},
		},
		{
			name:   "mesh disables merging",
			pod:    simplePod(),
			cfg:    func() *Config { c := testConfig(); c.DisablePrometheusMerge = true; return c }(),
			absent: []string{"prometheus.io/scrape", "prometheus.io/port"},
		},
		{
			name: "annotation enables merging",
			pod:  withAnnotations(simplePod(), annotation.PrometheusMergeMetrics.Name, "true"),
			cfg:  func() *Config { c := testConfig(); c.DisablePrometheusMerge = true; return c }(),
			want: map[string]string{"prometheus.io/port": "15020"},
		},
	} {
		out := mustInject(t, tc.pod, tc.cfg)
		for k, v := range tc.want {
			g.Expect(out.Annotations).To(HaveKeyWithValue(k, v), tc.name)
		}
		for _, k := range tc.absent {
			g.Expect(out.Annotations).NotTo(HaveKey(k), tc.name)
		}
		env, ok := lookupEnv(container(out, ProxyContainerName), "ISTIO_PROMETHEUS_ANNOTATIONS")
		g.Expect(ok).To(Equal(tc.wantEnv != ""), tc.name)
		g.Expect(env).To(Equal(tc.wantEnv), tc.name)
	}
}

func TestDefaultContainerAnnotations(t *testing.T) {
	g := NewWithT(t)
	pod := withAnnotations(typicalPod(), "kubectl.kubernetes.io/default-container", "log-shipper")
	out := mustInject(t, pod, testConfig())
	g.Expect(out.Annotations).To(HaveKeyWithValue("kubectl.kubernetes.io/default-container", "log-shipper"))
	g.Expect(out.Annotations).To(HaveKeyWithValue("kubectl.kubernetes.io/default-logs-container", "reviews"))
	g.Expect(envValue(container(out, ProxyContainerName), "ISTIO_META_APP_CONTAINERS")).To(Equal("reviews,log-shipper"))
}

func TestProxyCustomization(t *testing.T) {
	custom := func() *corev1.Pod {
		p := simplePod()
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{
			Name:      ProxyContainerName,
			Image:     "auto",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}},
			Env:       []corev1.EnvVar{{Name: "EXTRA", Value: "1"}, {Name: "CA_ADDR", Value: "ca.example.com:15012"}},
		})
		return p
	}
	native := testConfig()
	native.NativeSidecar = true
	for _, tc := range []struct {
		name string
		cfg  *Config
	}{{"classic", testConfig()}, {"native", native}} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			out := mustInject(t, custom(), tc.cfg)
			g.Expect(names(out.Spec.Containers)).To(Equal(map[bool][]string{false: {"hello", "istio-proxy"}, true: {"hello"}}[tc.cfg.NativeSidecar]))
			proxy := container(out, ProxyContainerName)
			g.Expect(proxy.Image).To(Equal("docker.io/istio/proxyv2:1.31.1"), "image auto takes the injected image")
			g.Expect(proxy.Resources.Limits).To(HaveKeyWithValue(corev1.ResourceMemory, resource.MustParse("256Mi")))
			g.Expect(proxy.Resources.Requests).To(HaveKeyWithValue(corev1.ResourceCPU, resource.MustParse("100m")))
			g.Expect(envValue(proxy, "CA_ADDR")).To(Equal("ca.example.com:15012"))
			g.Expect(envValue(proxy, "EXTRA")).To(Equal("1"))
			g.Expect(envValue(proxy, "ISTIO_META_APP_CONTAINERS")).To(Equal("hello"))
			g.Expect(out.Annotations).To(HaveKey(annotation.ProxyOverrides.Name))
			g.Expect(out.Annotations[annotation.ProxyOverrides.Name]).To(ContainSubstring(`"name":"EXTRA"`))
		})
	}
}

func TestClusterAndNetwork(t *testing.T) {
	g := NewWithT(t)
	cfg := testConfig()
	cfg.ClusterID, cfg.Network = "east", "net1"
	cfg.ImagePullSecrets = []string{"regcred"}
	pod := simplePod()
	pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "mine"}}
	out := mustInject(t, pod, cfg)
	proxy := container(out, ProxyContainerName)
	n := envNames(proxy)
	g.Expect(n[len(n)-2:]).To(Equal([]string{"ISTIO_META_CLUSTER_ID", "ISTIO_META_NETWORK"}))
	g.Expect(envValue(proxy, "ISTIO_META_CLUSTER_ID")).To(Equal("east"))
	g.Expect(envValue(proxy, "ISTIO_META_NETWORK")).To(Equal("net1"))
	g.Expect(out.Labels).To(HaveKeyWithValue(label.TopologyNetwork.Name, "net1"))
	g.Expect(out.Spec.ImagePullSecrets).To(Equal([]corev1.LocalObjectReference{{Name: "mine"}, {Name: "regcred"}}))
	g.Expect(out.Annotations[annotation.SidecarStatus.Name]).To(ContainSubstring(`"imagePullSecrets":["regcred"]`))

	pod.Labels[label.TopologyNetwork.Name] = "net2"
	proxy = container(mustInject(t, pod, cfg), ProxyContainerName)
	g.Expect(envValue(proxy, "ISTIO_META_NETWORK")).To(Equal("net2"), "the pod's label wins")
}

func TestUserVolumeNamedLikeOurs(t *testing.T) {
	g := NewWithT(t)
	pod := simplePod()
	pod.Spec.Volumes = []corev1.Volume{{Name: "istio-data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/x"}}}}
	out := mustInject(t, pod, testConfig())
	count := 0
	for _, v := range out.Spec.Volumes {
		if v.Name == "istio-data" {
			count++
			g.Expect(v.EmptyDir).NotTo(BeNil())
			g.Expect(v.HostPath).To(BeNil())
		}
	}
	g.Expect(count).To(Equal(1))
}
