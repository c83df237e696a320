/*
Copyright 2026 The meshplane Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
)

// TestIssuesFromSelfSignedAndCAIssuers runs the launcher (in-process, or the binary named by
// $CERT_MANAGER_CONTROLLER) against envtest's etcd and kube-apiserver (KUBEBUILDER_ASSETS, as
// built by hack/install-testbins.sh, which also puts cert-manager's CRDs in
// KUBEBUILDER_ASSETS/cert-manager-crds) and issues a CA certificate from a SelfSigned
// ClusterIssuer, then a leaf certificate from a CA Issuer over that CA.
func TestIssuesFromSelfSignedAndCAIssuers(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Skip("KUBEBUILDER_ASSETS is not set; run hack/install-testbins.sh and point it at the printed directory")
	}
	g := NewWithT(t)

	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(assets, "cert-manager-crds")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})

	user, err := env.ControlPlane.AddUser(envtest.User{Name: "cert-manager", Groups: []string{"system:masters"}}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	kubeconfig, err := user.KubeConfig()
	g.Expect(err).NotTo(HaveOccurred())
	kubeconfigPath := filepath.Join(t.TempDir(), "kubeconfig")
	g.Expect(os.WriteFile(kubeconfigPath, kubeconfig, 0o600)).To(Succeed())

	scheme := runtime.NewScheme()
	g.Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	g.Expect(cmapi.AddToScheme(scheme)).To(Succeed())
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())

	ctx := t.Context()
	for _, ns := range []string{"cert-manager", "smoke"} {
		g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	}

	// Start the launcher: in-process, or the built binary if CERT_MANAGER_CONTROLLER names it.
	healthzAddr := freeAddr(t)
	started := time.Now()
	if bin := os.Getenv("CERT_MANAGER_CONTROLLER"); bin != "" {
		startBinary(t, bin, kubeconfigPath, healthzAddr)
	} else {
		startInProcess(t, kubeconfigPath, healthzAddr)
	}
	g.Eventually(func() (int, error) { return httpStatus("http://" + healthzAddr + "/readyz") }).
		WithTimeout(60*time.Second).WithPolling(100*time.Millisecond).Should(Equal(http.StatusOK), "launcher /readyz")
	t.Logf("launcher ready after %v", time.Since(started).Round(time.Millisecond))

	// SelfSigned ClusterIssuer -> CA Certificate -> CA Issuer -> leaf Certificate.
	// Note: kube-apiserver holds the first create of a custom resource for 2s when its CRD
	// became Established less than 2s earlier (apiextensions-apiserver's "justCreated"), so
	// the timings below include that pause on runs where envtest's CRD install was recent.
	t0 := time.Now()
	selfSigned := &cmapi.ClusterIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "selfsigned"},
		Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}},
	}
	caCert := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: "smoke", Name: "smoke-ca"},
		Spec: cmapi.CertificateSpec{
			IsCA:       true,
			CommonName: "smoke-ca",
			SecretName: "smoke-ca",
			PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
			IssuerRef:  cmmeta.IssuerReference{Kind: cmapi.ClusterIssuerKind, Group: "cert-manager.io", Name: "selfsigned"},
		},
	}
	caIssuer := &cmapi.Issuer{
		ObjectMeta: metav1.ObjectMeta{Namespace: "smoke", Name: "smoke-ca"},
		Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "smoke-ca"}}},
	}
	leaf := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: "smoke", Name: "leaf"},
		Spec: cmapi.CertificateSpec{
			DNSNames:   []string{"leaf.smoke.svc", "leaf.smoke.svc.cluster.local"},
			SecretName: "leaf-tls",
			Usages:     []cmapi.KeyUsage{cmapi.UsageServerAuth, cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment},
			IssuerRef:  cmmeta.IssuerReference{Kind: cmapi.IssuerKind, Name: "smoke-ca"},
		},
	}
	for _, obj := range []client.Object{selfSigned, caCert, caIssuer, leaf} {
		g.Expect(c.Create(ctx, obj)).To(Succeed(), "creating %T %s", obj, obj.GetName())
	}

	eventually := func(what string, f func() error) {
		t.Helper()
		g.Eventually(f).WithTimeout(60*time.Second).WithPolling(100*time.Millisecond).
			Should(Succeed(), what)
		t.Logf("%s after %v", what, time.Since(t0).Round(time.Millisecond))
	}
	eventually("ClusterIssuer selfsigned Ready", func() error {
		return readyCondition(ctx, c, &cmapi.ClusterIssuer{}, client.ObjectKeyFromObject(selfSigned))
	})
	eventually("Certificate smoke/smoke-ca Ready", func() error {
		return readyCondition(ctx, c, &cmapi.Certificate{}, client.ObjectKeyFromObject(caCert))
	})
	eventually("Issuer smoke/smoke-ca Ready", func() error {
		return readyCondition(ctx, c, &cmapi.Issuer{}, client.ObjectKeyFromObject(caIssuer))
	})
	eventually("Certificate smoke/leaf Ready", func() error {
		return readyCondition(ctx, c, &cmapi.Certificate{}, client.ObjectKeyFromObject(leaf))
	})

	// The leaf's Secret chains to the CA's certificate.
	var caSecret, leafSecret corev1.Secret
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: "smoke", Name: "smoke-ca"}, &caSecret)).To(Succeed())
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: "smoke", Name: "leaf-tls"}, &leafSecret)).To(Succeed())
	ca := parseCert(t, caSecret.Data[corev1.TLSCertKey])
	g.Expect(ca.IsCA).To(BeTrue())
	g.Expect(ca.Subject.CommonName).To(Equal("smoke-ca"))
	g.Expect(leafSecret.Data["ca.crt"]).To(Equal(caSecret.Data[corev1.TLSCertKey]), "leaf ca.crt is the CA certificate")
	g.Expect(leafSecret.Data[corev1.TLSPrivateKeyKey]).NotTo(BeEmpty())
	leafCert := parseCert(t, leafSecret.Data[corev1.TLSCertKey])
	g.Expect(leafCert.IsCA).To(BeFalse())
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	chains, err := leafCert.Verify(x509.VerifyOptions{
		Roots:     roots,
		DNSName:   "leaf.smoke.svc",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	g.Expect(err).NotTo(HaveOccurred(), "leaf certificate verifies against the CA")
	g.Expect(chains).NotTo(BeEmpty())
}

// startInProcess runs the launcher's run function in a goroutine until the test ends.
func startInProcess(t *testing.T, kubeconfigPath, healthzAddr string) {
	opts := defaultOptions()
	opts.Kubeconfig = kubeconfigPath
	opts.ClusterResourceNamespace = "cert-manager"
	opts.LeaderElect = true // exercise the Lease path too; the namespace exists
	opts.RetryPeriod = time.Second
	opts.HealthzAddress = healthzAddr
	readyCh := make(chan struct{})
	opts.onReady = func() { close(readyCh) }
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, opts) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("launcher returned an error on shutdown: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("launcher did not stop within 30s")
		}
	})
	select {
	case <-readyCh:
	case err := <-done:
		t.Fatalf("launcher exited before becoming ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatalf("launcher not ready after 60s")
	}
}

// startBinary runs the built launcher as a child process until the test ends.
func startBinary(t *testing.T, bin, kubeconfigPath, healthzAddr string) {
	logPath := filepath.Join(t.TempDir(), "cert-manager-controller.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--kubeconfig="+kubeconfigPath, "--namespace=cert-manager",
		"--leader-elect", "--leader-election-retry-period=1s", "--healthz-address="+healthzAddr)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("launcher exited uncleanly on SIGTERM: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("launcher did not stop within 30s of SIGTERM")
		}
		_ = logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("launcher log:\n%s", b)
		}
	})
}

// readyCondition returns nil once obj (an Issuer, ClusterIssuer or Certificate) is Ready=True.
func readyCondition(ctx context.Context, c client.Client, obj client.Object, key client.ObjectKey) error {
	if err := c.Get(ctx, key, obj); err != nil {
		return err
	}
	type cond struct {
		status  cmmeta.ConditionStatus
		reason  string
		message string
	}
	var conds []cond
	switch o := obj.(type) {
	case *cmapi.Certificate:
		for _, x := range o.Status.Conditions {
			if x.Type == cmapi.CertificateConditionReady {
				conds = append(conds, cond{x.Status, x.Reason, x.Message})
			}
		}
	case cmapi.GenericIssuer:
		for _, x := range o.GetStatus().Conditions {
			if x.Type == cmapi.IssuerConditionReady {
				conds = append(conds, cond{x.Status, x.Reason, x.Message})
			}
		}
	default:
		return fmt.Errorf("unexpected type %T", obj)
	}
	if len(conds) == 0 {
		return fmt.Errorf("%T %s has no Ready condition yet", obj, key)
	}
	if conds[0].status != cmmeta.ConditionTrue {
		return fmt.Errorf("%T %s Ready=%s: %s: %s", obj, key, conds[0].status, conds[0].reason, conds[0].message)
	}
	return nil
}

func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("no PEM certificate in %q", data)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("parsing certificate: %v", err)
	}
	return cert
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func httpStatus(url string) (int, error) {
	resp, err := http.Get(url) //nolint:gosec,noctx // loopback health check in a test
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
