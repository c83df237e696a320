//go:build istiod

package istiod

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/controllers/meshcontrolplane"
)

// virtualServiceReview is an AdmissionReview creating a VirtualService with the given spec.
func virtualServiceReview(spec map[string]any) []byte {
	obj, _ := json.Marshal(map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
		"metadata": map[string]any{"name": "reviews", "namespace": "default"},
		"spec":     spec,
	})
	review, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("review-1"),
			Kind:      metav1.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"},
			Resource:  metav1.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"},
			Name:      "reviews",
			Namespace: "default",
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: obj},
		},
	})
	return review
}

var _ = Describe("istiod's config validation through the operator's webhook configuration", func() {
	It("has istiod own caBundle and failurePolicy, and the operator leave them alone", func() {
		// It passed against the real istiod with the configuration rendered; rendering is
		// held back until the configuration is created with failurePolicy Ignore (see
		// render.validatorWebhook). Remove this line when Objects renders it.
		Skip("istio-validator is not rendered yet: it needs a failurePolicy=Ignore bootstrap (issue #4)")
		m := &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "validated"}}
		m.Spec.Namespace, m.Spec.Revision = "val-system", "val"
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(m), m)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(m.Status.Conditions, meshv1alpha1.ConditionReady)).To(BeTrue())
		}, timeout, poll).Should(Succeed())

		i := startIstiod("val-system", "istiod-val")
		Eventually(i.ready, timeout, poll).Should(Succeed(), func() string { return i.log.String() })

		By("istiod patching its CA into the configuration the operator rendered")
		vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		key := client.ObjectKey{Name: "istio-validator-val-val-system"}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), key, vwc)).To(Succeed())
			g.Expect(vwc.Webhooks).NotTo(BeEmpty())
			for _, w := range vwc.Webhooks {
				g.Expect(w.ClientConfig.CABundle).NotTo(BeEmpty())
				g.Expect(w.FailurePolicy).To(HaveValue(Equal(admissionregistrationv1.Fail)))
			}
		}, timeout, poll).Should(Succeed(), func() string { return i.log.String() })

		By("the operator reconciling again without taking the fields back")
		rv := vwc.ResourceVersion
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

		By("istiod, reached with the published caBundle as the API server would, rejecting invalid config")
		roots := x509.NewCertPool()
		Expect(roots.AppendCertsFromPEM(vwc.Webhooks[0].ClientConfig.CABundle)).To(BeTrue())
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: roots, ServerName: "istiod-val.val-system.svc", MinVersion: tls.VersionTLS12,
		}}}
		review := func(spec map[string]any) *admissionv1.AdmissionResponse {
			resp, err := c.Post(i.httpsURL+"/validate", "application/json", bytes.NewReader(virtualServiceReview(spec)))
			Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			out := &admissionv1.AdmissionReview{}
			Expect(json.Unmarshal(body, out)).To(Succeed(), string(body))
			Expect(out.Response).NotTo(BeNil(), string(body))
			return out.Response
		}
		bad := review(map[string]any{"hosts": []string{"reviews"}, "http": []any{map[string]any{
			"route": []any{map[string]any{"destination": map[string]any{"host": "reviews"}, "weight": -10}}}}})
		Expect(bad.Allowed).To(BeFalse())
		Expect(bad.Result.Message).To(ContainSubstring("weight"))
		good := review(map[string]any{"hosts": []string{"reviews"}, "http": []any{map[string]any{
			"route": []any{map[string]any{"destination": map[string]any{"host": "reviews"}}}}}})
		Expect(good.Allowed).To(BeTrue())
	})
})
