// Package certmanager runs the operator with webhook certificates issued by the real
// cert-manager controllers, from the manifests in config/certmanager.
package certmanager

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/cacerts"
	"github.com/meshplane/meshplane/internal/devcluster"
	"github.com/meshplane/meshplane/internal/operator"
	"github.com/meshplane/meshplane/internal/testenv"
)

const (
	serverSecret = "meshplane-webhook-server-cert"
	timeout      = 90 * time.Second
	poll         = 200 * time.Millisecond
)

var (
	cluster *devcluster.Cluster
	k8s     client.Client
)

func ctx() context.Context { return context.Background() }

func TestCertManager(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "meshplane with cert-manager webhook certificates")
}

var _ = BeforeSuite(func(sctx SpecContext) {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	cluster, err = devcluster.Start(sctx, devcluster.Options{
		CertManager:       true,
		WebhookCertSecret: serverSecret,
		WebhookCertResync: time.Second,
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cluster.Stop)
	k8s = cluster.Admin
	applyCertManagerManifests()
}, NodeTimeout(4*time.Minute))

// applyCertManagerManifests applies config/certmanager as shipped, except that the
// webhook's certificate also names 127.0.0.1: here the API server calls the operator on
// loopback rather than through its Service.
func applyCertManagerManifests() {
	raw, err := os.ReadFile(filepath.Join(cluster.Root, "config", "certmanager", "certificates.yaml"))
	Expect(err).NotTo(HaveOccurred())
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		}
		Expect(err).NotTo(HaveOccurred())
		u.SetNamespace(devcluster.OperatorNamespace)
		if u.GetKind() == "Certificate" && u.GetName() == "meshplane-webhook-server" {
			Expect(unstructured.SetNestedStringSlice(u.Object, []string{"127.0.0.1"}, "spec", "ipAddresses")).To(Succeed())
		}
		Expect(k8s.Create(ctx(), u)).To(Succeed())
	}
}

func issuedLeaf(g Gomega) (*x509.Certificate, []byte) {
	s := &corev1.Secret{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: devcluster.OperatorNamespace, Name: serverSecret}, s)).To(Succeed())
	block, _ := pem.Decode(s.Data["tls.crt"])
	g.Expect(block).NotTo(BeNil())
	leaf, err := x509.ParseCertificate(block.Bytes)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(s.Data["ca.crt"]).NotTo(BeEmpty())
	return leaf, s.Data["ca.crt"]
}

// servedLeaf is the certificate the operator's webhook server presents right now, checked
// against caBundle as the API server checks it.
func servedLeaf(g Gomega, caBundle []byte) *x509.Certificate {
	u, err := url.Parse(cluster.WebhookURL)
	g.Expect(err).NotTo(HaveOccurred())
	roots := x509.NewCertPool()
	g.Expect(roots.AppendCertsFromPEM(caBundle)).To(BeTrue())
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	g.Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

func injectedPod(g Gomega, name string) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}
	g.Expect(k8s.Create(ctx(), p)).To(Succeed())
	g.Expect(p.Annotations).To(HaveKey("sidecar.istio.io/status"))
}

var _ = Describe("Webhook certificates from cert-manager", Ordered, func() {
	It("serves with the issued certificate and publishes its CA", func() {
		var caBundle []byte
		Eventually(func(g Gomega) { _, caBundle = issuedLeaf(g) }, timeout, poll).Should(Succeed())

		m := &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(m), m)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(m.Status.Conditions, meshv1alpha1.ConditionReady)).To(BeTrue())
		}, timeout, poll).Should(Succeed())

		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Name: "istio-sidecar-injector"}, mwc)).To(Succeed())
		for _, w := range mwc.Webhooks {
			Expect(w.ClientConfig.CABundle).To(Equal(caBundle))
		}
		Expect(mwc.Annotations).NotTo(HaveKey("cert-manager.io/inject-ca-from"), "the operator renders caBundle itself")

		By("not running a CA of its own")
		err := k8s.Get(ctx(), client.ObjectKey{Namespace: devcluster.OperatorNamespace, Name: operator.CertSecretName}, &corev1.Secret{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue())

		By("injecting through the API server, which trusts the issued certificate")
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps", Labels: map[string]string{"istio-injection": "enabled"}}}
		Expect(k8s.Create(ctx(), ns)).To(Succeed())
		Eventually(func() error {
			return k8s.Get(ctx(), client.ObjectKey{Namespace: "apps", Name: "default"}, &corev1.ServiceAccount{})
		}, timeout, poll).Should(Succeed())
		injectedPod(Default, "first")
	})

	It("picks up a re-issued certificate without interrupting injection", func() {
		before, caBundle := issuedLeaf(Default)
		Expect(servedLeaf(Default, caBundle).SerialNumber).To(Equal(before.SerialNumber))

		// Deleting the Secret makes cert-manager issue a new certificate (new key, new
		// serial) from the same CA, as a renewal does.
		Expect(k8s.Delete(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			Namespace: devcluster.OperatorNamespace, Name: serverSecret}})).To(Succeed())
		var after *x509.Certificate
		Eventually(func(g Gomega) {
			after, _ = issuedLeaf(g)
			g.Expect(after.SerialNumber).NotTo(Equal(before.SerialNumber))
		}, timeout, poll).Should(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(servedLeaf(g, caBundle).SerialNumber).To(Equal(after.SerialNumber))
		}, timeout, poll).Should(Succeed())
		injectedPod(Default, "second")
	})
})

// unstructuredObject builds a cert-manager object.
func unstructuredObject(kind, namespace, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion("cert-manager.io/v1")
	u.SetKind(kind)
	u.SetNamespace(namespace)
	u.SetName(name)
	return u
}

var _ = Describe("istiod's CA from cert-manager", Ordered, func() {
	const (
		ns       = "issued-system"
		revision = "issued"
		issuer   = "mesh-root-ca"
	)
	m := &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "issued"}}

	reconciled := func(g Gomega) *metav1.Condition {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(m), m)).To(Succeed())
		c := meta.FindStatusCondition(m.Status.Conditions, meshv1alpha1.ConditionReconciled)
		g.Expect(c).NotTo(BeNil())
		return c
	}

	It("names a missing issuer and does not start istiod without its CA", func() {
		m.Spec.Namespace = ns
		m.Spec.Revision = revision // beside the other suite's default revision
		m.Spec.Security = &meshv1alpha1.SecuritySpec{CertificateAuthority: &meshv1alpha1.CertificateAuthority{
			CertManager: &meshv1alpha1.CertManagerCA{IssuerRef: meshv1alpha1.IssuerReference{Name: issuer, Kind: "ClusterIssuer"}},
		}}
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		Eventually(func(g Gomega) {
			c := reconciled(g)
			g.Expect(c.Reason).To(Equal(meshv1alpha1.ReasonIssuerNotFound))
			g.Expect(c.Message).To(HavePrefix(`cert-manager ClusterIssuer "mesh-root-ca" not found`))
		}, timeout, poll).Should(Succeed())
		Expect(meta.IsStatusConditionTrue(m.Status.Conditions, meshv1alpha1.ConditionStalled)).To(BeTrue())
		err := k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "istiod-" + revision}, &appsv1.Deployment{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue())

		cert := &unstructured.Unstructured{}
		cert.SetAPIVersion("cert-manager.io/v1")
		cert.SetKind("Certificate")
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "istiod-" + revision + "-ca"}, cert)).To(Succeed())
		Expect(metav1.IsControlledBy(cert, m)).To(BeTrue())
	})

	It("runs istiod on the intermediate CA cert-manager issues once the issuer exists", func() {
		// A root CA of cert-manager's own: SelfSigned ClusterIssuer -> CA Certificate -> CA ClusterIssuer.
		Expect(k8s.Create(ctx(), unstructuredObject("ClusterIssuer", "", "selfsigned", map[string]any{"selfSigned": map[string]any{}}))).To(Succeed())
		Expect(k8s.Create(ctx(), unstructuredObject("Certificate", testenv.CertManagerNamespace, "mesh-root", map[string]any{
			"isCA": true, "commonName": "mesh root", "secretName": "mesh-root",
			"privateKey": map[string]any{"algorithm": "ECDSA", "size": int64(256)},
			"issuerRef":  map[string]any{"name": "selfsigned", "kind": "ClusterIssuer", "group": "cert-manager.io"},
		}))).To(Succeed())
		Expect(k8s.Create(ctx(), unstructuredObject("ClusterIssuer", "", issuer, map[string]any{"ca": map[string]any{"secretName": "mesh-root"}}))).To(Succeed())

		Eventually(func(g Gomega) {
			c := reconciled(g)
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue), func() string { return c.Message + "\n" + certManagerState(ns) })
			g.Expect(meta.IsStatusConditionTrue(m.Status.Conditions, meshv1alpha1.ConditionReady)).To(BeTrue())
		}, 2*timeout, poll).Should(Succeed())

		By("converting the issued Secret into a valid cacerts Secret istiod mounts")
		cacertsSecret := &corev1.Secret{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "istiod-" + revision + "-cacerts"}, cacertsSecret)).To(Succeed())
		Expect(metav1.IsControlledBy(cacertsSecret, m)).To(BeTrue())
		_, err := cacerts.Validate(cacertsSecret.Data, time.Now())
		Expect(err).NotTo(HaveOccurred())
		root := &corev1.Secret{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: testenv.CertManagerNamespace, Name: "mesh-root"}, root)).To(Succeed())
		rootBlock, _ := pem.Decode(root.Data["tls.crt"])
		ourRoot, _ := pem.Decode(cacertsSecret.Data[cacerts.KeyRootCert])
		Expect(ourRoot).NotTo(BeNil())
		Expect(ourRoot.Bytes).To(Equal(rootBlock.Bytes), "the mesh's root is the issuer's")

		d := &appsv1.Deployment{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "istiod-" + revision}, d)).To(Succeed())
		Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue("mesh.meshplane.io/ca-fingerprint", cacerts.Fingerprint(cacertsSecret.Data)))
		var mounted string
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == "cacerts" {
				mounted = v.Secret.SecretName
			}
		}
		Expect(mounted).To(Equal(cacertsSecret.Name))
		Expect(m.Status.CertificateAuthority).NotTo(BeNil())
		Expect(m.Status.CertificateAuthority.Mode).To(Equal(meshv1alpha1.CAModeCertManager))
		sum, err := cacerts.Summarize(cacertsSecret.Data)
		Expect(err).NotTo(HaveOccurred())
		Expect(m.Status.CertificateAuthority.RootFingerprint).To(Equal(sum.RootSHA256))
	})
})

// certManagerState describes cert-manager's objects, for failure messages.
func certManagerState(namespace string) string {
	var out []string
	for _, kind := range []string{"CertificateList", "CertificateRequestList"} {
		for _, n := range []string{namespace, testenv.CertManagerNamespace} {
			l := &unstructured.UnstructuredList{}
			l.SetAPIVersion("cert-manager.io/v1")
			l.SetKind(kind)
			if err := k8s.List(ctx(), l, client.InNamespace(n)); err != nil {
				out = append(out, err.Error())
				continue
			}
			for _, it := range l.Items {
				conds, _, _ := unstructured.NestedSlice(it.Object, "status", "conditions")
				out = append(out, fmt.Sprintf("%s %s/%s: %v", it.GetKind(), n, it.GetName(), conds))
			}
		}
	}
	for _, kind := range []string{"ClusterIssuerList"} {
		l := &unstructured.UnstructuredList{}
		l.SetAPIVersion("cert-manager.io/v1")
		l.SetKind(kind)
		_ = k8s.List(ctx(), l)
		for _, it := range l.Items {
			conds, _, _ := unstructured.NestedSlice(it.Object, "status", "conditions")
			out = append(out, fmt.Sprintf("ClusterIssuer %s: %v", it.GetName(), conds))
		}
	}
	secrets := &corev1.SecretList{}
	_ = k8s.List(ctx(), secrets, client.InNamespace(namespace))
	for _, s := range secrets.Items {
		out = append(out, "Secret "+s.Name)
	}
	return strings.Join(out, "\n")
}
