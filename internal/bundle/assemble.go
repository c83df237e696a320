package bundle

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/blang/semver/v4"
	"github.com/operator-framework/api/pkg/lib/version"
	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshplane/meshplane/internal/versions"
)

// CSV annotations the generator owns.
const (
	AnnotationExamples        = "alm-examples"
	AnnotationInternalObjects = "operators.operatorframework.io/internal-objects"
	AnnotationContainerImage  = "containerImage"
	// AnnotationSuggestedNamespace carries config/default's Namespace (with its Pod Security
	// labels) to consoles that offer to create the install namespace.
	AnnotationSuggestedNamespace = "operatorframework.io/suggested-namespace-template"
)

// OperatorImageName is the operator's entry in relatedImages.
const OperatorImageName = "meshplane"

// shippedKinds are the kinds a registry+v1 bundle may carry beside the CSV and CRDs, which
// OLM creates in the install namespace (or cluster-wide for cluster-scoped kinds).
var shippedKinds = []string{
	"ClusterRole", "ClusterRoleBinding", "ConfigMap", "ConsoleCLIDownload", "ConsoleLink",
	"ConsoleQuickStart", "ConsoleYAMLSample", "NetworkPolicy", "PodDisruptionBudget",
	"PriorityClass", "PrometheusRule", "Role", "RoleBinding", "Secret", "Service",
	"ServiceAccount", "ServiceMonitor", "VerticalPodAutoscaler",
}

// sources sorts config/manifests' objects by what the bundle does with them.
type sources struct {
	base        *unstructured.Unstructured
	scorecard   *unstructured.Unstructured
	namespace   *unstructured.Unstructured
	deployments []*unstructured.Unstructured
	crds        []*apiextensionsv1.CustomResourceDefinition
	crdObjects  map[string]*unstructured.Unstructured // by name, as kustomize built them
	// roles and bindings, keyed by kind/namespace/name.
	roles, bindings map[string]*unstructured.Unstructured
	// others ship beside the CSV unless the install strategy consumes them.
	others []*unstructured.Unstructured
}

func assemble(in inputs, opts Options) ([]File, error) {
	internal := in.internalCRDs
	// Samples are examples or nothing; the rest is the install.
	var samples, install []*unstructured.Unstructured
	for _, o := range in.objects {
		if in.samples[key(o)] {
			samples = append(samples, o)
		} else {
			install = append(install, o)
		}
	}
	src, err := route(install)
	if err != nil {
		return nil, err
	}
	if src.base == nil {
		return nil, fmt.Errorf("%s yields no ClusterServiceVersion: add the CSV base (bases/<package>.clusterserviceversion.yaml) to its kustomization", ManifestsDir)
	}
	csv := &operatorsv1alpha1.ClusterServiceVersion{}
	if err := fromUnstructured(src.base, csv); err != nil {
		return nil, fmt.Errorf("the CSV base: %w", err)
	}
	if err := checkBase(csv); err != nil {
		return nil, err
	}
	pkg := csv.Name

	// The operator's Deployment and its RBAC: the install strategy.
	if len(src.deployments) != 1 {
		return nil, fmt.Errorf("%s yields %d Deployments; the bundle expects exactly one, the operator's", ManifestsDir, len(src.deployments))
	}
	deploy := &appsv1.Deployment{}
	if err := fromUnstructured(src.deployments[0], deploy); err != nil {
		return nil, fmt.Errorf("the operator Deployment: %w", err)
	}
	if err := setOperatorImage(deploy, opts.Image); err != nil {
		return nil, err
	}
	strategy, consumed, err := installStrategy(deploy, src)
	if err != nil {
		return nil, err
	}

	// CRDs: every one is owned; config/istio-crds' ones are internal objects.
	var files []File
	owned, ownedGVKs, err := ownedCRDs(src.crds, internal)
	if err != nil {
		return nil, err
	}
	for _, crd := range src.crds {
		data, err := marshal(src.crdObjects[crd.Name].Object)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: manifestPath(crd.Spec.Group + "_" + crd.Spec.Names.Plural), Data: data})
	}

	// Examples: the samples of meshplane's own kinds. Other samples (a demo workload beside a
	// Canary) are not part of the install.
	var examples []*unstructured.Unstructured
	for _, o := range samples {
		switch crd := ownedGVKs[o.GroupVersionKind()]; {
		case crd == "":
			// Not one of the bundle's kinds: stays out.
		case internal[crd]:
			return nil, fmt.Errorf("%s holds a %s %q, an example of an internal object; alm-examples are for meshplane's own kinds", SamplesDir, o.GetKind(), o.GetName())
		default:
			examples = append(examples, o)
		}
	}

	// The rest ships beside the CSV, if OLM can ship it.
	var shipped []*unstructured.Unstructured
	for _, o := range src.others {
		gvk := o.GroupVersionKind()
		switch {
		case ownedGVKs[gvk] != "":
			return nil, fmt.Errorf("%s yields a %s %q outside %s: a bundle cannot ship custom resources", ManifestsDir, gvk.Kind, o.GetName(), SamplesDir)
		case consumed[key(o)]:
			// Folded into the install strategy.
		case slices.Contains(shippedKinds, gvk.Kind):
			shipped = append(shipped, o)
		default:
			return nil, fmt.Errorf("%s yields a %s %q, which a bundle cannot ship: OLM installs only %s beside the CSV and CRDs (and the generator turns the operator's Deployment, ServiceAccount and bindings into the CSV's install strategy)",
				ManifestsDir, o.GetKind(), o.GetName(), strings.Join(shippedKinds, ", "))
		}
	}
	for _, o := range shipped {
		o = o.DeepCopy()
		// OLM creates namespaced objects in the namespace the operator is installed in.
		o.SetNamespace("")
		data, err := marshal(o.Object)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: manifestPath(objectFileName(o)), Data: data})
	}
	almExamples, err := exampleAnnotation(examples, owned, internal)
	if err != nil {
		return nil, err
	}

	// The CSV.
	v, err := semver.Parse(opts.Version)
	if err != nil {
		return nil, fmt.Errorf("version %q is not a semantic version: %w", opts.Version, err)
	}
	csv.Name = pkg + ".v" + opts.Version
	csv.Spec.Version = version.OperatorVersion{Version: v}
	csv.Spec.InstallStrategy = *strategy
	csv.Spec.CustomResourceDefinitions.Owned = owned
	csv.Spec.RelatedImages = relatedImages(opts.Image)
	csv.Spec.Icon = []operatorsv1alpha1.Icon{{Data: base64.StdEncoding.EncodeToString(in.icon), MediaType: "image/svg+xml"}}
	annotations := csv.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AnnotationExamples] = almExamples
	annotations[AnnotationContainerImage] = opts.Image
	var internalNames []string
	for _, crd := range src.crds {
		if internal[crd.Name] {
			internalNames = append(internalNames, crd.Name)
		}
	}
	if len(internalNames) > 0 {
		data, err := json.Marshal(internalNames)
		if err != nil {
			return nil, err
		}
		annotations[AnnotationInternalObjects] = string(data)
	}
	if src.namespace != nil {
		ns := map[string]any{
			"apiVersion": "v1",
			"kind":       "Namespace",
			"metadata": map[string]any{
				"name":   src.namespace.GetName(),
				"labels": src.namespace.GetLabels(),
			},
		}
		data, err := json.Marshal(ns)
		if err != nil {
			return nil, err
		}
		annotations[AnnotationSuggestedNamespace] = string(data)
	}
	csv.SetAnnotations(annotations)
	csvData, err := marshalCSV(csv)
	if err != nil {
		return nil, err
	}
	files = append(files, File{Path: manifestPath(pkg + ".clusterserviceversion"), Data: csvData})

	// Metadata, the scorecard configuration and the bundle image's Dockerfile.
	labels := bundleAnnotations(pkg, opts, src.scorecard != nil)
	metadata, err := marshal(map[string]any{"annotations": labels})
	if err != nil {
		return nil, err
	}
	files = append(files, File{Path: OutputDir + "/metadata/annotations.yaml", Data: metadata})
	if src.scorecard != nil {
		data, err := marshal(src.scorecard.Object)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: OutputDir + "/tests/scorecard/config.yaml", Data: data})
	}
	files = append(files, File{Path: Dockerfile, Data: dockerfile(labels, src.scorecard != nil)})
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return files, nil
}

// route sorts each object by kind; the CSV base and scorecard configuration may appear once.
func route(objs []*unstructured.Unstructured) (*sources, error) {
	src := &sources{
		crdObjects: map[string]*unstructured.Unstructured{},
		roles:      map[string]*unstructured.Unstructured{},
		bindings:   map[string]*unstructured.Unstructured{},
	}
	once := func(slot **unstructured.Unstructured, o *unstructured.Unstructured) error {
		if *slot != nil {
			return fmt.Errorf("%s yields two %s objects (%q and %q); the bundle takes one", ManifestsDir, o.GetKind(), (*slot).GetName(), o.GetName())
		}
		*slot = o
		return nil
	}
	for _, o := range objs {
		var err error
		switch gk := o.GroupVersionKind().GroupKind(); gk {
		case schema.GroupKind{Group: operatorsv1alpha1.GroupName, Kind: operatorsv1alpha1.ClusterServiceVersionKind}:
			err = once(&src.base, o)
		case schema.GroupKind{Group: "scorecard.operatorframework.io", Kind: "Configuration"}:
			err = once(&src.scorecard, o)
		case schema.GroupKind{Kind: "Namespace"}:
			err = once(&src.namespace, o)
		case schema.GroupKind{Group: "apps", Kind: "Deployment"}:
			src.deployments = append(src.deployments, o)
		case schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}:
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := fromUnstructured(o, crd); err != nil {
				return nil, fmt.Errorf("CRD %s: %w", o.GetName(), err)
			}
			src.crds = append(src.crds, crd)
			src.crdObjects[crd.Name] = o
		case schema.GroupKind{Group: rbacv1.GroupName, Kind: "Role"}, schema.GroupKind{Group: rbacv1.GroupName, Kind: "ClusterRole"}:
			src.roles[key(o)] = o
			src.others = append(src.others, o)
		case schema.GroupKind{Group: rbacv1.GroupName, Kind: "RoleBinding"}, schema.GroupKind{Group: rbacv1.GroupName, Kind: "ClusterRoleBinding"}:
			src.bindings[key(o)] = o
			src.others = append(src.others, o)
		default:
			src.others = append(src.others, o)
		}
		if err != nil {
			return nil, err
		}
	}
	return src, nil
}

// checkBase refuses a CSV base that sets what the generator computes, so the two cannot
// silently disagree.
func checkBase(csv *operatorsv1alpha1.ClusterServiceVersion) error {
	var set []string
	if len(csv.Spec.InstallStrategy.StrategySpec.DeploymentSpecs) > 0 || csv.Spec.InstallStrategy.StrategyName != "" {
		set = append(set, "spec.install")
	}
	if len(csv.Spec.CustomResourceDefinitions.Owned) > 0 {
		set = append(set, "spec.customresourcedefinitions.owned")
	}
	if len(csv.Spec.RelatedImages) > 0 {
		set = append(set, "spec.relatedImages")
	}
	if len(csv.Spec.Icon) > 0 {
		set = append(set, "spec.icon (the generator embeds "+IconFile+")")
	}
	if !csv.Spec.Version.Equals(semver.Version{}) {
		set = append(set, "spec.version")
	}
	for _, a := range []string{AnnotationExamples, AnnotationInternalObjects, AnnotationContainerImage, AnnotationSuggestedNamespace} {
		if _, ok := csv.GetAnnotations()[a]; ok {
			set = append(set, "metadata.annotations."+a)
		}
	}
	if len(set) > 0 {
		return fmt.Errorf("the CSV base in %s sets fields the generator computes: %s; remove them", ManifestsDir, strings.Join(set, ", "))
	}
	if csv.Name == "" || strings.Contains(csv.Name, ".") {
		return fmt.Errorf("the CSV base in %s must be named after the package (no version): got %q", ManifestsDir, csv.Name)
	}
	return nil
}

// setOperatorImage points the manager container at image: config/manager sets the default
// image with kustomize, and 'make bundle IMG=...' overrides it without editing config/.
func setOperatorImage(d *appsv1.Deployment, image string) error {
	containers := d.Spec.Template.Spec.Containers
	name := d.Spec.Template.Annotations["kubectl.kubernetes.io/default-container"]
	if name == "" && len(containers) == 1 {
		name = containers[0].Name
	}
	for i := range containers {
		if containers[i].Name == name {
			containers[i].Image = image
			return nil
		}
	}
	return fmt.Errorf("Deployment %s: cannot tell the operator's container (annotate kubectl.kubernetes.io/default-container)", d.Name)
}

// installStrategy turns the Deployment and the roles bound to its service account into the
// CSV's deployment strategy. It returns the objects it consumed (the service account, the
// bindings and the bound roles), which do not ship as separate manifests.
func installStrategy(d *appsv1.Deployment, src *sources) (*operatorsv1alpha1.NamedInstallStrategy, map[string]bool, error) {
	sa := d.Spec.Template.Spec.ServiceAccountName
	if sa == "" {
		return nil, nil, fmt.Errorf("Deployment %s sets no serviceAccountName; OLM binds the CSV's permissions to a named service account", d.Name)
	}
	consumed := map[string]bool{}
	saKey := "ServiceAccount/" + d.Namespace + "/" + sa
	found := false
	for _, o := range src.others {
		if key(o) == saKey {
			consumed[saKey] = true
			found = true
		}
	}
	if !found {
		return nil, nil, fmt.Errorf("Deployment %s runs as ServiceAccount %s/%s, which %s does not yield", d.Name, d.Namespace, sa, ManifestsDir)
	}

	var clusterRules, rules []rbacv1.PolicyRule
	for _, k := range sortedKeys(src.bindings) {
		b := src.bindings[k]
		var roleRef rbacv1.RoleRef
		var subjects []rbacv1.Subject
		if b.GetKind() == "ClusterRoleBinding" {
			var crb rbacv1.ClusterRoleBinding
			if err := fromUnstructured(b, &crb); err != nil {
				return nil, nil, fmt.Errorf("ClusterRoleBinding %s: %w", b.GetName(), err)
			}
			roleRef, subjects = crb.RoleRef, crb.Subjects
		} else {
			var rb rbacv1.RoleBinding
			if err := fromUnstructured(b, &rb); err != nil {
				return nil, nil, fmt.Errorf("RoleBinding %s: %w", b.GetName(), err)
			}
			roleRef, subjects = rb.RoleRef, rb.Subjects
		}
		operator := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: d.Namespace}
		if !slices.Contains(subjects, operator) {
			continue // not the operator's: ships as is, if OLM can ship it
		}
		if len(subjects) != 1 {
			return nil, nil, fmt.Errorf("%s %s binds the operator and others; OLM can only grant the CSV's permissions to the operator's service account", b.GetKind(), b.GetName())
		}
		roleNamespace := ""
		if roleRef.Kind == "Role" {
			roleNamespace = b.GetNamespace()
		}
		roleKey := roleRef.Kind + "/" + roleNamespace + "/" + roleRef.Name
		roleObj, ok := src.roles[roleKey]
		if !ok {
			return nil, nil, fmt.Errorf("%s %s refers to %s %s, which %s does not yield", b.GetKind(), b.GetName(), roleRef.Kind, roleRef.Name, ManifestsDir)
		}
		var role rbacv1.ClusterRole // Role and ClusterRole share the rules field
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(map[string]any{"rules": roleObj.Object["rules"]}, &role); err != nil {
			return nil, nil, fmt.Errorf("%s %s: %w", roleRef.Kind, roleRef.Name, err)
		}
		if b.GetKind() == "ClusterRoleBinding" {
			clusterRules = append(clusterRules, role.Rules...)
		} else {
			rules = append(rules, role.Rules...)
		}
		consumed[k] = true
		consumed[roleKey] = true
	}
	if len(clusterRules) == 0 && len(rules) == 0 {
		return nil, nil, fmt.Errorf("no role in %s is bound to the operator's ServiceAccount %s", ManifestsDir, sa)
	}

	spec := operatorsv1alpha1.StrategyDetailsDeployment{
		DeploymentSpecs: []operatorsv1alpha1.StrategyDeploymentSpec{{
			Name:  d.Name,
			Spec:  d.Spec,
			Label: d.Labels,
		}},
	}
	if len(clusterRules) > 0 {
		spec.ClusterPermissions = []operatorsv1alpha1.StrategyDeploymentPermissions{{ServiceAccountName: sa, Rules: clusterRules}}
	}
	if len(rules) > 0 {
		spec.Permissions = []operatorsv1alpha1.StrategyDeploymentPermissions{{ServiceAccountName: sa, Rules: rules}}
	}
	return &operatorsv1alpha1.NamedInstallStrategy{
		StrategyName: operatorsv1alpha1.InstallStrategyNameDeployment,
		StrategySpec: spec,
	}, consumed, nil
}

// ownedCRDs describes every served version of every CRD. It also returns, for each owned
// group/version/kind, the CRD's name.
func ownedCRDs(crds []*apiextensionsv1.CustomResourceDefinition, internal map[string]bool) ([]operatorsv1alpha1.CRDDescription, map[schema.GroupVersionKind]string, error) {
	ordered := slices.Clone(crds)
	// meshplane's own APIs first (the console lists them in this order), then Istio's.
	slices.SortFunc(ordered, func(a, b *apiextensionsv1.CustomResourceDefinition) int {
		if internal[a.Name] != internal[b.Name] {
			if internal[a.Name] {
				return 1
			}
			return -1
		}
		return strings.Compare(a.Name, b.Name)
	})
	var owned []operatorsv1alpha1.CRDDescription
	gvks := map[schema.GroupVersionKind]string{}
	for _, crd := range ordered {
		for _, v := range crd.Spec.Versions {
			if !v.Served {
				continue
			}
			if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				return nil, nil, fmt.Errorf("CRD %s version %s has no schema", crd.Name, v.Name)
			}
			root := v.Schema.OpenAPIV3Schema
			d := operatorsv1alpha1.CRDDescription{
				Name:        crd.Name,
				Version:     v.Name,
				Kind:        crd.Spec.Names.Kind,
				DisplayName: humanize(crd.Spec.Names.Kind),
				Description: root.Description,
			}
			if d.Description == "" {
				// Istio documents its kinds on spec.
				d.Description = root.Properties["spec"].Description
			}
			if d.Description == "" {
				return nil, nil, fmt.Errorf("CRD %s version %s has no description (on the schema or its spec): the console shows it", crd.Name, v.Name)
			}
			if !internal[crd.Name] {
				d.SpecDescriptors, d.StatusDescriptors = descriptors(crd.Spec.Names.Kind, root)
			}
			owned = append(owned, d)
			gvks[schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}] = crd.Name
		}
	}
	return owned, gvks, nil
}

// exampleAnnotation builds alm-examples: every served version of every non-internal owned
// CRD must have exactly the examples config/samples provides, and at least one.
func exampleAnnotation(examples []*unstructured.Unstructured, owned []operatorsv1alpha1.CRDDescription, internal map[string]bool) (string, error) {
	have := map[schema.GroupVersionKind]int{}
	for _, e := range examples {
		have[e.GroupVersionKind()]++
	}
	var missing []string
	for _, d := range owned {
		if internal[d.Name] {
			continue
		}
		group := strings.SplitN(d.Name, ".", 2)[1]
		if have[schema.GroupVersionKind{Group: group, Version: d.Version, Kind: d.Kind}] == 0 {
			missing = append(missing, fmt.Sprintf("%s %s/%s (CRD %s)", d.Kind, group, d.Version, d.Name))
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("%s has no example of %s: add a sample of each to %s and list it in %s/kustomization.yaml (the CSV's alm-examples, which the console offers as a starting point, are built from them)",
			SamplesDir, strings.Join(missing, ", "), SamplesDir, SamplesDir)
	}
	ordered := slices.Clone(examples)
	slices.SortStableFunc(ordered, func(a, b *unstructured.Unstructured) int {
		return strings.Compare(a.GetKind()+"/"+a.GetAPIVersion()+"/"+a.GetName(), b.GetKind()+"/"+b.GetAPIVersion()+"/"+b.GetName())
	})
	objs := make([]map[string]any, len(ordered))
	for i, e := range ordered {
		objs[i] = e.Object
	}
	data, err := json.MarshalIndent(objs, "", "  ")
	if err != nil {
		return "", err
	}
	return string(data), nil
}

// relatedImages lists the operator's image and every image a supported Istio release runs,
// so a disconnected mirror carries everything the operator can deploy.
func relatedImages(operatorImage string) []operatorsv1alpha1.RelatedImage {
	images := []operatorsv1alpha1.RelatedImage{{Name: OperatorImageName, Image: operatorImage}}
	for _, r := range versions.Supported {
		images = append(images,
			operatorsv1alpha1.RelatedImage{Name: "pilot-" + r.Version, Image: r.PilotImage(versions.DefaultHub)},
			operatorsv1alpha1.RelatedImage{Name: "proxyv2-" + r.Version, Image: r.ProxyImage(versions.DefaultHub)},
		)
	}
	return images
}

// objectFileName names a shipped object's manifest like operator-sdk does:
// <name>_<group>_<version>_<kind>, without the group for the core API.
func objectFileName(o *unstructured.Unstructured) string {
	gvk := o.GroupVersionKind()
	parts := []string{o.GetName()}
	if gvk.Group != "" {
		parts = append(parts, gvk.Group)
	}
	parts = append(parts, gvk.Version, strings.ToLower(gvk.Kind))
	return strings.Join(parts, "_")
}

func manifestPath(name string) string { return OutputDir + "/manifests/" + name + ".yaml" }

func key(o *unstructured.Unstructured) string {
	return o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// fromUnstructured decodes strictly: a field the Go type does not know is an error, not a
// silent loss.
func fromUnstructured(u *unstructured.Unstructured, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, into, true)
}
