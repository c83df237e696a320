package manifests

import (
	"encoding/json"
	"slices"
	"testing"

	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/internal/render"
	"github.com/meshplane/meshplane/internal/versions"
)

// readCRDs decodes every CustomResourceDefinition in a (multi-document) YAML file.
func readCRDs(t *testing.T, path string) []apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	var crds []apiextensionsv1.CustomResourceDefinition
	for _, doc := range yamlDocuments(t, readRepoFile(t, path)) {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(doc, &crd); err != nil {
			t.Fatalf("decoding %s: %v", path, err)
		}
		if crd.Kind != "CustomResourceDefinition" {
			t.Fatalf("%s holds a %s %q, want only CustomResourceDefinitions", path, crd.Kind, crd.Name)
		}
		crds = append(crds, crd)
	}
	if len(crds) == 0 {
		t.Fatalf("%s holds no CustomResourceDefinitions", path)
	}
	return crds
}

func TestMeshControlPlaneVersionEnumMatchesSupported(t *testing.T) {
	g := NewWithT(t)
	crds := readCRDs(t, "config/crd/bases/mesh.meshplane.io_meshcontrolplanes.yaml")
	g.Expect(crds).To(HaveLen(1))

	want := make([]string, len(versions.Supported))
	for i, r := range versions.Supported {
		want[i] = r.Version
	}
	g.Expect(want).NotTo(BeEmpty())

	crdVersions := crds[0].Spec.Versions
	g.Expect(crdVersions).NotTo(BeEmpty())
	for _, v := range crdVersions {
		g.Expect(v.Schema).NotTo(BeNil(), "CRD version %s has no schema", v.Name)
		g.Expect(v.Schema.OpenAPIV3Schema).NotTo(BeNil(), "CRD version %s has no schema", v.Name)
		spec, ok := v.Schema.OpenAPIV3Schema.Properties["spec"]
		g.Expect(ok).To(BeTrue(), "CRD version %s has no spec", v.Name)
		field, ok := spec.Properties["version"]
		g.Expect(ok).To(BeTrue(), "CRD version %s has no spec.version", v.Name)

		enum := make([]string, len(field.Enum))
		for i, e := range field.Enum {
			g.Expect(json.Unmarshal(e.Raw, &enum[i])).To(Succeed(), "enum value %s", e.Raw)
		}
		g.Expect(enum).To(Equal(want),
			"CRD version %s: spec.version enum differs from versions.Supported; update the kubebuilder enum marker and run 'make manifests'", v.Name)

		g.Expect(field.Default).NotTo(BeNil(), "CRD version %s: spec.version has no default", v.Name)
		var def string
		g.Expect(json.Unmarshal(field.Default.Raw, &def)).To(Succeed())
		g.Expect(def).To(Equal(versions.Default.Version), "CRD version %s: spec.version default", v.Name)
	}
}

func TestIstioResourcesMatchShippedCRDs(t *testing.T) {
	g := NewWithT(t)

	shipped := map[string][]string{}
	for _, crd := range readCRDs(t, "config/istio-crds/istio-crds.yaml") {
		g.Expect(crd.Spec.Group).NotTo(BeEmpty(), "CRD %s has no group", crd.Name)
		g.Expect(crd.Spec.Names.Plural).NotTo(BeEmpty(), "CRD %s has no plural", crd.Name)
		shipped[crd.Spec.Group] = append(shipped[crd.Spec.Group], crd.Spec.Names.Plural)
	}
	for _, plurals := range shipped {
		slices.Sort(plurals)
	}

	rendered := map[string][]string{}
	for group, plurals := range render.IstioResources {
		rendered[group] = slices.Sorted(slices.Values(plurals))
	}
	g.Expect(rendered).NotTo(BeEmpty())

	g.Expect(rendered).To(Equal(shipped),
		"render.IstioResources must list exactly the CRDs in config/istio-crds/istio-crds.yaml (group -> plurals)")
}
