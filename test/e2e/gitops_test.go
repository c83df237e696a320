package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/metadata"
	"k8s.io/utils/ptr"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

// What Argo CD puts on what it syncs (label tracking, and annotation tracking, the default
// since Argo CD 3), and the field manager of its server-side apply.
const (
	argoApp             = "meshplane-samples"
	argoInstanceLabel   = "app.kubernetes.io/instance"
	argoTrackingIDAnnot = "argocd.argoproj.io/tracking-id"
	argoFieldManager    = "argocd-controller"
	// argoDestination is the Application's destination namespace, for samples without one.
	argoDestination = "gitops-samples"
)

// samples reads every object of config/samples, as listed in its kustomization, marked as
// Argo CD marks what it syncs.
func samples() []*unstructured.Unstructured {
	dir := filepath.Join(cluster.Root, "config", "samples")
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	Expect(err).NotTo(HaveOccurred())
	var k types.Kustomization
	Expect(yaml.Unmarshal(raw, &k)).To(Succeed())
	var out []*unstructured.Unstructured
	for _, file := range k.Resources {
		raw, err := os.ReadFile(filepath.Join(dir, file))
		Expect(err).NotTo(HaveOccurred())
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
				break
			} else {
				Expect(err).NotTo(HaveOccurred(), file)
			}
			if len(u.Object) == 0 {
				continue
			}
			namespaced, err := k8s.IsObjectNamespaced(u)
			Expect(err).NotTo(HaveOccurred())
			if namespaced && u.GetNamespace() == "" {
				u.SetNamespace(argoDestination)
			}
			labels := u.GetLabels()
			if labels == nil {
				labels = map[string]string{}
			}
			labels[argoInstanceLabel] = argoApp
			u.SetLabels(labels)
			annotations := u.GetAnnotations()
			if annotations == nil {
				annotations = map[string]string{}
			}
			gvk := u.GroupVersionKind()
			annotations[argoTrackingIDAnnot] = fmt.Sprintf("%s:%s/%s:%s/%s", argoApp, gvk.Group, gvk.Kind, u.GetNamespace(), u.GetName())
			u.SetAnnotations(annotations)
			out = append(out, u)
		}
	}
	Expect(out).NotTo(BeEmpty())
	return out
}

// applyAsArgoCD server-side applies a copy of the manifest as Argo CD's controller does and
// returns what the API server answered.
func applyAsArgoCD(manifest *unstructured.Unstructured, opts ...client.ApplyOption) *unstructured.Unstructured {
	u := manifest.DeepCopy()
	ExpectWithOffset(1, k8s.Apply(ctx(), client.ApplyConfigurationFromUnstructured(u),
		append([]client.ApplyOption{client.FieldOwner(argoFieldManager)}, opts...)...)).To(Succeed())
	return u
}

// prerequisites creates what a sample needs that would be synced alongside it: its
// namespace and, for a Canary, the Deployment it rolls out.
func prerequisites(u *unstructured.Unstructured) {
	if ns := u.GetNamespace(); ns != "" {
		err := k8s.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		if !apierrors.IsAlreadyExists(err) {
			Expect(err).NotTo(HaveOccurred())
		}
	}
	if u.GetKind() != "Canary" {
		return
	}
	name, _, _ := unstructured.NestedString(u.Object, "spec", "targetRef", "name")
	Expect(name).NotTo(BeEmpty())
	port, _, _ := unstructured.NestedInt64(u.Object, "spec", "service", "port")
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: u.GetNamespace()},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "nginx:1.27",
					Ports: []corev1.ContainerPort{{ContainerPort: int32(port)}}}}},
			},
		},
	}
	err := k8s.Create(ctx(), d)
	if !apierrors.IsAlreadyExists(err) {
		Expect(err).NotTo(HaveOccurred())
	}
	DeferCleanup(func() { Expect(client.IgnoreNotFound(k8s.Delete(ctx(), d))).To(Succeed()) })
}

// reconciles is how many reconciles the controller of a kind has run, from the operator's
// own controller-runtime metrics (it runs in this process).
func reconciles(kind string) float64 {
	families, err := crmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	total := 0.0
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == strings.ToLower(kind) {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

// trackedObjects lists, from the API server, every object of every resource that carries
// Argo CD's tracking label value or annotation.
func trackedObjects() []string {
	disco, err := discovery.NewDiscoveryClientForConfig(cluster.Env.Config)
	Expect(err).NotTo(HaveOccurred())
	meta, err := metadata.NewForConfig(cluster.Env.Config)
	Expect(err).NotTo(HaveOccurred())
	lists, err := disco.ServerPreferredResources()
	Expect(err).NotTo(HaveOccurred())
	var out []string
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		Expect(err).NotTo(HaveOccurred())
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !containsVerb(r.Verbs, "list") {
				continue
			}
			items, err := meta.Resource(gv.WithResource(r.Name)).List(ctx(), metav1.ListOptions{})
			Expect(err).NotTo(HaveOccurred(), r.Name)
			for _, it := range items.Items {
				_, annotated := it.Annotations[argoTrackingIDAnnot]
				if annotated || it.Labels[argoInstanceLabel] == argoApp {
					out = append(out, r.Kind+" "+client.ObjectKeyFromObject(&it).String())
				}
			}
		}
	}
	return out
}

func containsVerb(verbs metav1.Verbs, v string) bool {
	for _, x := range verbs {
		if x == v {
			return true
		}
	}
	return false
}

// kubectlDiff runs `kubectl diff --server-side` on the manifest, as Argo CD's server-side
// diff and a person checking by hand would, and expects it to report nothing (exit 0).
func kubectlDiff(manifest *unstructured.Unstructured) {
	raw, err := yaml.Marshal(manifest.Object)
	Expect(err).NotTo(HaveOccurred())
	file := filepath.Join(GinkgoT().TempDir(), "manifest.yaml")
	Expect(os.WriteFile(file, raw, 0o600)).To(Succeed())
	cmd := exec.Command(filepath.Join(cluster.Env.AssetsDir, "kubectl"), "--kubeconfig", cluster.Env.Kubeconfig,
		"diff", "--server-side", "--field-manager", argoFieldManager, "-f", file)
	out, err := cmd.CombinedOutput()
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "kubectl diff found a difference (exit 1) or failed:\n%s", out)
	ExpectWithOffset(1, string(out)).To(BeEmpty())
}

// fieldManagers lists the managers of an object's fields as "<manager>/<operation>/<subresource>".
func fieldManagers(u *unstructured.Unstructured) []string {
	var out []string
	for _, m := range u.GetManagedFields() {
		out = append(out, m.Manager+"/"+string(m.Operation)+"/"+m.Subresource)
	}
	return out
}

// Issue 7: no drift by construction. Argo CD applies what Git holds; the operator must
// never write into it (no defaults in spec, no labels or annotations), and never copy Argo
// CD's tracking marks onto what it creates, or Argo CD would claim those objects too.
var _ = Describe("GitOps: the samples synced as Argo CD syncs them", func() {
	It("show no drift after a stretch of reconciles, and leave Argo CD's marks on the samples alone", func() {
		manifests := samples()
		for _, m := range manifests {
			prerequisites(m)
		}
		first := make([]*unstructured.Unstructured, len(manifests))
		for i, m := range manifests {
			first[i] = applyAsArgoCD(m)
			DeferCleanup(func() {
				Expect(client.IgnoreNotFound(k8s.Delete(ctx(), first[i].DeepCopy()))).To(Succeed())
				if first[i].GetKind() == "MeshControlPlane" {
					deleteMCP(first[i].GetName())
				}
			})
		}

		By("waiting until kstatus reads every sample as Current")
		live := make([]*unstructured.Unstructured, len(manifests))
		Eventually(func(g Gomega) {
			for i, m := range first {
				live[i] = getUnstructured(g, m.GetKind(), m.GetNamespace(), m.GetName())
				res, err := kstatus.Compute(live[i])
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(res.Status).To(Equal(kstatus.CurrentStatus), "%s %s: %s", m.GetKind(), m.GetName(), res.Message)
			}
		}, 2*readyTimeout, poll).Should(Succeed())

		By("letting the operator reconcile for a while: informers resync every " + syncPeriod.String())
		before := map[string]float64{}
		for _, m := range first {
			before[m.GetKind()] = reconciles(m.GetKind())
		}
		since := time.Now()
		Consistently(func(g Gomega) {
			for i, m := range first {
				got := getUnstructured(g, m.GetKind(), m.GetNamespace(), m.GetName())
				g.Expect(got.GetResourceVersion()).To(Equal(live[i].GetResourceVersion()), "%s %s was written", m.GetKind(), m.GetName())
			}
		}, 3*syncPeriod+5*time.Second, time.Second).Should(Succeed())
		Expect(operatorWrites(since)).To(BeEmpty(), "the steady state sends no writes")
		for kind, n := range before {
			Expect(reconciles(kind)-n).To(BeNumerically(">=", 3), "%s reconciles in between", kind)
		}

		for i, m := range manifests {
			kind, name := m.GetKind(), m.GetName()
			got := live[i]

			By(kind + " " + name + ": the operator wrote nothing but status")
			Expect(got.GetGeneration()).To(BeEquivalentTo(1), "nothing rewrote the spec")
			for _, f := range fieldManagers(got) {
				if !strings.HasSuffix(f, "/status") {
					Expect(f).To(Equal(argoFieldManager+"/Apply/"), "only Argo CD manages %s's spec and metadata", kind)
				}
			}
			Expect(got.Object["spec"]).To(Equal(first[i].Object["spec"]), "the spec is what the first apply left")
			Expect(got.GetLabels()).To(Equal(m.GetLabels()))
			Expect(got.GetAnnotations()).To(Equal(m.GetAnnotations()))

			By(kind + " " + name + ": a server-side dry run finds nothing to change (kubectl diff --server-side)")
			dry := applyAsArgoCD(m, client.DryRunAll)
			Expect(dry.Object).To(Equal(got.Object))
			kubectlDiff(m)

			By(kind + " " + name + ": the second apply changes nothing")
			second := applyAsArgoCD(m)
			Expect(second.GetResourceVersion()).To(Equal(got.GetResourceVersion()))
			Expect(second.GetManagedFields()).To(Equal(got.GetManagedFields()))
			Expect(second.Object).To(Equal(got.Object))
		}

		By("finding Argo CD's tracking marks on the samples only, never on what the operator created")
		var want []string
		for _, m := range first {
			want = append(want, m.GetKind()+" "+client.ObjectKeyFromObject(m).String())
		}
		Expect(trackedObjects()).To(ConsistOf(want))
	})
})
