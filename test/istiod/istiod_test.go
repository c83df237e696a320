//go:build istiod

// Package istiod proves what the operator renders against the real istiod: it runs
// pilot-discovery (built from the Go module proxy by `make testbin-istio`) as a local
// process, with the mesh config, environment and RBAC identity the operator rendered, and
// checks that istiod accepts them. Run with `make test-istiod`.
package istiod

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/cacerts"
	"github.com/meshplane/meshplane/internal/devcluster"
	"github.com/meshplane/meshplane/internal/testenv"
)

const (
	timeout = 90 * time.Second
	poll    = 200 * time.Millisecond
)

var (
	cluster *devcluster.Cluster
	k8s     client.Client
)

func ctx() context.Context { return context.Background() }

func TestIstiod(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "meshplane against the real istiod")
}

var _ = BeforeSuite(func(sctx SpecContext) {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	assets, err := testenv.AssetsDir()
	Expect(err).NotTo(HaveOccurred())
	_, err = os.Stat(filepath.Join(assets, "pilot-discovery"))
	Expect(err).NotTo(HaveOccurred(), "pilot-discovery is missing: run make testbin-istio")
	// With the real cert-manager (for the cert-manager CA), and the operator's
	// istio-validator addressed to istiod on loopback.
	cluster, err = devcluster.Start(sctx, devcluster.Options{CertManager: true, IstioValidation: true})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cluster.Stop)
	k8s = cluster.Admin
}, NodeTimeout(3*time.Minute))

// istiod is a running pilot-discovery process.
type istiod struct {
	cmd     *exec.Cmd
	log     *bytes.Buffer
	httpURL string
	// httpsURL serves istiod's webhooks (/validate), port 15017 in a cluster.
	httpsURL string
}

// startIstiod runs pilot-discovery configured from what the operator rendered for the
// MeshControlPlane: the mesh ConfigMap's content, the Deployment's environment, and the
// istiod ServiceAccount's identity (a token from the TokenRequest API), so istiod has
// exactly the RBAC the operator gave it.
func startIstiod(namespace, name string) *istiod {
	dir := GinkgoT().TempDir()

	d := &appsv1.Deployment{}
	Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: namespace, Name: name}, d)).To(Succeed())
	container := d.Spec.Template.Spec.Containers[0]
	meshConfigMap := "istio" // a named revision reads istio-<revision>, as istiod does
	for _, e := range container.Env {
		if e.Name == "REVISION" && e.Value != "default" {
			meshConfigMap = "istio-" + e.Value
		}
	}
	cm := &corev1.ConfigMap{}
	Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: namespace, Name: meshConfigMap}, cm)).To(Succeed())
	mesh := filepath.Join(dir, "mesh")
	Expect(os.WriteFile(mesh, []byte(cm.Data["mesh"]), 0o600)).To(Succeed())
	networks := filepath.Join(dir, "meshNetworks")
	Expect(os.WriteFile(networks, []byte(cm.Data["meshNetworks"]), 0o600)).To(Succeed())

	env := []string{"PATH=" + os.Getenv("PATH")}
	for _, e := range container.Env {
		switch {
		case e.Name == "KUBECONFIG" || e.Name == "GOMEMLIMIT" || e.Name == "GOMAXPROCS":
			// The in-cluster paths and limits do not apply to a local process.
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				env = append(env, e.Name+"=istiod-local")
			case "metadata.namespace":
				env = append(env, e.Name+"="+namespace)
			case "spec.serviceAccountName":
				env = append(env, e.Name+"="+d.Spec.Template.Spec.ServiceAccountName)
			}
		default:
			env = append(env, e.Name+"="+e.Value)
		}
	}

	// A plugged or issued CA: what the Deployment mounts at /etc/cacerts, istiod (in dir)
	// reads from ./etc/cacerts, its default ROOT_CA_DIR.
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name != "cacerts" || v.Secret == nil {
			continue
		}
		secret := &corev1.Secret{}
		err := k8s.Get(ctx(), client.ObjectKey{Namespace: namespace, Name: v.Secret.SecretName}, secret)
		if apierrors.IsNotFound(err) && ptr.Deref(v.Secret.Optional, false) {
			continue
		}
		Expect(err).NotTo(HaveOccurred())
		caDir := filepath.Join(dir, "etc", "cacerts")
		Expect(os.MkdirAll(caDir, 0o700)).To(Succeed())
		for k, data := range secret.Data {
			Expect(os.WriteFile(filepath.Join(caDir, k), data, 0o600)).To(Succeed())
		}
	}

	kubeconfig := filepath.Join(dir, "kubeconfig")
	writeServiceAccountKubeconfig(namespace, d.Spec.Template.Spec.ServiceAccountName, kubeconfig)

	ports := map[string]int{}
	for _, p := range []string{"http", "grpc", "secureGRPC", "monitoring", "https", "ctrlz"} {
		port, err := testenv.FreePort()
		Expect(err).NotTo(HaveOccurred())
		ports[p] = port
	}
	addr := func(p string) string { return "127.0.0.1:" + strconv.Itoa(ports[p]) }
	httpsAddr := addr("https")
	if name := validatorName(container.Env); name != "" {
		httpsAddr = validatorAddress(name)
		// istiod switches its validator to failurePolicy Fail: once this istiod is gone, it
		// would reject every later spec's config of the revision. Deleting it is as if
		// istiod had never run: the operator creates it afresh, failing open. (Registered
		// first, so it runs after istiod is stopped.)
		DeferCleanup(func() {
			vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}}
			Expect(client.IgnoreNotFound(k8s.Delete(ctx(), vwc))).To(Succeed())
		})
	}
	args := append([]string{}, container.Args...) // discovery --monitoringAddr=... --domain ...
	args = append(args,
		"--kubeconfig="+kubeconfig,
		"--meshConfig="+mesh,
		"--networksConfig="+networks,
		"--httpAddr="+addr("http"),
		"--grpcAddr="+addr("grpc"),
		"--secureGRPCAddr="+addr("secureGRPC"),
		"--monitoringAddr="+addr("monitoring"),
		"--httpsAddr="+httpsAddr,
		"--ctrlz_address=127.0.0.1",
		"--ctrlz_port="+strconv.Itoa(ports["ctrlz"]),
	)
	assets, _ := testenv.AssetsDir()
	cmd := exec.Command(filepath.Join(assets, "pilot-discovery"), args...)
	cmd.Env = env
	cmd.Dir = dir
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	Expect(cmd.Start()).To(Succeed())
	i := &istiod{cmd: cmd, log: out, httpURL: "http://" + addr("http"), httpsURL: "https://" + httpsAddr}
	DeferCleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if CurrentSpecReport().Failed() {
			AddReportEntry("istiod log", out.String())
		}
	})
	return i
}

// validatorName is the istio-validator the rendered environment has istiod patch, or "".
func validatorName(env []corev1.EnvVar) string {
	for _, e := range env {
		if e.Name == "VALIDATION_WEBHOOK_CONFIG_NAME" {
			return e.Value
		}
	}
	return ""
}

// validatorAddress is the host:port the operator's istio-validator sends the API server to,
// where istiod must serve its webhooks.
func validatorAddress(name string) string {
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	Expect(k8s.Get(ctx(), client.ObjectKey{Name: name}, vwc)).To(Succeed())
	Expect(vwc.Webhooks).NotTo(BeEmpty())
	raw := vwc.Webhooks[0].ClientConfig.URL
	Expect(raw).NotTo(BeNil(), "%s must name a loopback URL: the API server would resolve the istiod Service off this machine", name)
	u, err := url.Parse(*raw)
	Expect(err).NotTo(HaveOccurred())
	Expect(u.Hostname()).To(Equal("127.0.0.1"))
	return u.Host
}

// writeServiceAccountKubeconfig writes a kubeconfig authenticating as the service account,
// with a token from the TokenRequest API (as the kubelet would mount).
func writeServiceAccountKubeconfig(namespace, sa, path string) {
	cs, err := kubernetes.NewForConfig(cluster.Env.Config)
	Expect(err).NotTo(HaveOccurred())
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx(), sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: cluster.Env.Config.Host, CertificateAuthorityData: cluster.Env.Config.CAData}
	cfg.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: sa}
	cfg.CurrentContext = "local"
	Expect(clientcmd.WriteToFile(*cfg, path)).To(Succeed())
}

func (i *istiod) ready() error {
	resp, err := http.Get(i.httpURL + "/ready")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/ready answered %d", resp.StatusCode)
	}
	return nil
}

var _ = Describe("istiod with the operator's rendered configuration", func() {
	It("becomes ready under the rendered identity and publishes its root certificate", func() {
		m := &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
		m.Spec.MeshConfig = &meshv1alpha1.MeshConfig{
			AccessLogFile:         ptr.To("/dev/stdout"),
			OutboundTrafficPolicy: &meshv1alpha1.OutboundTrafficPolicy{Mode: "REGISTRY_ONLY"},
			DefaultConfig:         &meshv1alpha1.ProxyConfig{HoldApplicationUntilProxyStarts: ptr.To(true)},
		}
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(m), m)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(m.Status.Conditions, meshv1alpha1.ConditionReady)).To(BeTrue())
		}, timeout, poll).Should(Succeed())

		i := startIstiod("istio-system", "istiod")
		Eventually(i.ready, timeout, poll).Should(Succeed(), func() string { return i.log.String() })

		By("publishing istio-ca-root-cert into namespaces, with its self-signed CA")
		Expect(k8s.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "workloads"}})).To(Succeed())
		Eventually(func(g Gomega) {
			root := &corev1.ConfigMap{}
			g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: "workloads", Name: "istio-ca-root-cert"}, root)).To(Succeed())
			g.Expect(root.Data["root-cert.pem"]).To(HavePrefix("-----BEGIN CERTIFICATE-----"))
		}, timeout, poll).Should(Succeed())
		Expect(i.log.String()).NotTo(ContainSubstring("is forbidden"), "istiod's rendered RBAC lacks a permission")
	})
})

// testCA is a CA certificate and its key.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(cn string, serial int64, parent *testCA) *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn, Organization: []string{"meshplane istiod suite"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
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

var _ = Describe("istiod with a plugged CA", func() {
	It("signs with the plugged intermediate and publishes our root", func() {
		const ns = "plugged-system"
		root := newTestCA("meshplane plugged root", 1, nil)
		inter := newTestCA("meshplane plugged intermediate", 2, root)
		keyDER, err := x509.MarshalPKCS8PrivateKey(inter.key)
		Expect(err).NotTo(HaveOccurred())
		data := map[string][]byte{
			cacerts.KeyCACert:    pemCert(inter.cert),
			cacerts.KeyCAKey:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
			cacerts.KeyCertChain: append(pemCert(inter.cert), pemCert(root.cert)...),
			cacerts.KeyRootCert:  pemCert(root.cert),
		}
		Expect(k8s.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		Expect(k8s.Create(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cacerts"}, Data: data})).To(Succeed())

		m := &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "plugged"}}
		m.Spec.Namespace = ns
		m.Spec.Revision = "plugged" // beside the other spec's default revision
		m.Spec.Security = &meshv1alpha1.SecuritySpec{CertificateAuthority: &meshv1alpha1.CertificateAuthority{
			Plugged: &meshv1alpha1.PluggedCA{},
		}}
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(m), m)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(m.Status.Conditions, meshv1alpha1.ConditionReady)).To(BeTrue())
		}, timeout, poll).Should(Succeed())

		i := startIstiod(ns, "istiod-plugged")
		Eventually(i.ready, timeout, poll).Should(Succeed(), func() string { return i.log.String() })

		By("publishing our root in istio-ca-root-cert")
		Eventually(func(g Gomega) {
			published := &corev1.ConfigMap{}
			g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "istio-ca-root-cert"}, published)).To(Succeed())
			g.Expect(published.Data["root-cert.pem"]).To(Equal(string(pemCert(root.cert))))
		}, timeout, poll).Should(Succeed(), func() string { return i.log.String() })
	})
})
