package kubeinject

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/inject"
	"github.com/meshplane/meshplane/internal/render"
)

func config(t *testing.T) *inject.Config {
	t.Helper()
	cfg, err := render.InjectionConfigFor(&meshv1alpha1.MeshControlPlane{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func decodeAll(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			break
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
	return out
}

func podSpecAt(t *testing.T, u *unstructured.Unstructured, path ...string) (*corev1.PodTemplateSpec, bool) {
	t.Helper()
	raw, found, err := unstructured.NestedMap(u.Object, path...)
	if err != nil || !found {
		return nil, false
	}
	tpl := &corev1.PodTemplateSpec{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, tpl); err != nil {
		t.Fatal(err)
	}
	return tpl, true
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestManifests(t *testing.T) {
	g := NewWithT(t)
	in, err := os.ReadFile("testdata/workloads.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	var out bytes.Buffer
	g.Expect(Manifests(bytes.NewReader(in), &out, config(t), "default")).To(Succeed())
	docs := decodeAll(t, out.Bytes())
	g.Expect(docs).To(HaveLen(4), "one document out per document in")

	// A Service passes through unchanged.
	orig := decodeAll(t, in)
	g.Expect(docs[0].Object).To(Equal(orig[0].Object))

	// A Deployment's template is injected.
	tpl, ok := podSpecAt(t, docs[1], "spec", "template")
	g.Expect(ok).To(BeTrue())
	g.Expect(names(tpl.Spec.Containers)).To(ContainElements("web", "istio-proxy"))
	g.Expect(names(tpl.Spec.InitContainers)).To(Equal([]string{"istio-init"}))
	g.Expect(tpl.Annotations).To(HaveKey("sidecar.istio.io/status"))
	g.Expect(tpl.Labels).To(HaveKeyWithValue("app", "web"))
	g.Expect(tpl.CreationTimestamp.IsZero()).To(BeTrue())
	replicas, _, _ := unstructured.NestedFieldNoCopy(docs[1].Object, "spec", "replicas")
	g.Expect(replicas).To(BeEquivalentTo(2), "the rest of the workload is untouched")

	// So is a CronJob's job template.
	tpl, ok = podSpecAt(t, docs[2], "spec", "jobTemplate", "spec", "template")
	g.Expect(ok).To(BeTrue())
	g.Expect(names(tpl.Spec.Containers)).To(ContainElement("istio-proxy"))

	// And the items of a List, honouring opt-outs.
	items, _, _ := unstructured.NestedSlice(docs[3].Object, "items")
	g.Expect(items).To(HaveLen(2))
	pod := &corev1.Pod{}
	g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(items[0].(map[string]any), pod)).To(Succeed())
	g.Expect(names(pod.Spec.Containers)).To(ContainElement("istio-proxy"))
	g.Expect(items[0].(map[string]any)).NotTo(HaveKey("status"))
	db := &unstructured.Unstructured{Object: items[1].(map[string]any)}
	tpl, _ = podSpecAt(t, db, "spec", "template")
	g.Expect(names(tpl.Spec.Containers)).To(Equal([]string{"db"}), "sidecar.istio.io/inject=false is honoured")
}

// The offline output is what the webhook would produce: both call inject.Inject with the
// same config, so a pod built from the injected template equals the webhook's pod.
func TestSameAsWebhook(t *testing.T) {
	g := NewWithT(t)
	cfg := config(t)
	in, _ := os.ReadFile("testdata/workloads.yaml")
	var out bytes.Buffer
	g.Expect(Manifests(bytes.NewReader(in), &out, cfg, "default")).To(Succeed())
	offline, _ := podSpecAt(t, decodeAll(t, out.Bytes())[1], "spec", "template")

	src, _ := podSpecAt(t, decodeAll(t, in)[1], "spec", "template")
	webhookPod, injected, err := inject.Inject(&corev1.Pod{ObjectMeta: src.ObjectMeta, Spec: src.Spec}, "shop", cfg)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(injected).To(BeTrue())
	g.Expect(cmp.Diff(webhookPod.Spec, offline.Spec)).To(BeEmpty())
}

func TestIdempotent(t *testing.T) {
	g := NewWithT(t)
	in, _ := os.ReadFile("testdata/workloads.yaml")
	var once, twice bytes.Buffer
	g.Expect(Manifests(bytes.NewReader(in), &once, config(t), "default")).To(Succeed())
	g.Expect(Manifests(bytes.NewReader(once.Bytes()), &twice, config(t), "default")).To(Succeed())
	g.Expect(twice.String()).To(Equal(once.String()), "already-injected templates are left as they are")
}

func TestBadAnnotationNamesTheDocument(t *testing.T) {
	g := NewWithT(t)
	in := `apiVersion: v1
kind: Pod
metadata:
  name: bad
  annotations:
    sidecar.istio.io/proxyCPU: lots
spec:
  containers:
  - name: app
    image: x
`
	err := Manifests(strings.NewReader(in), &bytes.Buffer{}, config(t), "default")
	g.Expect(err).To(MatchError(ContainSubstring("document 1 (Pod bad)")))
	g.Expect(err).To(MatchError(ContainSubstring(`sidecar.istio.io/proxyCPU: invalid value "lots"`)))
}
