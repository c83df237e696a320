package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/cacerts"
	"github.com/meshplane/meshplane/internal/render"
)

// testCA is a certificate and its key.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var caSerial int64

// newTestCA issues a CA certificate valid for a year; parent nil makes it self-signed.
func newTestCA(cn string, parent *testCA) *testCA {
	return newTestCAValid(cn, parent, time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
}

func newTestCAValid(cn string, parent *testCA, notBefore, notAfter time.Time) *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	caSerial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(caSerial), Subject: pkix.Name{CommonName: cn, Organization: []string{"meshplane e2e"}},
		NotBefore: notBefore, NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	issuer, issuerKey := tmpl, key
	if parent != nil {
		issuer, issuerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), issuerKey)
	Expect(err).NotTo(HaveOccurred())
	cert, err := x509.ParseCertificate(der)
	Expect(err).NotTo(HaveOccurred())
	return &testCA{cert: cert, key: key}
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func pemKey(k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	Expect(err).NotTo(HaveOccurred())
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// pluggedData is the cacerts layout of an intermediate signed by root.
func pluggedData(root, inter *testCA) map[string][]byte {
	return map[string][]byte{
		cacerts.KeyCACert:    pemCert(inter.cert),
		cacerts.KeyCAKey:     pemKey(inter.key),
		cacerts.KeyCertChain: append(pemCert(inter.cert), pemCert(root.cert)...),
		cacerts.KeyRootCert:  pemCert(root.cert),
	}
}

func istiodDeployment(g Gomega, namespace string) *appsv1.Deployment {
	d := &appsv1.Deployment{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: namespace, Name: "istiod"}, d)).To(Succeed())
	return d
}

func cacertsVolume(d *appsv1.Deployment) *corev1.SecretVolumeSource {
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "cacerts" {
			return v.Secret
		}
	}
	return nil
}

func peerAuthentication(g Gomega, namespace string) *securityv1.PeerAuthentication {
	pa := &securityv1.PeerAuthentication{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: namespace, Name: "default"}, pa)).To(Succeed())
	return pa
}

var _ = Describe("Mesh security", func() {
	It("renders the mesh-wide mTLS mode, follows its changes and removes it when unset", func() {
		const ns = "mtls-system"
		m := newMCP("mtls", ns, func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Security = &meshv1alpha1.SecuritySpec{MTLS: &meshv1alpha1.MTLSSpec{Mode: meshv1alpha1.MTLSModeStrict}}
		})
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(deleteMCP, m.Name)
		m = expectReady(m.Name)
		Expect(m.Status.CertificateAuthority).To(Equal(&meshv1alpha1.CertificateAuthorityStatus{Mode: meshv1alpha1.CAModeSelfSigned}))

		pa := peerAuthentication(Default, ns)
		Expect(pa.Spec.GetMtls().GetMode().String()).To(Equal("STRICT"))
		Expect(metav1.IsControlledBy(pa, m)).To(BeTrue())
		Expect(pa.Labels).To(HaveKeyWithValue(render.LabelManagedBy, render.ManagedByValue))

		By("changing the mode")
		m.Spec.Security.MTLS.Mode = meshv1alpha1.MTLSModeDisable
		Expect(k8s.Update(ctx(), m)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(peerAuthentication(g, ns).Spec.GetMtls().GetMode().String()).To(Equal("DISABLE"))
		}, readyTimeout, poll).Should(Succeed())
		m = expectReady(m.Name)

		By("unsetting it")
		m.Spec.Security = nil
		Expect(k8s.Update(ctx(), m)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "default"}, &securityv1.PeerAuthentication{}))
		}, readyTimeout, poll).Should(BeTrue())
		expectReady(m.Name)
	})

	It("mounts a plugged CA, holds istiod on a broken one and rolls it when fixed", func() {
		const ns = "plugged-system"
		secretKey := client.ObjectKey{Namespace: ns, Name: "mesh-ca"}
		root := newTestCA("Root CA", nil)
		first := pluggedData(root, newTestCA("Intermediate CA 1", root))
		Expect(k8s.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		DeferCleanup(deleteNamespaces, ns)
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: secretKey.Name}, Data: first}
		Expect(k8s.Create(ctx(), secret)).To(Succeed())

		m := newMCP("plugged", ns, func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Security = &meshv1alpha1.SecuritySpec{CertificateAuthority: &meshv1alpha1.CertificateAuthority{
				Plugged: &meshv1alpha1.PluggedCA{SecretName: secretKey.Name},
			}}
		})
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(deleteMCP, m.Name)

		By("becoming Ready with istiod mounting the Secret, annotated with its fingerprint")
		m = expectReady(m.Name)
		d := istiodDeployment(Default, ns)
		Expect(cacertsVolume(d).SecretName).To(Equal(secretKey.Name))
		Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue(render.AnnotationCAFingerprint, cacerts.Fingerprint(first)))
		sum, err := cacerts.Summarize(first)
		Expect(err).NotTo(HaveOccurred())
		Expect(m.Status.CertificateAuthority).NotTo(BeNil())
		Expect(m.Status.CertificateAuthority.Mode).To(Equal(meshv1alpha1.CAModePlugged))
		Expect(m.Status.CertificateAuthority.SecretName).To(Equal(secretKey.Name))
		Expect(m.Status.CertificateAuthority.RootFingerprint).To(Equal(sum.RootSHA256))
		Expect(m.Status.CertificateAuthority.RootSubject).To(Equal(sum.RootSubject))

		By("reporting a key that does not match the certificate, keeping istiod and the Secret as they are")
		Expect(k8s.Get(ctx(), secretKey, secret)).To(Succeed())
		broken := map[string][]byte{}
		for k, v := range first {
			broken[k] = v
		}
		broken[cacerts.KeyCAKey] = pemKey(newTestCA("Unrelated", nil).key)
		secret.Data = broken
		Expect(k8s.Update(ctx(), secret)).To(Succeed())
		_, validateErr := cacerts.Validate(broken, time.Now())
		Expect(validateErr).To(HaveOccurred())
		wantMessage := "the CA in Secret plugged-system/mesh-ca cannot be used: " + strings.TrimPrefix(validateErr.Error(), "cacerts: ")
		Eventually(func(g Gomega) {
			m = getMCP(g, m.Name)
			c := meta.FindStatusCondition(m.Status.Conditions, meshv1alpha1.ConditionReconciled)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal(meshv1alpha1.ReasonInvalidCA))
			g.Expect(c.Message).To(Equal(wantMessage))
			g.Expect(meta.IsStatusConditionTrue(m.Status.Conditions, meshv1alpha1.ConditionStalled)).To(BeTrue())
		}, readyTimeout, poll).Should(Succeed())
		Expect(wantMessage).To(ContainSubstring("ca-key.pem"))
		for _, c := range m.Status.Conditions {
			Expect(c.Message).NotTo(ContainSubstring("PRIVATE KEY"))
		}
		Expect(m.Status.CertificateAuthority.RootFingerprint).To(Equal(sum.RootSHA256), "istiod still runs the last valid CA")
		Expect(k8s.Get(ctx(), secretKey, secret)).To(Succeed())
		brokenVersion := secret.ResourceVersion
		Consistently(func(g Gomega) {
			now := istiodDeployment(g, ns)
			g.Expect(now.Generation).To(Equal(d.Generation))
			g.Expect(now.Spec.Template).To(Equal(d.Spec.Template))
			s := &corev1.Secret{}
			g.Expect(k8s.Get(ctx(), secretKey, s)).To(Succeed())
			g.Expect(s.ResourceVersion).To(Equal(brokenVersion), "the operator never writes the user's Secret")
		}, 3*time.Second, poll).Should(Succeed())

		By("rolling istiod onto the fixed CA")
		second := pluggedData(root, newTestCA("Intermediate CA 2", root))
		secret.Data = second
		Expect(k8s.Update(ctx(), secret)).To(Succeed())
		m = expectReady(m.Name)
		d = istiodDeployment(Default, ns)
		Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue(render.AnnotationCAFingerprint, cacerts.Fingerprint(second)))
		Expect(cacerts.Fingerprint(second)).NotTo(Equal(cacerts.Fingerprint(first)))
		Expect(meta.IsStatusConditionTrue(m.Status.Conditions, meshv1alpha1.ConditionReconciled)).To(BeTrue())
	})

	It("warns, on time, when the plugged CA nears its expiry", func() {
		const ns = "expiring-system"
		// 80 s of lifetime, 30 s left: the warning starts a sixth of the lifetime (13 s)
		// before the end, about 17 s from now. Nothing in the cluster changes then: the
		// operator's time-based requeue (unit-tested in TestRequeueForCAWarning) wakes it, or
		// here this suite's 10 s informer resync.
		now := time.Now()
		root := newTestCA("Root CA", nil)
		inter := newTestCAValid("Short-lived intermediate", root, now.Add(-50*time.Second), now.Add(30*time.Second))
		Expect(k8s.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		DeferCleanup(deleteNamespaces, ns)
		Expect(k8s.Create(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cacerts"}, Data: pluggedData(root, inter)})).To(Succeed())
		m := newMCP("expiring", ns, func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Security = &meshv1alpha1.SecuritySpec{CertificateAuthority: &meshv1alpha1.CertificateAuthority{Plugged: &meshv1alpha1.PluggedCA{}}}
		})
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(deleteMCP, m.Name)

		warning := func(g Gomega) *metav1.Condition {
			c := meta.FindStatusCondition(getMCP(g, m.Name).Status.Conditions, meshv1alpha1.ConditionCAWarning)
			g.Expect(c).NotTo(BeNil())
			return c
		}
		Eventually(func(g Gomega) {
			g.Expect(warning(g).Reason).To(Equal(meshv1alpha1.ReasonNoWarnings))
		}, 15*time.Second, poll).Should(Succeed())
		want := fmt.Sprintf("Secret %s/cacerts: ca-cert.pem expires soon, at %s; renew it before then", ns, inter.cert.NotAfter.UTC().Format(time.RFC3339))
		Eventually(func(g Gomega) {
			c := warning(g)
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(c.Reason).To(Equal(meshv1alpha1.ReasonNeedsAttention))
			g.Expect(c.Message).To(Equal(want))
		}, 30*time.Second, poll).Should(Succeed())
		Expect(time.Now()).To(BeTemporally(">=", inter.cert.NotAfter.Add(-14*time.Second)), "warned too early")
		Eventually(func(g Gomega) {
			events := &eventsv1.EventList{}
			g.Expect(k8s.List(ctx(), events)).To(Succeed())
			var notes []string
			for _, e := range events.Items {
				if e.Regarding.Kind == "MeshControlPlane" && e.Regarding.Name == m.Name &&
					e.Reason == "CertificateAuthorityWarning" && e.Type == corev1.EventTypeWarning {
					notes = append(notes, e.Note)
				}
			}
			g.Expect(notes).To(ContainElement(want))
		}, readyTimeout, poll).Should(Succeed())
	})

	It("reports a plugged CA Secret that does not exist", func() {
		m := newMCP("plugged-missing", "plugged-missing-system", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Security = &meshv1alpha1.SecuritySpec{CertificateAuthority: &meshv1alpha1.CertificateAuthority{
				Plugged: &meshv1alpha1.PluggedCA{},
			}}
		})
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		// Cleanups run last-registered first: the MeshControlPlane must go before its
		// namespace, or the operator recreates the namespace it still needs.
		DeferCleanup(deleteNamespaces, "plugged-missing-system")
		DeferCleanup(deleteMCP, m.Name)
		Eventually(func(g Gomega) {
			c := meta.FindStatusCondition(getMCP(g, m.Name).Status.Conditions, meshv1alpha1.ConditionReconciled)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(meshv1alpha1.ReasonInvalidCA))
			g.Expect(c.Message).To(HavePrefix("the plugged CA Secret plugged-missing-system/cacerts does not exist"))
		}, readyTimeout, poll).Should(Succeed())
		err := k8s.Get(ctx(), client.ObjectKey{Namespace: "plugged-missing-system", Name: "istiod"}, &appsv1.Deployment{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "istiod does not start without its CA")
	})

	It("rejects a certificate authority with more than one mode", func() {
		m := newMCP("two-cas", "two-cas-system", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Security = &meshv1alpha1.SecuritySpec{CertificateAuthority: &meshv1alpha1.CertificateAuthority{
				SelfSigned: &meshv1alpha1.SelfSignedCA{}, Plugged: &meshv1alpha1.PluggedCA{},
			}}
		})
		err := k8s.Create(ctx(), m)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("certificateAuthority must set exactly one of selfSigned, plugged or certManager"))
	})
})
