package e2e

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/argocdhealth"
	"github.com/meshplane/meshplane/internal/operator"
)

// verdict is what kstatus and the shipped Argo CD check make of an object as the API server
// serves it, as "<kstatus>/<Argo CD>".
func verdict(g Gomega, u *unstructured.Unstructured) string {
	res, err := kstatus.Compute(u)
	g.Expect(err).NotTo(HaveOccurred())
	h, err := argocdhealth.Check(u)
	g.Expect(err).NotTo(HaveOccurred())
	return string(res.Status) + "/" + h.Status
}

func getUnstructured(g Gomega, kind, namespace, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(meshv1alpha1.GroupVersion.WithKind(kind))
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: namespace, Name: name}, u)).To(Succeed())
	return u
}

var _ = Describe("kstatus and Argo CD health", func() {
	It("reads a new MeshControlPlane as InProgress until it is Ready, then as Current", func() {
		wc, err := client.NewWithWatch(cluster.Env.Config, client.Options{Scheme: operator.Scheme()})
		Expect(err).NotTo(HaveOccurred())
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(meshv1alpha1.GroupVersion.WithKind("MeshControlPlaneList"))
		w, err := wc.Watch(ctx(), list, client.MatchingFields{"metadata.name": "kstatus"})
		Expect(err).NotTo(HaveOccurred())
		defer w.Stop()

		// Unstructured, so the create response is kept as served (the typed status would
		// drop an observedGeneration of 0).
		created, err := argocdhealth.ToUnstructured(newMCP("kstatus", "kstatus-system", nil))
		Expect(err).NotTo(HaveOccurred())
		delete(created.Object, "status")
		Expect(k8s.Create(ctx(), created)).To(Succeed())
		DeferCleanup(deleteMCP, created.GetName())
		Expect(created.Object).To(HaveKeyWithValue("status", HaveKeyWithValue("observedGeneration", BeEquivalentTo(0))),
			"the schema defaults the status, so nothing reads the new object as done")
		Expect(verdict(Default, created)).To(Equal("InProgress/Progressing"))

		By("watching every state the API server serves until Ready")
		var seen []string
		deadline := time.After(readyTimeout)
	watching:
		for {
			select {
			case ev, ok := <-w.ResultChan():
				Expect(ok).To(BeTrue(), "the watch ended early")
				Expect(ev.Type).To(BeElementOf(watch.Added, watch.Modified))
				u := ev.Object.(*unstructured.Unstructured)
				v := verdict(Default, u)
				seen = append(seen, v)
				conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
				for _, c := range conds {
					if c := c.(map[string]any); c["type"] == meshv1alpha1.ConditionReady && c["status"] == string(metav1.ConditionTrue) {
						Expect(v).To(Equal("Current/Healthy"))
						break watching
					}
				}
				Expect(v).To(Equal("InProgress/Progressing"), "before Ready, after %v", seen)
			case <-deadline:
				Fail("not Ready in time; verdicts so far: " + strings.Join(seen, ", "))
			}
		}
		GinkgoWriter.Printf("kstatus/Argo CD verdicts, one per state served: %s\n", strings.Join(seen, ", "))
		Expect(seen[0]).To(Equal("InProgress/Progressing"), "the first state served is the unseen object")
		Expect(len(seen)).To(BeNumerically(">=", 2))
		Expect(verdict(Default, getUnstructured(Default, "MeshControlPlane", "", "kstatus"))).To(Equal("Current/Healthy"))
	})

	It("reads a MeshControlPlane stalled on a later generation as Failed, and Current once fixed", func() {
		m := newMCP("kstall", "kstall-system", nil)
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(deleteMCP, m.Name)
		expectReady(m.Name)

		By("changing the revision to one whose ConfigMap someone else owns")
		foreign := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio-blue", Namespace: "kstall-system"}}
		Expect(k8s.Create(ctx(), foreign)).To(Succeed())
		patchSpec(m.Name, func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Revision = "blue" })
		Eventually(func(g Gomega) {
			u := getUnstructured(g, "MeshControlPlane", "", m.Name)
			g.Expect(u.GetGeneration()).To(BeEquivalentTo(2))
			g.Expect(verdict(g, u)).To(Equal("Failed/Degraded"))
			h, err := argocdhealth.Check(u)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(h.Message).To(HavePrefix(meshv1alpha1.ReasonResourceConflict + ": ConfigMap kstall-system/istio-blue already exists"))
		}, readyTimeout, poll).Should(Succeed())

		By("removing the foreign object")
		Expect(k8s.Delete(ctx(), foreign)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(verdict(g, getUnstructured(g, "MeshControlPlane", "", m.Name))).To(Equal("Current/Healthy"))
		}, readyTimeout, poll).Should(Succeed())
	})
})
