package e2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/controllers/meshcontrolplane"
	"github.com/meshplane/meshplane/internal/apply"
)

func validator(g Gomega, name string) *admissionregistrationv1.ValidatingWebhookConfiguration {
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: name}, vwc)).To(Succeed())
	return vwc
}

// managedFieldsOf returns the fields manager owns in an object, as the API server records them.
func managedFieldsOf(o metav1.Object, manager string) string {
	out := ""
	for _, mf := range o.GetManagedFields() {
		if mf.Manager == manager && mf.FieldsV1 != nil {
			out += string(mf.FieldsV1.Raw)
		}
	}
	return out
}

// The operator runs no istiod here: the spec plays istiod's webhook controller (an update of
// caBundle and failurePolicy, as pilot-discovery sends it). The suite in test/istiod shows
// the real istiod doing it.
var _ = Describe("istio-validator", Serial, func() {
	It("fails open until istiod takes caBundle and failurePolicy over, then never writes them", func() {
		const ns = "validated-system"
		m := newMCP("validated", ns, nil)
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(deleteMCP, m.Name)
		m = expectReady(m.Name)
		const name = "istio-validator-validated-system"

		By("rendering it for istiod on loopback, failing open, with no CA")
		vwc := validator(Default, name)
		Expect(metav1.IsControlledBy(vwc, m)).To(BeTrue())
		Expect(vwc.Labels).To(HaveKeyWithValue("istio.io/rev", "default"))
		Expect(vwc.Webhooks).To(HaveLen(2))
		for _, w := range vwc.Webhooks {
			Expect(w.ClientConfig.Service).To(BeNil(), "the istiod Service would resolve off this machine")
			Expect(w.ClientConfig.URL).To(HaveValue(Equal(cluster.IstiodWebhookURL(ns, "") + "/validate")))
			Expect(w.ClientConfig.CABundle).To(BeEmpty())
			Expect(w.FailurePolicy).To(HaveValue(Equal(admissionregistrationv1.Ignore)), w.Name)
		}
		Expect(managedFieldsOf(vwc, meshcontrolplane.FieldOwner)).NotTo(Or(ContainSubstring(`"f:failurePolicy"`), ContainSubstring(`"f:caBundle"`)))
		Expect(managedFieldsOf(vwc, apply.SeedFieldOwner)).NotTo(ContainSubstring(`"f:clientConfig"`))
		Expect(env(istiodDeployment(Default, ns))).To(And(
			HaveKeyWithValue("VALIDATION_WEBHOOK_CONFIG_NAME", name),
			HaveKeyWithValue("ISTIOD_CUSTOM_HOST", "istiod.validated-system.svc,127.0.0.1")))

		By("letting Istio config through while no istiod serves")
		vs := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
			"metadata": map[string]any{"name": "reviews", "namespace": ns},
			"spec":     map[string]any{"hosts": []any{"reviews"}},
		}}
		Expect(k8s.Create(ctx(), vs)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8s.Delete(ctx(), vs))).To(Succeed()) })

		By("istiod patching its CA and switching to Fail, with an update of its own")
		var since time.Time
		Eventually(func(g Gomega) {
			since = time.Now()
			g.Consistently(func() []string { return operatorWrites(since) }, 3*time.Second, 500*time.Millisecond).Should(BeEmpty())
		}, readyTimeout, poll).Should(Succeed())
		since = time.Now()
		reconcilesBefore := reconcileCount()
		ca := []byte("-----BEGIN CERTIFICATE-----\nistiod's root\n-----END CERTIFICATE-----\n")
		patchAsIstiod := func() {
			Eventually(func(g Gomega) {
				vwc := validator(g, name)
				for i := range vwc.Webhooks {
					vwc.Webhooks[i].ClientConfig.CABundle = ca
					vwc.Webhooks[i].FailurePolicy = ptr.To(admissionregistrationv1.Fail)
				}
				g.Expect(k8s.Update(ctx(), vwc, client.FieldOwner("pilot-discovery"))).To(Succeed())
			}, 10*time.Second, poll).Should(Succeed())
		}
		patchAsIstiod()
		takenOver := func(g Gomega) {
			vwc := validator(g, name)
			for _, w := range vwc.Webhooks {
				g.Expect(w.ClientConfig.CABundle).To(Equal(ca))
				g.Expect(w.FailurePolicy).To(HaveValue(Equal(admissionregistrationv1.Fail)))
			}
		}

		By("the operator reconciling, through a resync, without a write")
		Consistently(func(g Gomega) {
			g.Expect(operatorWrites(since)).To(BeEmpty())
			takenOver(g)
		}, syncPeriod+2*time.Second, time.Second).Should(Succeed())
		Expect(reconcileCount()-reconcilesBefore).To(BeNumerically(">=", 1), "istiod's update reconciled")

		By("a spec change applied to the validator, leaving istiod's fields alone")
		patchSpec(m.Name, func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Version = "1.30.3" })
		Eventually(func(g Gomega) {
			g.Expect(validator(g, name).Labels).To(HaveKeyWithValue("app.kubernetes.io/version", "1.30.3"))
		}, readyTimeout, poll).Should(Succeed())
		takenOver(Default)
		expectReady(m.Name)

		By("deleting it: created afresh, failing open again")
		old := validator(Default, name)
		Expect(k8s.Delete(ctx(), old)).To(Succeed())
		Eventually(func(g Gomega) {
			vwc := validator(g, name)
			g.Expect(vwc.UID).NotTo(Equal(old.UID))
			g.Expect(vwc.Webhooks).To(HaveLen(2))
			for _, w := range vwc.Webhooks {
				g.Expect(w.ClientConfig.CABundle).To(BeEmpty())
				g.Expect(w.FailurePolicy).To(HaveValue(Equal(admissionregistrationv1.Ignore)))
			}
		}, readyTimeout, poll).Should(Succeed())
		expectReady(m.Name)
	})
})

// env is the environment of a Deployment's first container (values only).
func env(d *appsv1.Deployment) map[string]string {
	out := map[string]string{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		out[e.Name] = e.Value
	}
	return out
}
