package manifests

import (
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const (
	installNamespace = "meshplane-system"
	namePrefix       = "meshplane-"
)

// clusterScopedKinds are the cluster-scoped kinds config/default may hold; anything else is
// namespaced and must land in installNamespace.
var clusterScopedKinds = []string{
	"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace",
	"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
}

var defaultBuild struct {
	once sync.Once
	objs []unstructured.Unstructured
	err  error
}

// buildDefault runs kustomize on config/default, once per test binary.
func buildDefault(t *testing.T) []unstructured.Unstructured {
	t.Helper()
	root := repoRoot(t)
	defaultBuild.once.Do(func() {
		resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).
			Run(filesys.MakeFsOnDisk(), filepath.Join(root, "config", "default"))
		if err != nil {
			defaultBuild.err = err
			return
		}
		for _, res := range resources.Resources() {
			data, err := res.AsYAML()
			if err != nil {
				defaultBuild.err = err
				return
			}
			var obj map[string]any
			if err := yaml.Unmarshal(data, &obj); err != nil {
				defaultBuild.err = err
				return
			}
			defaultBuild.objs = append(defaultBuild.objs, unstructured.Unstructured{Object: obj})
		}
	})
	if defaultBuild.err != nil {
		t.Fatalf("kustomize build config/default: %v", defaultBuild.err)
	}
	if len(defaultBuild.objs) == 0 {
		t.Fatalf("kustomize build config/default produced no objects")
	}
	return defaultBuild.objs
}

// findObject returns the single object of kind and name in the build, decoded strictly.
func findObject(t *testing.T, objs []unstructured.Unstructured, kind, name string, into any) {
	t.Helper()
	var found []unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("config/default holds %d %s named %q, want 1", len(found), kind, name)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(found[0].Object, into, true); err != nil {
		t.Fatalf("decoding %s %s: %v", kind, name, err)
	}
}

func TestDefaultNamespaceAndNamePrefix(t *testing.T) {
	g := NewWithT(t)
	objs := buildDefault(t)

	namespaced := 0
	for _, o := range objs {
		id := o.GetKind() + " " + o.GetName()
		if slices.Contains(clusterScopedKinds, o.GetKind()) {
			g.Expect(o.GetNamespace()).To(BeEmpty(), "%s is cluster-scoped but has a namespace", id)
		} else {
			namespaced++
			g.Expect(o.GetNamespace()).To(Equal(installNamespace), "namespace of %s", id)
		}
		// CRD names are fixed by their group and plural; kustomize leaves them alone.
		if o.GetKind() != "CustomResourceDefinition" {
			g.Expect(o.GetName()).To(HavePrefix(namePrefix), "name of %s", id)
		}
	}
	g.Expect(namespaced).To(BeNumerically(">", 0), "config/default holds no namespaced objects")

	var ns corev1.Namespace
	findObject(t, objs, "Namespace", installNamespace, &ns)
	g.Expect(ns.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))
}

// TestDefaultReferencesResolve checks that the prefix and namespace transformers left the
// references between objects consistent: bindings name roles and service accounts that
// ship, and the manager runs as a service account that ships.
func TestDefaultReferencesResolve(t *testing.T) {
	g := NewWithT(t)
	objs := buildDefault(t)

	shipped := map[string]bool{}
	for _, o := range objs {
		shipped[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = true
	}

	bindings := 0
	for _, o := range objs {
		var roleRef rbacv1.RoleRef
		var subjects []rbacv1.Subject
		switch o.GetKind() {
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			findObject(t, objs, o.GetKind(), o.GetName(), &b)
			roleRef, subjects = b.RoleRef, b.Subjects
		case "RoleBinding":
			var b rbacv1.RoleBinding
			findObject(t, objs, o.GetKind(), o.GetName(), &b)
			roleRef, subjects = b.RoleRef, b.Subjects
		default:
			continue
		}
		bindings++
		roleNamespace := ""
		if roleRef.Kind == "Role" {
			roleNamespace = o.GetNamespace()
		}
		g.Expect(shipped).To(HaveKey(roleRef.Kind+"/"+roleNamespace+"/"+roleRef.Name),
			"%s %s refers to a role that does not ship", o.GetKind(), o.GetName())
		g.Expect(subjects).NotTo(BeEmpty(), "%s %s has no subjects", o.GetKind(), o.GetName())
		for _, s := range subjects {
			if s.Kind == "ServiceAccount" {
				g.Expect(shipped).To(HaveKey("ServiceAccount/"+s.Namespace+"/"+s.Name),
					"%s %s binds a service account that does not ship", o.GetKind(), o.GetName())
			}
		}
	}
	g.Expect(bindings).To(BeNumerically(">", 0), "config/default holds no role bindings")

	deployment := managerDeployment(t)
	g.Expect(shipped).To(HaveKey("ServiceAccount/" + installNamespace + "/" + deployment.Spec.Template.Spec.ServiceAccountName))
}

func managerDeployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	findObject(t, buildDefault(t), "Deployment", namePrefix+"controller-manager", &d)
	return &d
}

func TestManagerDeploymentIsRestricted(t *testing.T) {
	g := NewWithT(t)
	pod := managerDeployment(t).Spec.Template

	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	g.Expect(err).NotTo(HaveOccurred())
	results := evaluator.EvaluatePod(
		psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()},
		&pod.ObjectMeta, &pod.Spec)
	g.Expect(results).NotTo(BeEmpty(), "no Pod Security checks ran")
	var forbidden []string
	for _, r := range results {
		if !r.Allowed {
			forbidden = append(forbidden, r.ForbiddenReason+": "+r.ForbiddenDetail)
		}
	}
	g.Expect(forbidden).To(BeEmpty(), "Pod Security restricted forbids the manager pod")
}

func TestManagerContainer(t *testing.T) {
	g := NewWithT(t)
	pod := managerDeployment(t).Spec.Template.Spec

	i := slices.IndexFunc(pod.Containers, func(c corev1.Container) bool { return c.Name == "manager" })
	g.Expect(i).To(BeNumerically(">=", 0), "the manager Deployment has no container named manager")
	c := pod.Containers[i]

	g.Expect(c.LivenessProbe).NotTo(BeNil(), "liveness probe")
	g.Expect(c.ReadinessProbe).NotTo(BeNil(), "readiness probe")
	g.Expect(c.Args).To(ContainElement("--leader-elect"))
	g.Expect(c.SecurityContext).NotTo(BeNil(), "container securityContext")
	g.Expect(c.SecurityContext.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()), "readOnlyRootFilesystem")
	g.Expect(c.Resources.Requests).To(HaveKey(corev1.ResourceCPU), "CPU request")
	g.Expect(c.Resources.Requests).To(HaveKey(corev1.ResourceMemory), "memory request")
	// The images transformer in config/manager must have replaced the placeholder.
	g.Expect(strings.HasPrefix(c.Image, "controller:") || c.Image == "controller").To(BeFalse(),
		"manager image %q is still the kustomize placeholder", c.Image)
}
