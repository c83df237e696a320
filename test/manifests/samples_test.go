package manifests

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/prom"
	"github.com/meshplane/meshplane/internal/versions"
)

func TestSamplesDecodeStrictly(t *testing.T) {
	g := NewWithT(t)
	const dir = "config/samples"

	var kustomization types.Kustomization
	g.Expect(yaml.UnmarshalStrict(readRepoFile(t, filepath.Join(dir, "kustomization.yaml")), &kustomization)).To(Succeed())
	g.Expect(kustomization.Resources).NotTo(BeEmpty(), "%s/kustomization.yaml lists no samples", dir)

	// A sample left out of the kustomization would escape this test.
	entries, err := os.ReadDir(filepath.Join(repoRoot(t), dir))
	g.Expect(err).NotTo(HaveOccurred())
	for _, e := range entries {
		if name := e.Name(); !e.IsDir() && filepath.Ext(name) == ".yaml" && name != "kustomization.yaml" {
			g.Expect(kustomization.Resources).To(ContainElement(name), "%s/%s is not listed in its kustomization.yaml", dir, name)
		}
	}

	supported := make([]string, len(versions.Supported))
	for i, r := range versions.Supported {
		supported[i] = r.Version
	}

	for _, file := range kustomization.Resources {
		t.Run(file, func(t *testing.T) {
			g := NewWithT(t)
			docs := yamlDocuments(t, readRepoFile(t, filepath.Join(dir, file)))
			g.Expect(docs).NotTo(BeEmpty(), "%s holds no objects", file)
			for _, doc := range docs {
				var typeMeta metav1.TypeMeta
				g.Expect(yaml.Unmarshal(doc, &typeMeta)).To(Succeed())
				g.Expect(typeMeta.APIVersion).To(Equal(v1alpha1.GroupVersion.String()))
				switch typeMeta.Kind {
				case "MeshControlPlane":
					var mcp v1alpha1.MeshControlPlane
					g.Expect(yaml.UnmarshalStrict(doc, &mcp)).To(Succeed())
					g.Expect(mcp.Name).NotTo(BeEmpty())
					if mcp.Spec.Version != "" {
						g.Expect(slices.Contains(supported, mcp.Spec.Version)).To(BeTrue(),
							"sample %s asks for Istio %s, which is not in versions.Supported %v", mcp.Name, mcp.Spec.Version, supported)
					}
				case "Canary":
					var c v1alpha1.Canary
					g.Expect(yaml.UnmarshalStrict(doc, &c)).To(Succeed())
					g.Expect(c.Name).NotTo(BeEmpty())
					g.Expect(c.Namespace).To(BeEmpty(), "a namespaced sample goes where it is applied (kubectl apply -n, or the demo's namespace)")
					g.Expect(c.Spec.TargetRef.Name).NotTo(BeEmpty())
					g.Expect(c.Spec.Analysis.Metrics).NotTo(BeEmpty())
					g.Expect(c.Spec.Analysis.Prometheus.Address).NotTo(BeEmpty())
					for _, m := range c.Spec.Analysis.Metrics {
						if m.Query != "" {
							g.Expect(prom.ValidateTemplate(m.Query)).To(Succeed(), "metric %s", m.Name)
						}
					}
				default:
					t.Errorf("%s holds a %s: the samples test knows MeshControlPlane and Canary", file, typeMeta.Kind)
				}
			}
		})
	}
}
