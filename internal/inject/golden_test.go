package inject

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// testConfig is the default revision of a default install, as the caller resolves it.
func testConfig() *Config {
	return &Config{
		Version:          "1.31.1",
		Hub:              "docker.io/istio",
		Revision:         "default",
		DiscoveryAddress: "istiod.istio-system.svc:15012",
		CAAddress:        "istiod.istio-system.svc:15012",
		ClusterID:        "Kubernetes",
		TrustDomain:      "cluster.local",
		LogLevel:         "warning",
		MeshProxyConfig:  map[string]any{"discoveryAddress": "istiod.istio-system.svc:15012"},
		RewriteAppProbes: true,
	}
}

// typicalPod is what a Deployment's ReplicaSet submits: a generated name, no namespace in the
// object, two containers with probes and ports, the app's own Prometheus annotations.
func typicalPod() *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "reviews-v1-5c9f7d8b6-",
			Labels: map[string]string{
				"app":               "reviews",
				"version":           "v1",
				"pod-template-hash": "5c9f7d8b6",
			},
			Annotations: map[string]string{
				"prometheus.io/scrape":              "true",
				"prometheus.io/port":                "9080",
				"sidecar.istio.io/proxyCPU":         "50m",
				"sidecar.istio.io/proxyMemory":      "64Mi",
				"sidecar.istio.io/proxyCPULimit":    "1",
				"sidecar.istio.io/proxyMemoryLimit": "512Mi",
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "reviews-v1-5c9f7d8b6",
				UID: "6f1c1a52-0d0e-4b61-9d2b-2a1f5c7e9b01", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "bookinfo-reviews",
			Containers: []corev1.Container{
				{
					Name:  "reviews",
					Image: "docker.io/istio/examples-bookinfo-reviews-v1:1.20.2",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 9080, Protocol: corev1.ProtocolTCP}},
					ReadinessProbe: &corev1.Probe{
						ProbeHandler:   corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTP}},
						TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3,
					},
					LivenessProbe: &corev1.Probe{
						ProbeHandler:   corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9080)}},
						TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3,
					},
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}},
				},
				{
					Name:  "log-shipper",
					Image: "docker.io/fluent/fluent-bit:3.2",
					Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 2020, Protocol: corev1.ProtocolTCP}},
				},
			},
		},
	}
}

func TestGolden(t *testing.T) {
	native := testConfig()
	native.NativeSidecar = true
	canary := testConfig()
	canary.Revision, canary.DiscoveryAddress, canary.CAAddress = "canary", "istiod-canary.istio-system.svc:15012", "istiod-canary.istio-system.svc:15012"
	canary.MeshProxyConfig = map[string]any{"discoveryAddress": canary.DiscoveryAddress, "holdApplicationUntilProxyStarts": true}

	for _, tc := range []struct {
		file string
		cfg  *Config
	}{
		{"typical.golden.yaml", testConfig()},
		{"typical-native.golden.yaml", native},
		{"typical-canary-hold.golden.yaml", canary},
	} {
		t.Run(tc.file, func(t *testing.T) {
			g := NewWithT(t)
			out, injected, err := Inject(typicalPod(), "bookinfo", tc.cfg)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(injected).To(BeTrue())
			got, err := yaml.Marshal(out)
			g.Expect(err).NotTo(HaveOccurred())

			path := filepath.Join("testdata", tc.file)
			if *update {
				g.Expect(os.WriteFile(path, got, 0o644)).To(Succeed())
			}
			want, err := os.ReadFile(path)
			g.Expect(err).NotTo(HaveOccurred(), "run with -update to create %s", path)
			if !bytes.Equal(got, want) {
				t.Errorf("%s is stale; rerun with -update and review the diff:\n%s", path, got)
			}
		})
	}
}
