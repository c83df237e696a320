package bundle

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

func testOptions(t *testing.T) Options {
	return Options{Root: repoRoot(t), Image: "registry.example.com/meshplane:1.2.3", Version: "1.2.3", Channels: []string{"candidate"}, DefaultChannel: "candidate"}
}

var cachedInputs struct {
	once sync.Once
	in   inputs
	err  error
}

// sourceInputs are the generator's inputs as kustomize builds them from config/, for tests
// that change them before assembling. Each call returns a deep copy.
func sourceInputs(t *testing.T) inputs {
	t.Helper()
	root := repoRoot(t)
	cachedInputs.once.Do(func() {
		in := inputs{internalCRDs: map[string]bool{}, samples: map[string]bool{}, icon: []byte("<svg/>")}
		var istio, samples []*unstructured.Unstructured
		if in.objects, cachedInputs.err = kustomize(root, ManifestsDir); cachedInputs.err != nil {
			return
		}
		if istio, cachedInputs.err = kustomize(root, InternalCRDsDir); cachedInputs.err != nil {
			return
		}
		if samples, cachedInputs.err = kustomize(root, SamplesDir); cachedInputs.err != nil {
			return
		}
		for _, o := range istio {
			in.internalCRDs[o.GetName()] = true
		}
		for _, o := range samples {
			in.samples[key(o)] = true
		}
		cachedInputs.in = in
	})
	if cachedInputs.err != nil {
		t.Fatal(cachedInputs.err)
	}
	in := cachedInputs.in
	in.objects = nil
	for _, o := range cachedInputs.in.objects {
		in.objects = append(in.objects, o.DeepCopy())
	}
	in.samples = maps.Clone(cachedInputs.in.samples)
	return in
}

func csvOf(t *testing.T, files []File) *operatorsv1alpha1.ClusterServiceVersion {
	t.Helper()
	for _, f := range files {
		if strings.HasSuffix(f.Path, ".clusterserviceversion.yaml") {
			csv := &operatorsv1alpha1.ClusterServiceVersion{}
			if err := yaml.UnmarshalStrict(f.Data, csv); err != nil {
				t.Fatalf("decoding %s: %v", f.Path, err)
			}
			return csv
		}
	}
	t.Fatal("no CSV among the generated files")
	return nil
}

func TestGenerateIsDeterministic(t *testing.T) {
	g := NewWithT(t)
	first, err := Generate(testOptions(t))
	g.Expect(err).NotTo(HaveOccurred())
	second, err := Generate(testOptions(t))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(second).To(HaveLen(len(first)))
	for i := range first {
		g.Expect(second[i].Path).To(Equal(first[i].Path))
		g.Expect(bytes.Equal(second[i].Data, first[i].Data)).To(BeTrue(), "%s differs between two runs", first[i].Path)
		g.Expect(string(first[i].Data)).NotTo(ContainSubstring("createdAt"), "%s carries a timestamp", first[i].Path)
	}
}

func TestImageAndVersionComeFromOptions(t *testing.T) {
	g := NewWithT(t)
	files, err := Generate(testOptions(t))
	g.Expect(err).NotTo(HaveOccurred())
	csv := csvOf(t, files)

	g.Expect(csv.Name).To(Equal("meshplane.v1.2.3"))
	g.Expect(csv.Spec.Version.String()).To(Equal("1.2.3"))
	g.Expect(csv.Annotations).To(HaveKeyWithValue(AnnotationContainerImage, "registry.example.com/meshplane:1.2.3"))
	g.Expect(csv.Spec.RelatedImages[0]).To(Equal(operatorsv1alpha1.RelatedImage{Name: OperatorImageName, Image: "registry.example.com/meshplane:1.2.3"}))
	deployments := csv.Spec.InstallStrategy.StrategySpec.DeploymentSpecs
	g.Expect(deployments).To(HaveLen(1))
	g.Expect(deployments[0].Spec.Template.Spec.Containers[0].Image).To(Equal("registry.example.com/meshplane:1.2.3"))
}

// A CRD added to config/crd (as RemoteCluster will be; here a made-up Widget) is owned, described and
// must come with a sample: without one the generator names the kind and the fix.
func TestEveryOwnedKindNeedsASample(t *testing.T) {
	g := NewWithT(t)
	in := sourceInputs(t)

	var withWidget []*unstructured.Unstructured
	for _, o := range in.objects {
		withWidget = append(withWidget, o)
		if o.GetKind() == "CustomResourceDefinition" && o.GetName() == "meshcontrolplanes.mesh.meshplane.io" {
			widget := o.DeepCopy()
			widget.SetName("widgets.mesh.meshplane.io")
			g.Expect(unstructured.SetNestedField(widget.Object, "Widget", "spec", "names", "kind")).To(Succeed())
			g.Expect(unstructured.SetNestedField(widget.Object, "widgets", "spec", "names", "plural")).To(Succeed())
			withWidget = append(withWidget, widget)
		}
	}
	in.objects = withWidget
	_, err := assemble(in, testOptions(t))
	g.Expect(err).To(MatchError(And(
		ContainSubstring("config/samples has no example of Widget mesh.meshplane.io/v1alpha1 (CRD widgets.mesh.meshplane.io)"),
		ContainSubstring("config/samples/kustomization.yaml"),
	)))

	// With a sample, Widget is owned with descriptors and an example.
	sample := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "mesh.meshplane.io/v1alpha1", "kind": "Widget",
		"metadata": map[string]any{"name": "sample"}, "spec": map[string]any{"version": "1.31.1"},
	}}
	in.objects = append(withWidget, sample)
	in.samples[key(sample)] = true
	files, err := assemble(in, testOptions(t))
	g.Expect(err).NotTo(HaveOccurred())
	csv := csvOf(t, files)
	g.Expect(csv.Annotations[AnnotationExamples]).To(ContainSubstring(`"kind": "Widget"`))
	var kinds []string
	for _, d := range csv.Spec.CustomResourceDefinitions.Owned {
		kinds = append(kinds, d.Kind)
		if d.Kind == "Widget" {
			g.Expect(d.SpecDescriptors).NotTo(BeEmpty())
		}
	}
	g.Expect(kinds[:3]).To(Equal([]string{"Canary", "MeshControlPlane", "Widget"}), "meshplane's kinds come first, by CRD name")
}

func TestRefusesWhatABundleCannotShip(t *testing.T) {
	g := NewWithT(t)
	webhook := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
		"metadata": map[string]any{"name": "meshplane-validator"},
	}}
	in := sourceInputs(t)
	in.objects = append(in.objects, webhook)
	_, err := assemble(in, testOptions(t))
	g.Expect(err).To(MatchError(ContainSubstring(`ValidatingWebhookConfiguration "meshplane-validator", which a bundle cannot ship`)))

	// A custom resource is a sample or nothing: a bundle cannot create one.
	mcp := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "mesh.meshplane.io/v1alpha1", "kind": "MeshControlPlane", "metadata": map[string]any{"name": "extra"},
	}}
	in = sourceInputs(t)
	in.objects = append(in.objects, mcp)
	_, err = assemble(in, testOptions(t))
	g.Expect(err).To(MatchError(ContainSubstring(`MeshControlPlane "extra" outside config/samples: a bundle cannot ship custom resources`)))
}

// A sample's supporting objects (a demo workload beside a Canary) are not part of the install.
func TestSamplesOfOtherKindsStayOut(t *testing.T) {
	g := NewWithT(t)
	app := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "reviews"},
	}}
	in := sourceInputs(t)
	in.objects = append(in.objects, app)
	in.samples[key(app)] = true
	files, err := assemble(in, testOptions(t))
	g.Expect(err).NotTo(HaveOccurred())
	csv := csvOf(t, files)
	g.Expect(csv.Spec.InstallStrategy.StrategySpec.DeploymentSpecs).To(HaveLen(1))
	g.Expect(csv.Annotations[AnnotationExamples]).NotTo(ContainSubstring("reviews"))
}

func TestRefusesABaseThatSetsGeneratedFields(t *testing.T) {
	g := NewWithT(t)
	in := sourceInputs(t)
	for _, o := range in.objects {
		if o.GetKind() == "ClusterServiceVersion" {
			g.Expect(unstructured.SetNestedSlice(o.Object, []any{map[string]any{"name": "x", "image": "x:1"}}, "spec", "relatedImages")).To(Succeed())
		}
	}
	_, err := assemble(in, testOptions(t))
	g.Expect(err).To(MatchError(ContainSubstring("sets fields the generator computes: spec.relatedImages")))
}

func TestOptionsAreRequired(t *testing.T) {
	g := NewWithT(t)
	_, err := Generate(Options{Root: repoRoot(t)})
	g.Expect(err).To(MatchError("bundle options not set: image, version, channels"))
	opts := testOptions(t)
	opts.Version = "latest"
	_, err = Generate(opts)
	g.Expect(err).To(MatchError(ContainSubstring(`version "latest" is not a semantic version`)))
}
