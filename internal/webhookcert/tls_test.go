package webhookcert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"
)

// webhookClient calls a server the way the API server calls a webhook: a new TLS
// connection per request, trusting only the caBundle it was last given, with the time
// taken from the test's clock (the certificates live in the fake clock's time).
type webhookClient struct {
	clk   *clocktesting.FakeClock
	roots atomic.Pointer[x509.CertPool]
	http  *http.Client

	mu        sync.Mutex
	ok, fails int
	lastErr   error
}

func newWebhookClient(clk *clocktesting.FakeClock) *webhookClient {
	w := &webhookClient{clk: clk}
	w.http = &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{
				// Verification is done below, against the fake clock's time.
				InsecureSkipVerify: true, //nolint:gosec // VerifyConnection verifies
				VerifyConnection: func(cs tls.ConnectionState) error {
					inter := x509.NewCertPool()
					for _, c := range cs.PeerCertificates[1:] {
						inter.AddCert(c)
					}
					_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
						Roots:         w.roots.Load(),
						Intermediates: inter,
						CurrentTime:   w.clk.Now(),
						DNSName:       "127.0.0.1",
						KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
					})
					return err
				},
			},
		},
	}
	return w
}

// trust replaces the client's trust with bundle, as a caBundle update does.
func (w *webhookClient) trust(bundle []byte) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	w.roots.Store(pool)
}

func (w *webhookClient) get(url string) {
	resp, err := w.http.Get(url)
	if err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = errors.New(resp.Status)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.fails++
		w.lastErr = err
		return
	}
	w.ok++
}

func (w *webhookClient) counts() (ok, fails int, lastErr error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ok, w.fails, w.lastErr
}

// A client that keeps calling the server throughout a CA rotation never fails, although
// the server switches certificates as soon as the Secret changes while the client learns
// each new bundle only after it has made requests against the new certificate (as when
// the webhook configurations are re-rendered late).
func TestRotationUnderLoad(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	c := apiClient(t)
	ns := namespace(t, c)
	clk := clocktesting.NewFakeClock(t0)
	r := newReplica(c, ns, clk)
	m0, next, err := r.Ensure(ctx)
	g.Expect(err).NotTo(HaveOccurred())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(tls.NewListener(ln, &tls.Config{GetCertificate: r.Store.GetCertificate})) }()
	defer srv.Close()
	url := "https://" + ln.Addr().String() + "/"

	client := newWebhookClient(clk)
	client.trust(r.Store.CABundle())
	published := len(r.changes())

	// Requests run until the timeline is done, at most maxRequests.
	const maxRequests = 20000
	stop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for range maxRequests {
			select {
			case <-stop:
				return
			default:
			}
			client.get(url)
		}
	}()
	// waitForRequests lets a few more requests complete in the current state.
	waitForRequests := func() {
		ok, _, _ := client.counts()
		g.Eventually(func() int { n, _, _ := client.counts(); return n }, 10*time.Second).Should(BeNumerically(">=", ok+3))
	}
	waitForRequests()

	ca1 := r.Store.CABundle()
	rotateAt := renewAt(m0.CA)
	var sawBoth, sawSwitch bool
	for clk.Now().Before(rotateAt.Add(2*DefaultOverlap + time.Minute)) {
		clk.SetTime(next)
		m, n, err := r.Ensure(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		next = n
		waitForRequests()
		// The new bundle reaches the client late.
		if changes := r.changes(); len(changes) > published {
			published = len(changes)
			client.trust(changes[published-1])
			waitForRequests()
		}
		if len(m.Bundle) == 2 {
			sawBoth = true
			sawSwitch = sawSwitch || signedBy(m.Leaf(), m.CA)
		}
	}
	_, fails, lastErr := client.counts()
	g.Expect(fails).To(BeZero(), "last error: %v", lastErr)
	g.Expect(sawBoth).To(BeTrue(), "the bundle held both CAs")
	g.Expect(sawSwitch).To(BeTrue(), "the server switched to the new CA while both were trusted")
	g.Expect(r.Store.CABundle()).NotTo(Equal(ca1))

	// Control: a client that never learnt the new bundle now fails.
	client.trust(ca1)
	g.Eventually(func() int { _, n, _ := client.counts(); return n }, 10*time.Second).Should(BeNumerically(">", 0))
	close(stop)
	<-loopDone
	ok, _, _ := client.counts()
	g.Expect(ok).To(BeNumerically("<", maxRequests), "the loop ran until stopped")
}
