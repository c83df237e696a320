package webhookcert

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const secretName = "meshplane-webhook-cert"

// replica is one operator replica's certificate manager, recording its OnChange calls.
type replica struct {
	*Manager
	mu      sync.Mutex
	bundles [][]byte
}

func newReplica(c client.Client, ns string, clk *clocktesting.FakeClock) *replica {
	r := &replica{}
	r.Manager = &Manager{
		Client:    c,
		Namespace: ns,
		Name:      secretName,
		Spec:      testSpec,
		Store:     &Store{},
		Clock:     clk,
		OnChange: func(b []byte) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.bundles = append(r.bundles, b)
		},
	}
	return r
}

func (r *replica) changes() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.bundles...)
}

func getSecret(g Gomega, c client.Client, ns string) *corev1.Secret {
	s := &corev1.Secret{}
	g.ExpectWithOffset(1, c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: secretName}, s)).To(Succeed())
	return s
}

// served returns the DER of the leaf a Store serves.
func served(g Gomega, s *Store) []byte {
	cert, err := s.GetCertificate(nil)
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return cert.Certificate[0]
}

func TestEnsureCreatesOnceThenWritesOnlyOnChange(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	c := apiClient(t)
	ns := namespace(t, c)
	clk := clocktesting.NewFakeClock(t0)
	r := newReplica(c, ns, clk)

	g.Expect(r.Store.Check(nil)).NotTo(Succeed())
	m, next, err := r.Ensure(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(next).To(Equal(renewAt(m.Leaf())))

	s := getSecret(g, c, ns)
	g.Expect(s.Type).To(Equal(corev1.SecretTypeTLS))
	g.Expect(s.Labels).To(HaveKeyWithValue(labelManagedBy, managedByValue))
	g.Expect(s.Data).To(HaveKey(KeyCAKey))
	parsed, err := ParseMaterial(s.Data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(parsed.Leaf().Equal(m.Leaf())).To(BeTrue())
	g.Expect(r.Store.Check(nil)).To(Succeed())
	g.Expect(served(g, r.Store)).To(Equal(m.Leaf().Raw))
	g.Expect(r.Store.CABundle()).To(Equal(s.Data[KeyCABundle]))
	g.Expect(r.changes()).To(Equal([][]byte{s.Data[KeyCABundle]}))

	// Steady state: no write, no OnChange, from this replica or a new one.
	clk.Step(time.Hour)
	_, _, err = r.Ensure(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	other := newReplica(c, ns, clk)
	_, _, err = other.Ensure(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(getSecret(g, c, ns).ResourceVersion).To(Equal(s.ResourceVersion))
	g.Expect(r.changes()).To(HaveLen(1))
	g.Expect(served(g, other.Store)).To(Equal(m.Leaf().Raw))

	// Leaf renewal: one write, the bundle (and so OnChange) unchanged.
	clk.SetTime(next)
	m2, _, err := r.Ensure(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(m2.Leaf().Equal(m.Leaf())).To(BeFalse())
	g.Expect(getSecret(g, c, ns).ResourceVersion).NotTo(Equal(s.ResourceVersion))
	g.Expect(served(g, r.Store)).To(Equal(m2.Leaf().Raw))
	g.Expect(r.changes()).To(HaveLen(1))
}

// hookReader runs hook after the first Get it serves: a way to let another replica write
// between this replica's read and its write.
type hookReader struct {
	client.Reader
	once sync.Once
	hook func()
}

func (h *hookReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := h.Reader.Get(ctx, key, obj, opts...)
	h.once.Do(h.hook)
	return err
}

// Two replicas racing: whichever writes second finds its write rejected, re-reads and
// adopts the winner's content, without an error and without a second write.
func TestEnsureRacingReplicasConverge(t *testing.T) {
	ctx := context.Background()
	c := apiClient(t)
	ns := namespace(t, c)
	clk := clocktesting.NewFakeClock(t0)
	a, b := newReplica(c, ns, clk), newReplica(c, ns, clk)

	race := func(t *testing.T, wantChange bool) {
		g := NewWithT(t)
		var bErr error
		var rvAfterB string
		a.APIReader = &hookReader{Reader: c, hook: func() {
			_, _, bErr = b.Ensure(ctx)
			rvAfterB = getSecret(g, c, ns).ResourceVersion
		}}
		defer func() { a.APIReader = nil }()
		before := ""
		if s := (&corev1.Secret{}); c.Get(ctx, client.ObjectKey{Namespace: ns, Name: secretName}, s) == nil {
			before = s.ResourceVersion
		}
		_, _, err := a.Ensure(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(bErr).NotTo(HaveOccurred())
		s := getSecret(g, c, ns)
		g.Expect(s.ResourceVersion).To(Equal(rvAfterB), "the loser wrote nothing")
		g.Expect(s.ResourceVersion != before).To(Equal(wantChange))
		g.Expect(served(g, a.Store)).To(Equal(served(g, b.Store)))
		g.Expect(a.Store.CABundle()).To(Equal(s.Data[KeyCABundle]))
		g.Expect(b.Store.CABundle()).To(Equal(s.Data[KeyCABundle]))
	}
	// Both create.
	t.Run("create", func(t *testing.T) { race(t, true) })
	// Both rotate the CA.
	t.Run("rotate", func(t *testing.T) {
		m, _, err := a.Ensure(ctx)
		NewWithT(t).Expect(err).NotTo(HaveOccurred())
		clk.SetTime(renewAt(m.CA))
		race(t, true)
		NewWithT(t).Expect(bytes.Count(a.Store.CABundle(), []byte("BEGIN CERTIFICATE"))).To(Equal(2))
	})
}

// Many replicas at once, with no choreography: all succeed and serve the same certificate.
func TestEnsureConcurrentReplicas(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	c := apiClient(t)
	ns := namespace(t, c)
	clk := clocktesting.NewFakeClock(t0)
	replicas := make([]*replica, 5)
	for i := range replicas {
		replicas[i] = newReplica(c, ns, clk)
	}
	errs := make(chan error, len(replicas))
	start := make(chan struct{})
	for _, r := range replicas {
		go func() {
			<-start
			_, _, err := r.Ensure(ctx)
			errs <- err
		}()
	}
	close(start)
	for range replicas {
		g.Expect(<-errs).To(Succeed())
	}
	s := getSecret(g, c, ns)
	want, err := ParseMaterial(s.Data)
	g.Expect(err).NotTo(HaveOccurred())
	for _, r := range replicas {
		g.Expect(served(g, r.Store)).To(Equal(want.Leaf().Raw))
		g.Expect(r.changes()).To(Equal([][]byte{s.Data[KeyCABundle]}))
	}
}

func TestEnsureRefusesForeignSecret(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	c := apiClient(t)
	ns := namespace(t, c)
	foreign := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: secretName},
		Data:       map[string][]byte{"tls.crt": []byte("theirs")},
	}
	g.Expect(c.Create(ctx, foreign)).To(Succeed())
	r := newReplica(c, ns, clocktesting.NewFakeClock(t0))
	_, _, err := r.Ensure(ctx)
	g.Expect(err).To(MatchError(ContainSubstring("not managed by meshplane")))
	s := getSecret(g, c, ns)
	g.Expect(s.ResourceVersion).To(Equal(foreign.ResourceVersion))
	g.Expect(r.Store.Check(nil)).NotTo(Succeed())
}

func TestEnsureReplacesCorruptContent(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	c := apiClient(t)
	ns := namespace(t, c)
	g.Expect(c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: secretName, Labels: map[string]string{labelManagedBy: managedByValue}},
		Data:       map[string][]byte{KeyCABundle: []byte("junk"), KeyServingKey: []byte("junk"), "other": []byte("kept")},
	})).To(Succeed())
	r := newReplica(c, ns, clocktesting.NewFakeClock(t0))
	m, _, err := r.Ensure(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	s := getSecret(g, c, ns)
	parsed, err := ParseMaterial(s.Data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(parsed.Leaf().Equal(m.Leaf())).To(BeTrue())
	g.Expect(s.Data).To(HaveKeyWithValue("other", []byte("kept")))
}

// Start: loads the certificate, follows the plan on the clock, retries failures, stops
// with its context.
func TestStart(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	c := apiClient(t)
	ns := namespace(t, c)
	clk := clocktesting.NewFakeClock(t0)
	r := newReplica(c, ns, clk)
	g.Expect(r.NeedLeaderElection()).To(BeFalse())

	// A foreign Secret makes Ensure fail: Start keeps retrying, without serving anything.
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: secretName}}
	g.Expect(c.Create(ctx, foreign)).To(Succeed())

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Start(runCtx) }()
	defer func() {
		cancel()
		g.Eventually(done, 10*time.Second).Should(Receive(BeNil()))
	}()
	g.Eventually(clk.HasWaiters, 10*time.Second, 10*time.Millisecond).Should(BeTrue(), "waiting to retry")
	g.Expect(r.Store.Check(nil)).NotTo(Succeed())

	// Once the Secret is gone, the next retry creates ours.
	g.Expect(c.Delete(ctx, foreign)).To(Succeed())
	clk.Step(maxRetry)
	g.Eventually(r.changes, 10*time.Second, 10*time.Millisecond).Should(HaveLen(1))
	g.Expect(r.Store.Check(nil)).To(Succeed())
	m, err := ParseMaterial(getSecret(g, c, ns).Data)
	g.Expect(err).NotTo(HaveOccurred())

	// At the CA's renewal time the loop rotates it, and OnChange hands over the new bundle.
	g.Eventually(clk.HasWaiters, 10*time.Second, 10*time.Millisecond).Should(BeTrue())
	clk.SetTime(renewAt(m.CA))
	g.Eventually(r.changes, 10*time.Second, 10*time.Millisecond).Should(HaveLen(2))
	g.Expect(bytes.Count(r.changes()[1], []byte("BEGIN CERTIFICATE"))).To(Equal(2))
}

func TestStartRejectsBadConfig(t *testing.T) {
	g := NewWithT(t)
	err := (&Manager{}).Start(context.Background())
	g.Expect(err).To(MatchError(ContainSubstring("no Store")))
	err = (&Manager{Client: unusedClient{}, Store: &Store{}, Namespace: "ns", Name: "n", Spec: testSpec, Resync: 2 * time.Hour}).Start(context.Background())
	g.Expect(err).To(MatchError(ContainSubstring("shorter than the overlap")))
}

// unusedClient is a Client that is never called.
type unusedClient struct{ client.Client }
