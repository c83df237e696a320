//go:build istiod

package istiod

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/controllers/meshcontrolplane"
)

// virtualService is a VirtualService of the revision val routing to reviews with the given
// weight (istiod rejects a negative one; the CRD's schema does not).
func virtualService(name string, weight int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
		"metadata": map[string]any{"name": name, "namespace": "val-system",
			// Only the revision's own validator sees it (a default revision's ignores it).
			"labels": map[string]any{"istio.io/rev": "val"}},
		"spec": map[string]any{"hosts": []any{"reviews"}, "http": []any{map[string]any{
			"route": []any{map[string]any{"destination": map[string]any{"host": "reviews"}, "weight": weight}}}}},
	}}
}

var _ = Describe("istiod's config validation through the operator's istio-validator", func() {
	It("takes caBundle and failurePolicy over from the operator and rejects invalid config at the API server", func() {
		m := &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "validated"}}
		m.Spec.Namespace, m.Spec.Revision = "val-system", "val"
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(m), m)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(m.Status.Conditions, meshv1alpha1.ConditionReady)).To(BeTrue())
		}, timeout, poll).Should(Succeed())

		By("failing open before istiod serves")
		vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		key := client.ObjectKey{Name: "istio-validator-val-val-system"}
		Expect(k8s.Get(ctx(), key, vwc)).To(Succeed())
		Expect(vwc.Webhooks).To(HaveLen(1))
		Expect(vwc.Webhooks[0].FailurePolicy).To(HaveValue(Equal(admissionregistrationv1.Ignore)))
		Expect(vwc.Webhooks[0].ClientConfig.CABundle).To(BeEmpty())

		i := startIstiod("val-system", "istiod-val")
		Eventually(i.ready, timeout, poll).Should(Succeed(), func() string { return i.log.String() })

		By("istiod patching in its root CA, then switching to Fail once its dry run of invalid config is rejected")
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), key, vwc)).To(Succeed())
			for _, w := range vwc.Webhooks {
				g.Expect(w.ClientConfig.CABundle).NotTo(BeEmpty())
				g.Expect(w.FailurePolicy).To(HaveValue(Equal(admissionregistrationv1.Fail)))
			}
		}, timeout, poll).Should(Succeed(), func() string { return i.log.String() })
		// The bundle is istiod's root, which signed the serving certificate the API server
		// has just verified for 127.0.0.1 (ISTIOD_CUSTOM_HOST).
		root := &corev1.ConfigMap{}
		Eventually(func() error {
			return k8s.Get(ctx(), client.ObjectKey{Namespace: "val-system", Name: "istio-ca-root-cert"}, root)
		}, timeout, poll).Should(Succeed())
		Expect(string(vwc.Webhooks[0].ClientConfig.CABundle)).To(Equal(root.Data["root-cert.pem"]))

		By("the operator reconciling again without taking the fields back")
		rv := vwc.ResourceVersion
		Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(m), m)).To(Succeed())
		m.Annotations = map[string]string{"touch": "1"}
		Expect(k8s.Update(ctx(), m)).To(Succeed())
		Consistently(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), key, vwc)).To(Succeed())
			g.Expect(vwc.ResourceVersion).To(Equal(rv))
		}, 3*time.Second, poll).Should(Succeed())
		for _, mf := range vwc.ManagedFields {
			if mf.Manager == meshcontrolplane.FieldOwner {
				Expect(string(mf.FieldsV1.Raw)).NotTo(ContainSubstring("caBundle"))
				Expect(string(mf.FieldsV1.Raw)).NotTo(ContainSubstring("failurePolicy"))
			}
		}

		By("the API server rejecting an invalid VirtualService with istiod's reason")
		err := k8s.Create(ctx(), virtualService("invalid", -10))
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring(`admission webhook "rev.validation.istio.io" denied the request: configuration is invalid: weight -10 < 0`))
		Expect(apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKey{Namespace: "val-system", Name: "invalid"}, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "networking.istio.io/v1", "kind": "VirtualService"}}))).To(BeTrue())

		By("and admitting a valid one")
		Expect(k8s.Create(ctx(), virtualService("valid", 100))).To(Succeed())
	})
})
