package inject

import (
	"encoding/json"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/inject"
	"github.com/meshplane/meshplane/internal/render"
)

// The response's JSON patch, applied to the pod the API server sent, must give exactly the
// mutated pod, whether the pod had labels and annotations or not.
func TestPatchProducesTheInjectedPod(t *testing.T) {
	cfg, err := render.InjectionConfigFor(&meshv1alpha1.MeshControlPlane{})
	if err != nil {
		t.Fatal(err)
	}
	pods := map[string]*corev1.Pod{
		"bare": {
			ObjectMeta: metav1.ObjectMeta{GenerateName: "web-7d4b9c-", Namespace: "shop"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:1"}}},
		},
		"labelled": {
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop",
				Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"team": "a"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:1",
				Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
		},
	}
	for name, pod := range pods {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			raw, err := json.Marshal(pod)
			g.Expect(err).NotTo(HaveOccurred())
			out, injected, err := inject.Inject(pod.DeepCopy(), "shop", cfg)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(injected).To(BeTrue())

			req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{Object: runtime.RawExtension{Raw: raw}}}
			resp := patch(req, pod, out)
			g.Expect(resp.Allowed).To(BeTrue())
			ops, err := json.Marshal(resp.Patches)
			g.Expect(err).NotTo(HaveOccurred())
			p, err := jsonpatch.DecodePatch(ops)
			g.Expect(err).NotTo(HaveOccurred())
			patched, err := p.Apply(raw)
			g.Expect(err).NotTo(HaveOccurred())

			got := &corev1.Pod{}
			g.Expect(json.Unmarshal(patched, got)).To(Succeed())
			want, _ := json.Marshal(out)
			wantPod := &corev1.Pod{}
			g.Expect(json.Unmarshal(want, wantPod)).To(Succeed())
			g.Expect(got).To(Equal(wantPod))
		})
	}
}

// The config is resolved once per generation: a spec change (a new generation) is seen at
// once, an unchanged MeshControlPlane costs nothing.
func TestConfigFollowsGeneration(t *testing.T) {
	g := NewWithT(t)
	h := &Handler{}
	mcp := &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "default", UID: "u1", Generation: 1}}
	first, err := h.config(mcp)
	g.Expect(err).NotTo(HaveOccurred())
	again, err := h.config(mcp.DeepCopy())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again).To(BeIdenticalTo(first))

	changed := mcp.DeepCopy()
	changed.Generation = 2
	changed.Spec.Version = "1.29.6"
	next, err := h.config(changed)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(next.Version).To(Equal("1.29.6"))
	g.Expect(first.Version).To(Equal("1.31.1"), "a cached config is never modified")
}
