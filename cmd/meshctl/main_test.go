package main

import (
	"bytes"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const deploymentYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.example/web:1
`

func injectedTemplate(t *testing.T, out string) corev1.PodTemplateSpec {
	t.Helper()
	var d struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("output is not a manifest: %v\n%s", err, out)
	}
	return d.Spec.Template
}

func env(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func TestKubeInjectWithFlags(t *testing.T) {
	g := NewWithT(t)
	var out bytes.Buffer
	err := kubeInject([]string{"--revision", "canary", "--control-plane-namespace", "mesh", "--version", "1.30.3", "--native-sidecar"},
		strings.NewReader(deploymentYAML), &out)
	g.Expect(err).NotTo(HaveOccurred())
	tpl := injectedTemplate(t, out.String())
	g.Expect(tpl.Spec.InitContainers).NotTo(BeEmpty())
	var proxy *corev1.Container
	for i := range tpl.Spec.InitContainers {
		if tpl.Spec.InitContainers[i].Name == "istio-proxy" {
			proxy = &tpl.Spec.InitContainers[i]
		}
	}
	g.Expect(proxy).NotTo(BeNil(), "native sidecar mode puts istio-proxy among the init containers")
	g.Expect(proxy.Image).To(Equal("docker.io/istio/proxyv2:1.30.3"))
	g.Expect(env(*proxy, "CA_ADDR")).To(Equal("istiod-canary.mesh.svc:15012"))
	g.Expect(tpl.Annotations).To(HaveKeyWithValue("istio.io/rev", "canary"))
}

func TestKubeInjectFromMeshControlPlaneManifest(t *testing.T) {
	g := NewWithT(t)
	var out bytes.Buffer
	// The sample sets holdApplicationUntilProxyStarts: the proxy comes first.
	err := kubeInject([]string{"--control-plane", "../../config/samples/mesh_v1alpha1_meshcontrolplane.yaml", "-f", "-"},
		strings.NewReader(deploymentYAML), &out)
	g.Expect(err).NotTo(HaveOccurred())
	tpl := injectedTemplate(t, out.String())
	g.Expect(tpl.Spec.Containers[0].Name).To(Equal("istio-proxy"))
	g.Expect(tpl.Spec.Containers[0].Image).To(Equal("docker.io/istio/proxyv2:1.31.1"))
}

func TestKubeInjectRejectsConflictingSources(t *testing.T) {
	g := NewWithT(t)
	err := kubeInject([]string{"--control-plane", "x.yaml", "--from-cluster", "default"}, strings.NewReader(""), &bytes.Buffer{})
	g.Expect(err).To(MatchError(ContainSubstring("alternatives")))
	err = kubeInject([]string{"--version", "1.2.3"}, strings.NewReader(deploymentYAML), &bytes.Buffer{})
	g.Expect(err).To(MatchError(ContainSubstring(`Istio version "1.2.3" is not supported`)))
}
