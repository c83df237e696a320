package inject

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"istio.io/api/annotation"
	"istio.io/api/label"
)

// fuzzAnnotations are the annotations the injector reads; the fuzzer picks them by index so
// it reaches their parsers instead of spending its time on unknown keys.
var fuzzAnnotations = []string{
	annotation.SidecarProxyCPU.Name,
	annotation.SidecarProxyMemory.Name,
	annotation.SidecarProxyCPULimit.Name,
	annotation.SidecarProxyMemoryLimit.Name,
	annotation.SidecarLogLevel.Name,
	annotation.SidecarComponentLogLevel.Name,
	annotation.SidecarAgentLogLevel.Name,
	annotation.ProxyConfig.Name,
	annotation.SidecarTrafficIncludeOutboundIPRanges.Name,
	annotation.SidecarTrafficExcludeOutboundIPRanges.Name,
	annotation.SidecarTrafficIncludeInboundPorts.Name,
	annotation.SidecarTrafficExcludeInboundPorts.Name,
	annotation.SidecarTrafficIncludeOutboundPorts.Name,
	annotation.SidecarTrafficExcludeOutboundPorts.Name,
	annotation.SidecarTrafficKubevirtInterfaces.Name,
	annotation.SidecarTrafficExcludeInterfaces.Name,
	annotation.SidecarRewriteAppHTTPProbers.Name,
	annotation.SidecarInterceptionMode.Name,
	annotation.SidecarNativeSidecar.Name,
	annotation.SidecarProxyImage.Name,
	annotation.SidecarProxyImageType.Name,
	annotation.SidecarStatusReadinessPeriodSeconds.Name,
	annotation.PrometheusMergeMetrics.Name,
	annotation.SidecarInject.Name,
	annotation.SidecarUserVolume.Name,
	annotation.SidecarUserVolumeMount.Name,
	annotation.SidecarBootstrapOverride.Name,
	annotation.InjectTemplates.Name,
	annotation.SidecarStatus.Name,
	"prometheus.io/port",
	"prometheus.io/scrape",
	"kubectl.kubernetes.io/default-container",
}

// FuzzInject feeds the mutator arbitrary annotations, containers, probes and modes. Whatever
// the input it must not panic nor touch its input; an injected pod must serialise, carry
// exactly one proxy, and be left alone by a second injection. Inputs the fuzzer once broke us
// with are kept under testdata/fuzz/FuzzInject.
// Run longer with: go test ./internal/inject -fuzz FuzzInject -fuzztime 60s
func FuzzInject(f *testing.F) {
	f.Add(uint8(0), "100m", uint8(7), "holdApplicationUntilProxyStarts: true", "", "", "app", "http", int32(8080), "http", "", false, "demo")
	f.Add(uint8(7), `{"proxyMetadata":{"A":"b"},"interceptionMode":"TPROXY"}`, uint8(11), "8080, 9090", "prometheus.io.port", "9090", "web", "", int32(0), "9090", "istio-proxy", true, "")
	f.Add(uint8(8), "10.0.0.0/8,fd00::/8", uint8(17), "NONE", "sidecar.istio.io/inject", "false", "a", "grpc", int32(65535), "grpc", "", true, "kube-system")
	f.Add(uint8(4), "trace", uint8(16), "false", "", "", "istio-proxy", "p", int32(-1), "", "istio-init", false, "ns")
	f.Add(uint8(19), "auto", uint8(20), "distroless", "x", "", "", "", int32(15020), "15020", "istio-proxy", false, "")
	f.Fuzz(func(t *testing.T, k1 uint8, v1 string, k2 uint8, v2 string, freeKey, freeValue,
		name, portName string, port int32, probePort, extra string, native bool, namespace string) {
		pod := &corev1.Pod{}
		pod.GenerateName = name + "-"
		pod.Labels = map[string]string{"app": name, "pod-template-hash": portName}
		pod.Annotations = map[string]string{
			fuzzAnnotations[int(k1)%len(fuzzAnnotations)]: v1,
			fuzzAnnotations[int(k2)%len(fuzzAnnotations)]: v2,
		}
		if freeKey != "" {
			pod.Annotations[freeKey] = freeValue
		}
		probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.Parse(probePort)}}}
		pod.Spec.Containers = []corev1.Container{{
			Name:           name,
			Ports:          []corev1.ContainerPort{{Name: portName, ContainerPort: port}},
			ReadinessProbe: probe,
			LivenessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.Parse(probePort)}}},
			Lifecycle:      &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.Parse(probePort)}}},
		}}
		if extra != "" {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: extra, Image: "auto"})
			if extra != ProxyContainerName { // a proxy in both lists is a user error upstream keeps too
				pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: extra, StartupProbe: probe})
			}
		}
		cfg := testConfig()
		cfg.NativeSidecar = native
		before := pod.DeepCopy()

		out, injected, err := Inject(pod, namespace, cfg)
		if !equality.Semantic.DeepEqual(pod, before) {
			t.Fatalf("Inject modified its input")
		}
		if err != nil {
			if injected || out != nil {
				t.Fatalf("error %v with injected=%v out=%v", err, injected, out != nil)
			}
			return
		}
		if !injected {
			if out != pod {
				t.Fatalf("a pod left alone must be returned as is")
			}
			return
		}
		// YAML refuses some control characters; output may only fail where the input does.
		if _, err := yaml.Marshal(out); err != nil {
			if _, inErr := yaml.Marshal(pod); inErr == nil {
				t.Fatalf("injected pod does not serialise as YAML: %v", err)
			}
		}
		js, err := json.Marshal(out)
		if err != nil {
			t.Fatalf("injected pod does not serialise: %v", err)
		}
		var back corev1.Pod
		if err := json.Unmarshal(js, &back); err != nil {
			t.Fatalf("injected pod does not deserialise: %v", err)
		}
		var status sidecarStatus
		if err := json.Unmarshal([]byte(out.Annotations[annotation.SidecarStatus.Name]), &status); err != nil {
			t.Fatalf("status annotation: %v", err)
		}
		proxies := 0
		for _, c := range append(out.Spec.InitContainers, out.Spec.Containers...) {
			if c.Name == ProxyContainerName {
				proxies++
			}
		}
		if proxies != 1 {
			t.Fatalf("%d istio-proxy containers", proxies)
		}
		if out.Labels[label.SecurityTlsMode.Name] == "" {
			t.Fatalf("no %s label", label.SecurityTlsMode.Name)
		}
		again, reinjected, err := Inject(out, namespace, cfg)
		if err != nil || reinjected || again != out {
			t.Fatalf("second injection: injected=%v err=%v", reinjected, err)
		}
	})
}
