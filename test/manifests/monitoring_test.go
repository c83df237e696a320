package manifests

import (
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// buildConfig runs kustomize on a directory under config/.
func buildConfig(t *testing.T, dir string) []unstructured.Unstructured {
	t.Helper()
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).
		Run(filesys.MakeFsOnDisk(), filepath.Join(repoRoot(t), "config", dir))
	if err != nil {
		t.Fatalf("kustomize build config/%s: %v", dir, err)
	}
	var objs []unstructured.Unstructured
	for _, r := range resources.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, unstructured.Unstructured{Object: m})
	}
	return objs
}

// config/prometheus, applied after config/default, scrapes exactly the operator's metrics
// Service on its metrics port, and the role Prometheus must be bound to ships.
func TestServiceMonitorSelectsTheMetricsService(t *testing.T) {
	g := NewWithT(t)
	monitoring := buildConfig(t, "prometheus")
	kinds := map[string]string{}
	for _, o := range monitoring {
		g.Expect(o.GetNamespace()).To(Equal(installNamespace), "%s %s", o.GetKind(), o.GetName())
		g.Expect(o.GetName()).To(HavePrefix(namePrefix))
		kinds[o.GetKind()] = o.GetName()
	}
	g.Expect(kinds).To(HaveKey("ServiceMonitor"))
	g.Expect(kinds).To(HaveKey("PrometheusRule"))

	var monitor struct {
		Spec struct {
			JobLabel string `json:"jobLabel"`
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			Endpoints []struct {
				Port        string `json:"port"`
				Scheme      string `json:"scheme"`
				HonorLabels bool   `json:"honorLabels"`
			} `json:"endpoints"`
		} `json:"spec"`
	}
	for _, o := range monitoring {
		if o.GetKind() == "ServiceMonitor" {
			raw, err := yaml.Marshal(o.Object)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(yaml.Unmarshal(raw, &monitor)).To(Succeed())
		}
	}
	g.Expect(monitor.Spec.Endpoints).To(HaveLen(1))
	selector := labels.SelectorFromSet(monitor.Spec.Selector.MatchLabels)
	g.Expect(selector.Empty()).To(BeFalse())

	objs := buildDefault(t)
	var selected []string
	for _, o := range objs {
		if o.GetKind() == "Service" && o.GetNamespace() == installNamespace && selector.Matches(labels.Set(o.GetLabels())) {
			selected = append(selected, o.GetName())
		}
	}
	g.Expect(selected).To(Equal([]string{namePrefix + "controller-manager-metrics"}))
	var svc corev1.Service
	findObject(t, objs, "Service", selected[0], &svc)
	var ports []string
	for _, p := range svc.Spec.Ports {
		ports = append(ports, p.Name)
	}
	g.Expect(ports).To(ContainElement(monitor.Spec.Endpoints[0].Port))
	g.Expect(monitor.Spec.Endpoints[0].Scheme).To(Equal("https"), "the manager serves metrics over HTTPS (--metrics-secure)")
	g.Expect(monitor.Spec.Endpoints[0].HonorLabels).To(BeTrue(), "the Canary metrics' namespace label must survive")
	g.Expect(svc.Labels).To(HaveKey(monitor.Spec.JobLabel))

	var reader rbacv1.ClusterRole
	findObject(t, objs, "ClusterRole", namePrefix+"metrics-reader", &reader)
	g.Expect(reader.Rules).To(ContainElement(rbacv1.PolicyRule{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}))
}

// config/grafana ships the dashboard, unchanged, for Grafana's dashboard sidecar.
func TestGrafanaDashboardConfigMap(t *testing.T) {
	g := NewWithT(t)
	objs := buildConfig(t, "grafana")
	g.Expect(objs).To(HaveLen(1))
	var cm corev1.ConfigMap
	findObject(t, objs, "ConfigMap", "meshplane-dashboard", &cm)
	g.Expect(cm.Namespace).To(Equal(installNamespace))
	g.Expect(cm.Labels).To(HaveKeyWithValue("grafana_dashboard", "1"))
	g.Expect(cm.Data).To(HaveKeyWithValue("meshplane-dashboard.json",
		string(readRepoFile(t, "config/grafana/meshplane-dashboard.json"))))
}
