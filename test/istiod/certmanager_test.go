//go:build istiod

package istiod

import (
	"encoding/pem"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/testenv"
)

// certManagerObject builds a cert-manager.io/v1 object.
func certManagerObject(kind, namespace, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion("cert-manager.io/v1")
	u.SetKind(kind)
	u.SetNamespace(namespace)
	u.SetName(name)
	return u
}

// The real cert-manager controller issues istiod's intermediate CA from a root of its own;
// istiod, started from what the operator rendered, must sign with it and publish that root.
// This is the multi-primary set-up: every cluster's istiod chains to the same root.
var _ = Describe("istiod with a cert-manager CA", func() {
	It("signs with the issued intermediate and publishes the issuer's root", func() {
		const (
			ns     = "issued-system"
			issuer = "mesh-root-ca"
		)
		Expect(k8s.Create(ctx(), certManagerObject("ClusterIssuer", "", "selfsigned", map[string]any{"selfSigned": map[string]any{}}))).To(Succeed())
		Expect(k8s.Create(ctx(), certManagerObject("Certificate", testenv.CertManagerNamespace, "mesh-root", map[string]any{
			"isCA": true, "commonName": "meshplane istiod suite root", "secretName": "mesh-root",
			"privateKey": map[string]any{"algorithm": "ECDSA", "size": int64(256)},
			"issuerRef":  map[string]any{"name": "selfsigned", "kind": "ClusterIssuer", "group": "cert-manager.io"},
		}))).To(Succeed())
		Expect(k8s.Create(ctx(), certManagerObject("ClusterIssuer", "", issuer, map[string]any{"ca": map[string]any{"secretName": "mesh-root"}}))).To(Succeed())

		m := &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "issued"}}
		m.Spec.Namespace = ns
		m.Spec.Revision = "issued" // beside the other specs' revisions
		m.Spec.Security = &meshv1alpha1.SecuritySpec{CertificateAuthority: &meshv1alpha1.CertificateAuthority{
			CertManager: &meshv1alpha1.CertManagerCA{IssuerRef: meshv1alpha1.IssuerReference{Name: issuer, Kind: "ClusterIssuer"}},
		}}
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8s.Delete(ctx(), m))).To(Succeed()) })
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(m), m)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(m.Status.Conditions, meshv1alpha1.ConditionReady)).To(BeTrue(),
				func() string { return conditionsOf(m) })
		}, 2*timeout, poll).Should(Succeed())

		i := startIstiod(ns, "istiod-issued")
		Eventually(i.ready, timeout, poll).Should(Succeed(), func() string { return i.log.String() })

		By("publishing cert-manager's root in istio-ca-root-cert")
		root := &corev1.Secret{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: testenv.CertManagerNamespace, Name: "mesh-root"}, root)).To(Succeed())
		rootBlock, _ := pem.Decode(root.Data["tls.crt"])
		Expect(rootBlock).NotTo(BeNil())
		Eventually(func(g Gomega) {
			published := &corev1.ConfigMap{}
			g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "istio-ca-root-cert"}, published)).To(Succeed())
			block, _ := pem.Decode([]byte(published.Data["root-cert.pem"]))
			g.Expect(block).NotTo(BeNil())
			g.Expect(block.Bytes).To(Equal(rootBlock.Bytes), "istiod publishes a root that is not the issuer's")
		}, timeout, poll).Should(Succeed(), func() string { return i.log.String() })
		Expect(i.log.String()).To(ContainSubstring("Use local CA certificate"),
			"istiod did not load the issued CA (it would fall back to a self-signed one)")
	})
})

func conditionsOf(m *meshv1alpha1.MeshControlPlane) string {
	out := ""
	for _, c := range m.Status.Conditions {
		out += c.Type + "=" + string(c.Status) + " " + c.Reason + ": " + c.Message + "\n"
	}
	return out
}
