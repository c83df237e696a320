package manifests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/gomega"
	scorecardv1alpha3 "github.com/operator-framework/api/pkg/apis/scorecard/v1alpha3"
	"github.com/operator-framework/api/pkg/manifests"
	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
	"github.com/operator-framework/api/pkg/validation"
	validationerrors "github.com/operator-framework/api/pkg/validation/errors"
	interfaces "github.com/operator-framework/api/pkg/validation/interfaces"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/internal/bundle"
	"github.com/meshplane/meshplane/internal/versions"
)

// loadBundle reads bundle/ with the operator-framework loader, as OLM's tooling does. Each
// test loads its own: the validators default the CRDs they are given in place.
func loadBundle(t *testing.T) *manifests.Bundle {
	t.Helper()
	b, err := manifests.GetBundleFromDir(filepath.Join(repoRoot(t), bundle.OutputDir))
	if err != nil {
		t.Fatalf("loading %s: %v (run 'make bundle')", bundle.OutputDir, err)
	}
	if b.CSV == nil {
		t.Fatalf("%s holds no ClusterServiceVersion", bundle.OutputDir)
	}
	return b
}

// keptWarnings are the validator warnings the bundle keeps, each with the reason.
var keptWarnings = []struct {
	reason string
	keep   func(w validationerrors.Error, b *manifests.Bundle) bool
}{{
	reason: "Istio's CRDs are owned only so that OLM installs them with the operator; they are " +
		"internal objects (hidden in the console), not meshplane's API, and an example would " +
		"offer users a create form for them. meshplane's own kinds all have examples (checked below).",
	keep: func(w validationerrors.Error, b *manifests.Bundle) bool {
		gvk, ok := w.BadValue.(schema.GroupVersionKind)
		return ok && strings.Contains(w.Detail, "provided API should have an example annotation") &&
			slices.Contains(internalObjects(b), crdNameFor(b, gvk))
	},
}}

// TestBundleValidates runs the operator-framework validators on the committed bundle:
// no errors, and no warnings but the kept ones above.
//
// Left out: OperatorHubValidator (deprecated in favour of OperatorHubV2 plus the standard
// capabilities and categories validators, all run here); CommunityOperatorValidator
// (deprecated, moved out of the library); MultipleArchitecturesValidator (it inspects the
// images with a container tool and a registry, which the test machines do not have).
func TestBundleValidates(t *testing.T) {
	g := NewWithT(t)
	b := loadBundle(t)

	validators := interfaces.Validators{
		validation.ClusterServiceVersionValidator,
		validation.CustomResourceDefinitionValidator,
		validation.BundleValidator,
		validation.OperatorHubV2Validator,
		validation.StandardCapabilitiesValidator,
		validation.StandardCategoriesValidator,
		validation.ObjectValidator,
		validation.GoodPracticesValidator,
		validation.AlphaDeprecatedAPIsValidator,
	}
	// The optional k8s-version turns removed-API findings for that version into errors.
	objs := append(b.ObjectsToValidate(), map[string]string{"k8s-version": b.CSV.Spec.MinKubeVersion})
	results := validators.Validate(objs...)
	g.Expect(len(results)).To(BeNumerically(">=", len(validators)), "the validators returned fewer results than there are validators")

	var errs, warnings []string
	kept := make([]int, len(keptWarnings))
	for _, r := range results {
		for _, e := range r.Errors {
			errs = append(errs, fmt.Sprintf("%s: %s", r.Name, e.Error()))
		}
	warning:
		for _, w := range r.Warnings {
			for i, k := range keptWarnings {
				if k.keep(w, b) {
					kept[i]++
					continue warning
				}
			}
			warnings = append(warnings, fmt.Sprintf("%s: %s", r.Name, w.Error()))
		}
	}
	g.Expect(errs).To(BeEmpty(), "validation errors")
	g.Expect(warnings).To(BeEmpty(), "validation warnings: fix them, or keep one in keptWarnings with the reason")
	for i, k := range keptWarnings {
		g.Expect(kept[i]).To(BeNumerically(">", 0), "kept warning %q no longer occurs: remove it", k.reason)
	}
	t.Logf("validators: %d results, 0 errors, %d kept warnings (%v)", len(results), sum(kept), kept)
}

// TestBundleIsFresh regenerates the bundle with the committed image, version and channels
// and compares every file, so 'make test' fails on a stale bundle as 'make verify' does.
func TestBundleIsFresh(t *testing.T) {
	g := NewWithT(t)
	b := loadBundle(t)
	root := repoRoot(t)

	files, err := bundle.Generate(bundle.Options{
		Root:           root,
		Image:          b.CSV.Annotations[bundle.AnnotationContainerImage],
		Version:        b.CSV.Spec.Version.String(),
		Channels:       b.Channels,
		DefaultChannel: b.DefaultChannel,
	})
	g.Expect(err).NotTo(HaveOccurred())

	want := map[string][]byte{}
	for _, f := range files {
		want[f.Path] = f.Data
	}
	got := map[string][]byte{}
	g.Expect(filepath.WalkDir(filepath.Join(root, bundle.OutputDir), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		got[filepath.ToSlash(rel)], err = os.ReadFile(path)
		return err
	})).To(Succeed())
	got[bundle.Dockerfile] = readRepoFile(t, bundle.Dockerfile)

	g.Expect(slices.Sorted(mapKeys(got))).To(Equal(slices.Sorted(mapKeys(want))), "bundle files: run 'make bundle'")
	for path, data := range want {
		g.Expect(bytes.Equal(got[path], data)).To(BeTrue(), "%s is stale: run 'make bundle'", path)
	}
}

// TestBundleDeploymentMatchesKustomize: OLM must run the operator exactly as
// 'kubectl apply -k config/default' does (args, probes, security context, image).
func TestBundleDeploymentMatchesKustomize(t *testing.T) {
	g := NewWithT(t)
	csv := loadBundle(t).CSV
	want := managerDeployment(t)

	deployments := csv.Spec.InstallStrategy.StrategySpec.DeploymentSpecs
	g.Expect(deployments).To(HaveLen(1))
	got := deployments[0]
	g.Expect(got.Name).To(Equal(want.Name))
	g.Expect(got.Label).To(BeEquivalentTo(want.Labels))
	g.Expect(equality.Semantic.DeepEqual(got.Spec, want.Spec)).To(BeTrue(),
		"the CSV's Deployment differs from config/default's (-config/default +bundle):\n%s", cmp.Diff(want.Spec, got.Spec))
	// The same, spelled out for what matters most.
	container := got.Spec.Template.Spec.Containers[0]
	g.Expect(container.Args).To(Equal(want.Spec.Template.Spec.Containers[0].Args))
	g.Expect(container.LivenessProbe).NotTo(BeNil())
	g.Expect(container.ReadinessProbe).NotTo(BeNil())
	g.Expect(container.SecurityContext).To(Equal(want.Spec.Template.Spec.Containers[0].SecurityContext))
	g.Expect(got.Spec.Template.Spec.SecurityContext).To(Equal(want.Spec.Template.Spec.SecurityContext))
	g.Expect(csv.Annotations).To(HaveKeyWithValue(bundle.AnnotationContainerImage, container.Image))
}

// TestBundleRBAC: the CSV grants exactly config/rbac's roles, with no wildcard, no
// privilege-escalating verb and no write access to CRDs (the operator never creates CRDs).
func TestBundleRBAC(t *testing.T) {
	g := NewWithT(t)
	strategy := loadBundle(t).CSV.Spec.InstallStrategy.StrategySpec
	sa := managerDeployment(t).Spec.Template.Spec.ServiceAccountName

	g.Expect(strategy.ClusterPermissions).To(HaveLen(1))
	g.Expect(strategy.ClusterPermissions[0].ServiceAccountName).To(Equal(sa))
	g.Expect(strategy.ClusterPermissions[0].Rules).To(Equal(managerRole(t).Rules), "clusterPermissions must be config/rbac/role.yaml")

	var leader rbacv1.Role
	findObject(t, buildDefault(t), "Role", namePrefix+"leader-election-role", &leader)
	g.Expect(strategy.Permissions).To(HaveLen(1))
	g.Expect(strategy.Permissions[0].ServiceAccountName).To(Equal(sa))
	g.Expect(strategy.Permissions[0].Rules).To(Equal(leader.Rules), "permissions must be the leader-election Role")

	for _, perms := range [][]operatorsv1alpha1.StrategyDeploymentPermissions{strategy.ClusterPermissions, strategy.Permissions} {
		for _, p := range perms {
			for i, r := range p.Rules {
				desc := fmt.Sprintf("%s rule %d (%s)", p.ServiceAccountName, i, formatRule(r))
				for _, v := range slices.Concat(r.APIGroups, r.Resources, r.Verbs, r.ResourceNames, r.NonResourceURLs) {
					g.Expect(v).NotTo(ContainSubstring("*"), "%s: wildcard", desc)
				}
				for _, verb := range []string{"escalate", "bind", "impersonate"} {
					g.Expect(r.Verbs).NotTo(ContainElement(verb), "%s: privilege-escalating verb", desc)
				}
				if slices.Contains(r.APIGroups, "apiextensions.k8s.io") && slices.Contains(r.Resources, "customresourcedefinitions") {
					g.Expect(r.Verbs).To(ConsistOf("get", "list", "watch"), "%s: the operator must not write CRDs", desc)
				}
			}
		}
	}
}

// TestBundleOwnsEveryCRD: every CRD in config/crd/bases ships unchanged, is owned in each
// served version with a description and descriptors, and has an alm-example that its schema
// accepts without pruning anything. It also runs the scorecard's static descriptor checks.
func TestBundleOwnsEveryCRD(t *testing.T) {
	b := loadBundle(t)
	const dir = "config/crd/bases"
	entries, err := os.ReadDir(filepath.Join(repoRoot(t), dir))
	if err != nil {
		t.Fatal(err)
	}
	examples := almExamples(t, b.CSV)
	shipped := map[string]*apiextensionsv1.CustomResourceDefinition{}
	for _, crd := range b.V1CRDs {
		shipped[crd.Name] = crd
	}

	var crds []apiextensionsv1.CustomResourceDefinition
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".yaml") {
			crds = append(crds, readCRDs(t, filepath.Join(dir, e.Name()))...)
		}
	}
	if len(crds) == 0 {
		t.Fatalf("%s holds no CRDs", dir)
	}
	for _, crd := range crds {
		t.Run(crd.Name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(shipped).To(HaveKey(crd.Name), "%s is not in the bundle: list it in config/crd/kustomization.yaml", crd.Name)
			if shipped[crd.Name] != nil {
				g.Expect(equality.Semantic.DeepEqual(shipped[crd.Name].Spec, crd.Spec)).To(BeTrue(),
					"the bundle's %s differs from %s (-config +bundle):\n%s", crd.Name, dir, cmp.Diff(crd.Spec, shipped[crd.Name].Spec))
			}
			g.Expect(internalObjects(b)).NotTo(ContainElement(crd.Name), "meshplane's own CRDs are not internal objects")

			for _, v := range crd.Spec.Versions {
				if !v.Served {
					continue
				}
				gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}
				owned := ownedEntry(b.CSV, crd.Name, v.Name)
				g.Expect(owned).NotTo(BeNil(), "%s is not an owned CRD of the CSV", gvk)
				if owned == nil {
					continue
				}
				g.Expect(owned.Kind).To(Equal(gvk.Kind))
				g.Expect(owned.DisplayName).NotTo(BeEmpty())
				g.Expect(owned.Description).NotTo(BeEmpty())
				g.Expect(owned.SpecDescriptors).NotTo(BeEmpty(), "%s has no spec descriptors", gvk)
				if _, ok := v.Schema.OpenAPIV3Schema.Properties["status"]; ok {
					g.Expect(owned.StatusDescriptors).NotTo(BeEmpty(), "%s has no status descriptors", gvk)
				}
				paths := map[string]bool{}
				for _, d := range owned.SpecDescriptors {
					g.Expect(paths).NotTo(HaveKey(d.Path), "duplicate spec descriptor %s", d.Path)
					paths[d.Path] = true
				}

				mine := examples[gvk]
				g.Expect(mine).NotTo(BeEmpty(), "%s has no alm-example: add a sample to config/samples", gvk)
				for _, ex := range mine {
					// The scorecard's olm-spec-descriptors: every spec field an example sets
					// has a descriptor.
					spec, _, _ := unstructured.NestedMap(ex.Object, "spec")
					for key := range spec {
						g.Expect(paths).To(HaveKey(key), "example %s sets spec.%s, which has no spec descriptor", ex.GetName(), key)
					}
					g.Expect(validateAgainstSchema(t, ex, v.Schema.OpenAPIV3Schema)).To(BeEmpty(),
						"example %s %s does not fit its CRD's schema", gvk.Kind, ex.GetName())
				}
			}
		})
	}
}

// TestBundleInternalObjects: exactly config/istio-crds' CRDs are internal objects, owned
// in every served version, with no example.
func TestBundleInternalObjects(t *testing.T) {
	g := NewWithT(t)
	b := loadBundle(t)
	examples := almExamples(t, b.CSV)

	var want []string
	for _, crd := range readCRDs(t, "config/istio-crds/istio-crds.yaml") {
		want = append(want, crd.Name)
		for _, v := range crd.Spec.Versions {
			if !v.Served {
				continue
			}
			g.Expect(ownedEntry(b.CSV, crd.Name, v.Name)).NotTo(BeNil(), "%s %s is not owned", crd.Name, v.Name)
			g.Expect(examples).NotTo(HaveKey(schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}))
		}
	}
	g.Expect(internalObjects(b)).To(ConsistOf(want))
}

// TestBundleRelatedImages: a mirror of relatedImages carries the operator and every image a
// supported Istio release runs.
func TestBundleRelatedImages(t *testing.T) {
	g := NewWithT(t)
	csv := loadBundle(t).CSV
	images := map[string]string{}
	for _, r := range csv.Spec.RelatedImages {
		g.Expect(images).NotTo(HaveKey(r.Name), "relatedImages repeats %s", r.Name)
		images[r.Name] = r.Image
	}
	g.Expect(images).To(HaveKeyWithValue(bundle.OperatorImageName, csv.Spec.InstallStrategy.StrategySpec.DeploymentSpecs[0].Spec.Template.Spec.Containers[0].Image))
	g.Expect(versions.Supported).NotTo(BeEmpty())
	var listed []string
	for _, image := range images {
		listed = append(listed, image)
	}
	for _, r := range versions.Supported {
		g.Expect(listed).To(ContainElement(r.PilotImage(versions.DefaultHub)), "Istio %s's pilot image", r.Version)
		g.Expect(listed).To(ContainElement(r.ProxyImage(versions.DefaultHub)), "Istio %s's proxyv2 image", r.Version)
	}
}

// TestBundleInstallsLikeKustomize: AllNamespaces only; the objects beside the CSV are the
// rest of config/default (today its Services and the metrics-reader ClusterRole); the
// suggested namespace is config/default's, Pod Security labels included.
func TestBundleInstallsLikeKustomize(t *testing.T) {
	g := NewWithT(t)
	b := loadBundle(t)

	modes := map[operatorsv1alpha1.InstallModeType]bool{}
	for _, m := range b.CSV.Spec.InstallModes {
		modes[m.Type] = m.Supported
	}
	g.Expect(modes).To(Equal(map[operatorsv1alpha1.InstallModeType]bool{
		operatorsv1alpha1.InstallModeTypeOwnNamespace:    false,
		operatorsv1alpha1.InstallModeTypeSingleNamespace: false,
		operatorsv1alpha1.InstallModeTypeMultiNamespace:  false,
		operatorsv1alpha1.InstallModeTypeAllNamespaces:   true,
	}))

	var others []string
	for _, o := range b.Objects {
		switch o.GetKind() {
		case "ClusterServiceVersion", "CustomResourceDefinition":
			continue
		}
		g.Expect(o.GetNamespace()).To(BeEmpty(), "%s %s: OLM picks the namespace", o.GetKind(), o.GetName())
		others = append(others, o.GetKind()+"/"+o.GetName())
	}
	// Everything config/default installs, less what the CSV itself stands for: the CRDs, the
	// namespace (OLM's choice), the Deployment, its service account, that account's bindings
	// and the roles they bind.
	objs := buildDefault(t)
	sa := managerDeployment(t).Spec.Template.Spec.ServiceAccountName
	folded := map[string]bool{"ServiceAccount/" + sa: true}
	for _, o := range objs {
		var b rbacv1.RoleBinding // the fields ClusterRoleBinding shares
		if o.GetKind() != "RoleBinding" && o.GetKind() != "ClusterRoleBinding" {
			continue
		}
		g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(map[string]any{"roleRef": o.Object["roleRef"], "subjects": o.Object["subjects"]}, &b)).To(Succeed())
		if slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool { return s.Kind == "ServiceAccount" && s.Name == sa }) {
			folded[o.GetKind()+"/"+o.GetName()] = true
			folded[b.RoleRef.Kind+"/"+b.RoleRef.Name] = true
		}
	}
	var want []string
	for _, o := range objs {
		id := o.GetKind() + "/" + o.GetName()
		switch o.GetKind() {
		case "CustomResourceDefinition", "Namespace", "Deployment":
			continue
		}
		if !folded[id] {
			want = append(want, id)
		}
	}
	g.Expect(want).NotTo(BeEmpty())
	g.Expect(others).To(ConsistOf(want), "the objects beside the CSV must be config/default's, less what the CSV stands for")

	var ns map[string]any
	g.Expect(json.Unmarshal([]byte(b.CSV.Annotations[bundle.AnnotationSuggestedNamespace]), &ns)).To(Succeed())
	u := unstructured.Unstructured{Object: ns}
	g.Expect(u.GetName()).To(Equal(installNamespace))
	g.Expect(u.GetLabels()).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))

	var scorecard scorecardv1alpha3.Configuration
	g.Expect(yaml.UnmarshalStrict(readRepoFile(t, "bundle/tests/scorecard/config.yaml"), &scorecard)).To(Succeed())
	g.Expect(scorecard.Stages).NotTo(BeEmpty())
}

func internalObjects(b *manifests.Bundle) []string {
	var names []string
	_ = json.Unmarshal([]byte(b.CSV.Annotations[bundle.AnnotationInternalObjects]), &names)
	return names
}

func crdNameFor(b *manifests.Bundle, gvk schema.GroupVersionKind) string {
	for _, crd := range b.V1CRDs {
		if crd.Spec.Group == gvk.Group && crd.Spec.Names.Kind == gvk.Kind {
			return crd.Name
		}
	}
	return ""
}

func ownedEntry(csv *operatorsv1alpha1.ClusterServiceVersion, name, version string) *operatorsv1alpha1.CRDDescription {
	for i, d := range csv.Spec.CustomResourceDefinitions.Owned {
		if d.Name == name && d.Version == version {
			return &csv.Spec.CustomResourceDefinitions.Owned[i]
		}
	}
	return nil
}

func almExamples(t *testing.T, csv *operatorsv1alpha1.ClusterServiceVersion) map[schema.GroupVersionKind][]unstructured.Unstructured {
	t.Helper()
	var objs []map[string]any
	if err := json.Unmarshal([]byte(csv.Annotations[bundle.AnnotationExamples]), &objs); err != nil {
		t.Fatalf("decoding alm-examples: %v", err)
	}
	byGVK := map[schema.GroupVersionKind][]unstructured.Unstructured{}
	for _, o := range objs {
		u := unstructured.Unstructured{Object: o}
		byGVK[u.GroupVersionKind()] = append(byGVK[u.GroupVersionKind()], u)
	}
	return byGVK
}

// validateAgainstSchema checks an object as the API server would before CEL: OpenAPI
// validation, and no field the structural schema would prune.
func validateAgainstSchema(t *testing.T, obj unstructured.Unstructured, s *apiextensionsv1.JSONSchemaProps) []string {
	t.Helper()
	var internal apiextensions.JSONSchemaProps
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(s, &internal, nil); err != nil {
		t.Fatalf("converting the schema: %v", err)
	}
	validator, _, err := apiservervalidation.NewSchemaValidator(&internal)
	if err != nil {
		t.Fatalf("building the schema validator: %v", err)
	}
	var problems []string
	for _, e := range apiservervalidation.ValidateCustomResource(field.NewPath(""), obj.UnstructuredContent(), validator) {
		problems = append(problems, e.Error())
	}
	structural, err := structuralschema.NewStructural(&internal)
	if err != nil {
		t.Fatalf("structural schema: %v", err)
	}
	copied := obj.DeepCopy().UnstructuredContent()
	for _, p := range pruning.PruneWithOptions(copied, structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}) {
		problems = append(problems, "unknown field "+p)
	}
	return problems
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}
