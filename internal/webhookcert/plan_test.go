package webhookcert

import (
	"crypto/x509"
	"fmt"
	"net"
	"sort"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

var (
	t0       = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	day      = 24 * time.Hour
	testSpec = Spec{
		DNSNames:    []string{"webhook.meshplane-system.svc", "webhook.meshplane-system.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
)

// plan calls Plan and checks what must hold of every outcome: the result is complete and
// self-consistent, a second Plan at the same instant changes nothing, and the next check
// lies in the future.
func plan(t *testing.T, now time.Time, existing *Material, spec Spec) Outcome {
	t.Helper()
	g := NewWithT(t)
	out, err := Plan(now, existing, spec)
	g.Expect(err).NotTo(HaveOccurred())
	m := out.Material
	g.Expect(m.CA).NotTo(BeNil())
	g.Expect(m.Bundle).NotTo(BeEmpty())
	g.Expect(m.Bundle[0]).To(BeIdenticalTo(m.CA))
	g.Expect(m.Chain).NotTo(BeEmpty())
	g.Expect(out.Changed).To(Equal(len(out.Reasons) > 0))
	expectServes(g, m.CABundlePEM(), m, now, spec)
	again, err := Plan(now, m, spec)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again.Changed).To(BeFalse(), "second Plan at the same time: %v", again.Reasons)
	g.Expect(again.NextCheck).To(Equal(out.NextCheck))
	g.Expect(out.NextCheck.After(now)).To(BeTrue(), "next check %s not after %s", out.NextCheck, now)
	// Round trip through the Secret's encoding.
	data, err := m.SecretData()
	g.Expect(err).NotTo(HaveOccurred())
	parsed, err := ParseMaterial(data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(parsed.CA.Equal(m.CA)).To(BeTrue())
	g.Expect(parsed.Leaf().Equal(m.Leaf())).To(BeTrue())
	g.Expect(parsed.CABundlePEM()).To(Equal(m.CABundlePEM()))
	return out
}

// servesErr says why a client trusting bundle (PEM), with its clock at now, would reject
// the chain m serves, for every name in spec; nil if it accepts it.
func servesErr(bundle []byte, m *Material, now time.Time, spec Spec) error {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		return fmt.Errorf("empty bundle")
	}
	names := append([]string(nil), spec.DNSNames...)
	for _, ip := range spec.IPAddresses {
		names = append(names, ip.String())
	}
	for _, name := range names {
		opts := verifyOptions(roots, m.Chain, now)
		opts.DNSName = name
		if _, err := m.Leaf().Verify(opts); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func expectServes(g Gomega, bundle []byte, m *Material, now time.Time, spec Spec) {
	g.ExpectWithOffset(1, servesErr(bundle, m, now, spec)).To(Succeed())
}

// walk plans at each next check from from until until, as Manager would.
func walk(t *testing.T, m *Material, from, until time.Time, spec Spec) *Material {
	t.Helper()
	now := from
	for now.Before(until) {
		out := plan(t, now, m, spec)
		m = out.Material
		now = out.NextCheck
	}
	return m
}

func TestPlan(t *testing.T) {
	fresh := func(t *testing.T) *Material { return plan(t, t0, nil, testSpec).Material }
	mustParse := func(t *testing.T, data map[string][]byte) *Material {
		m, err := ParseMaterial(data)
		NewWithT(t).Expect(err).To(HaveOccurred())
		return m
	}
	corrupt := func(keys ...string) func(t *testing.T) *Material {
		return func(t *testing.T) *Material {
			data, err := fresh(t).SecretData()
			NewWithT(t).Expect(err).NotTo(HaveOccurred())
			for _, k := range keys {
				data[k] = []byte("-----BEGIN GARBAGE-----\nbm90IGEga2V5\n-----END GARBAGE-----\n")
			}
			return mustParse(t, data)
		}
	}
	tests := []struct {
		name     string
		existing func(t *testing.T) *Material
		at       time.Duration // after t0
		spec     func(Spec) Spec
		// What Plan must have done, relative to existing (nil existing counts as all new).
		newCA, newLeaf, changed bool
		bundleLen               int
	}{
		{name: "fresh install", existing: func(*testing.T) *Material { return nil }, newCA: true, newLeaf: true, changed: true, bundleLen: 1},
		{name: "empty secret", existing: func(*testing.T) *Material { return &Material{} }, newCA: true, newLeaf: true, changed: true, bundleLen: 1},
		{name: "steady state", existing: fresh, at: day, bundleLen: 1},
		{name: "just before leaf renewal", existing: fresh, at: 60*day - time.Hour, bundleLen: 1},
		{name: "leaf renewal at 2/3", existing: fresh, at: 60 * day, newLeaf: true, changed: true, bundleLen: 1},
		{name: "DNS names change", existing: fresh, at: day, spec: func(s Spec) Spec {
			s.DNSNames = []string{"other.meshplane-system.svc"}
			return s
		}, newLeaf: true, changed: true, bundleLen: 1},
		{name: "IP addresses change", existing: fresh, at: day, spec: func(s Spec) Spec {
			s.IPAddresses = []net.IP{net.ParseIP("::1")}
			return s
		}, newLeaf: true, changed: true, bundleLen: 1},
		{name: "DNS names reordered", existing: fresh, at: day, spec: func(s Spec) Spec {
			s.DNSNames = []string{s.DNSNames[1], s.DNSNames[0]}
			return s
		}, bundleLen: 1},
		{name: "leaf expired, CA still good: same CA issues", existing: fresh, at: 100 * day, newLeaf: true, changed: true, bundleLen: 1},
		{name: "leaf expired when CA rotation is due: old CA issues, rotation starts", existing: fresh, at: 250 * day, newCA: true, newLeaf: true, changed: true, bundleLen: 2},
		{name: "everything expired", existing: fresh, at: 400 * day, newCA: true, newLeaf: true, changed: true, bundleLen: 1},
		{name: "garbage serving cert", existing: corrupt(KeyServingCert), at: day, newLeaf: true, changed: true, bundleLen: 1},
		{name: "garbage serving key", existing: corrupt(KeyServingKey), at: day, newLeaf: true, changed: true, bundleLen: 1},
		// The old CA stays trusted and its leaf served through a normal rotation.
		{name: "garbage CA key", existing: corrupt(KeyCAKey), at: day, newCA: true, changed: true, bundleLen: 2},
		{name: "garbage CA bundle", existing: corrupt(KeyCABundle), at: day, newCA: true, newLeaf: true, changed: true, bundleLen: 1},
		{name: "garbage everywhere", existing: corrupt(KeyCABundle, KeyCAKey, KeyServingCert, KeyServingKey), newCA: true, newLeaf: true, changed: true, bundleLen: 1},
		{name: "serving key of another certificate", existing: func(t *testing.T) *Material {
			a, b := fresh(t), fresh(t)
			data, _ := a.SecretData()
			other, _ := b.SecretData()
			data[KeyServingKey] = other[KeyServingKey]
			return mustParse(t, data)
		}, at: day, newLeaf: true, changed: true, bundleLen: 1},
		{name: "leaf from a foreign CA", existing: func(t *testing.T) *Material {
			a, b := fresh(t), fresh(t)
			a.Chain, a.Key = b.Chain, b.Key
			return a
		}, at: day, newLeaf: true, changed: true, bundleLen: 1},
		{name: "CA missing from the bundle", existing: func(t *testing.T) *Material {
			m := fresh(t)
			m.Bundle = nil
			return m
		}, at: day, changed: true, bundleLen: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			spec := testSpec
			if tt.spec != nil {
				spec = tt.spec(spec)
			}
			existing := tt.existing(t)
			now := t0.Add(tt.at)
			out := plan(t, now, existing, spec)
			g.Expect(out.Changed).To(Equal(tt.changed), "reasons: %v", out.Reasons)
			m := out.Material
			g.Expect(m.Bundle).To(HaveLen(tt.bundleLen))
			if existing == nil {
				existing = &Material{}
			}
			g.Expect(existing.CA == nil || !m.CA.Equal(existing.CA)).To(Equal(tt.newCA), "new CA")
			g.Expect(existing.Leaf() == nil || !m.Leaf().Equal(existing.Leaf())).To(Equal(tt.newLeaf), "new leaf")
			g.Expect(m.Leaf().DNSNames).To(ConsistOf(spec.DNSNames))
			if !tt.changed {
				g.Expect(out.Material.CA).To(BeIdenticalTo(existing.CA))
				g.Expect(out.Material.Chain).To(Equal(existing.Chain))
			}
			if tt.newLeaf {
				g.Expect(m.Leaf().NotBefore).To(Equal(now.Add(-backdate)))
			}
		})
	}
}

func TestPlanRejectsBadSpecs(t *testing.T) {
	for name, s := range map[string]Spec{
		"no names":                 {},
		"leaf outlives CA":         {DNSNames: []string{"a"}, Validity: 2 * DefaultCAValidity},
		"overlap too long":         {DNSNames: []string{"a"}, Overlap: 30 * day},
		"negative validity":        {DNSNames: []string{"a"}, Validity: -time.Hour},
		"overlap too long for CAs": {DNSNames: []string{"a"}, CAValidity: 6 * time.Hour, Validity: 6 * time.Hour, Overlap: time.Hour},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Plan(t0, nil, s)
			NewWithT(t).Expect(err).To(MatchError(ContainSubstring("invalid certificate spec")))
		})
	}
}

// The CA rotation, one step at a time.
func TestPlanCARotation(t *testing.T) {
	g := NewWithT(t)
	m := plan(t, t0, nil, testSpec).Material
	ca1 := m.CA
	rotateAt := renewAt(ca1)
	g.Expect(rotateAt.Sub(t0)).To(BeNumerically("~", 243*day+8*time.Hour, time.Hour))

	// Up to the rotation only the leaf changes, always signed by CA1.
	m = walk(t, m, t0, rotateAt.Add(-time.Second), testSpec)
	g.Expect(m.Bundle).To(Equal([]*x509.Certificate{ca1}))
	leaf1 := m.Leaf()
	g.Expect(signedBy(leaf1, ca1)).To(BeTrue())

	// Step 1: CA2 signs from now on and joins the bundle; CA1's leaf is still served.
	out := plan(t, rotateAt, m, testSpec)
	g.Expect(out.Changed).To(BeTrue())
	m = out.Material
	ca2 := m.CA
	g.Expect(ca2.Equal(ca1)).To(BeFalse())
	g.Expect(m.Bundle).To(Equal([]*x509.Certificate{ca2, ca1}))
	g.Expect(m.Leaf()).To(BeIdenticalTo(leaf1))
	g.Expect(out.NextCheck).To(Equal(rotateAt.Add(DefaultOverlap)))

	// Nothing more until the overlap has passed.
	g.Expect(plan(t, rotateAt.Add(DefaultOverlap-time.Second), m, testSpec).Changed).To(BeFalse())

	// Step 2: the leaf switches to CA2; the bundle keeps both.
	out = plan(t, rotateAt.Add(DefaultOverlap), m, testSpec)
	g.Expect(out.Changed).To(BeTrue())
	m = out.Material
	g.Expect(m.Bundle).To(Equal([]*x509.Certificate{ca2, ca1}))
	g.Expect(signedBy(m.Leaf(), ca2)).To(BeTrue())
	g.Expect(out.NextCheck).To(Equal(rotateAt.Add(2 * DefaultOverlap)))
	g.Expect(plan(t, rotateAt.Add(2*DefaultOverlap-time.Second), m, testSpec).Changed).To(BeFalse())

	// Step 3: CA1 leaves the bundle.
	out = plan(t, rotateAt.Add(2*DefaultOverlap), m, testSpec)
	g.Expect(out.Changed).To(BeTrue())
	m = out.Material
	g.Expect(m.Bundle).To(Equal([]*x509.Certificate{ca2}))
	g.Expect(out.NextCheck).To(Equal(renewAt(m.Leaf())))

	// And the next rotation comes 2/3 of CA2's lifetime later.
	g.Expect(renewAt(ca2).Sub(rotateAt)).To(BeNumerically("~", 243*day+8*time.Hour, time.Hour))
}

// A leaf renewal due while the new CA is not yet published waits for the switch.
func TestPlanDefersLeafRenewalDuringOverlap(t *testing.T) {
	g := NewWithT(t)
	m := plan(t, t0, nil, testSpec).Material
	// Lose the CA key when the leaf is nearly due: a new CA starts a rotation.
	m.CA, m.CAKey = nil, nil
	due := renewAt(m.Leaf())
	out := plan(t, due.Add(-time.Minute), m, testSpec)
	g.Expect(out.Material.Bundle).To(HaveLen(2))
	g.Expect(out.Material.Leaf()).To(BeIdenticalTo(m.Leaf()))
	m = out.Material
	g.Expect(plan(t, due.Add(time.Minute), m, testSpec).Changed).To(BeFalse())
	out = plan(t, due.Add(-time.Minute+DefaultOverlap), m, testSpec)
	g.Expect(out.Changed).To(BeTrue())
	g.Expect(signedBy(out.Material.Leaf(), out.Material.CA)).To(BeTrue())
}

// snapshot is what the Secret holds from at on.
type snapshot struct {
	at time.Time
	m  *Material
}

// simulate runs Plan as Manager would, but late: at the first multiple of step at or after
// each next check (as if every Ensure were delayed by up to step), from t0 until until.
func simulate(t *testing.T, spec Spec, until time.Time, step time.Duration) []snapshot {
	t.Helper()
	var history []snapshot
	var m *Material
	for now := t0; now.Before(until); {
		out, err := Plan(now, m, spec)
		if err != nil {
			t.Fatal(err)
		}
		if out.Changed {
			m = out.Material
			history = append(history, snapshot{at: now, m: m})
		}
		next := now.Add(step)
		if out.NextCheck.After(next) {
			next = now.Add(out.NextCheck.Sub(now).Truncate(step))
		}
		now = next
	}
	return history
}

// stateAt returns the index in history of what the Secret held at at, or -1 before it
// existed.
func stateAt(history []snapshot, at time.Time) int {
	return sort.Search(len(history), func(i int) bool { return history[i].at.After(at) }) - 1
}

// dropped returns the first moments, if any, at which a client would reject the served
// certificate, when every replica picks up the Secret up to serveLag late, the webhook
// configurations get its bundle up to publishLag late, and the API server's clock is off
// by up to skew.
func dropped(history []snapshot, spec Spec, serveLag, publishLag, skew time.Duration) []string {
	// Check often where things change, and twice a day elsewhere.
	var times []time.Time
	end := history[len(history)-1].at.Add(30 * day)
	for at := history[0].at; at.Before(end); at = at.Add(12 * time.Hour) {
		times = append(times, at)
	}
	for _, s := range history {
		for d := time.Duration(0); d <= serveLag+publishLag+2*spec.Overlap+time.Hour; d += 5 * time.Minute {
			times = append(times, s.at.Add(d))
		}
	}
	pools := make([]*x509.CertPool, len(history))
	for i, s := range history {
		pools[i] = x509.NewCertPool()
		for _, c := range s.m.Bundle {
			pools[i].AddCert(c)
		}
	}
	// Far from a change every lag gives the same pair of states: verify each pair once.
	type check struct {
		served, published int
		at                time.Time
	}
	seen := map[check]bool{}
	var failures []string
	for _, at := range times {
		for _, lags := range [][2]time.Duration{{0, 0}, {serveLag, 0}, {0, publishLag}, {serveLag, publishLag}} {
			served, published := stateAt(history, at.Add(-lags[0])), stateAt(history, at.Add(-lags[1]))
			if served < 0 || published < 0 {
				continue // not installed yet
			}
			for _, clientNow := range []time.Time{at.Add(-skew), at, at.Add(skew)} {
				c := check{served, published, clientNow}
				if seen[c] {
					continue
				}
				seen[c] = true
				m := history[served].m
				opts := verifyOptions(pools[published], m.Chain, clientNow)
				opts.DNSName = spec.DNSNames[0]
				if _, err := m.Leaf().Verify(opts); err != nil {
					failures = append(failures, fmt.Sprintf("at %s (serve lag %s, publish lag %s, client clock %s): %v",
						at.Sub(t0), lags[0], lags[1], clientNow.Sub(at), err))
					if len(failures) == 5 {
						return failures
					}
				}
			}
		}
	}
	return failures
}

// The property rotation exists for: over two CA rotations, at every instant, the served
// certificate verifies against the published bundle, however late (within the overlap)
// replicas and webhook configurations catch up.
func TestPlanNeverDropsRequests(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	history := simulate(t, testSpec, t0.Add(2*DefaultCAValidity), 10*time.Minute)
	var cas []string
	for _, s := range history {
		if len(cas) == 0 || cas[len(cas)-1] != s.m.CA.Subject.CommonName {
			cas = append(cas, s.m.CA.Subject.CommonName)
		}
	}
	g.Expect(cas).To(HaveLen(3), "two rotations in two years")
	lag := DefaultOverlap - 10*time.Minute
	g.Expect(dropped(history, testSpec, lag, lag, 4*time.Minute)).To(BeEmpty())
}

// Controls for the test above: the same check finds dropped requests without the
// overlap, or when replicas or webhook configurations catch up later than it.
func TestPlanDropCheckFindsDrops(t *testing.T) {
	t.Parallel()
	t.Run("no overlap", func(t *testing.T) {
		spec := testSpec
		spec.Overlap = time.Nanosecond
		history := simulate(t, spec, t0.Add(DefaultCAValidity), 10*time.Minute)
		NewWithT(t).Expect(dropped(history, spec, 50*time.Minute, 50*time.Minute, 0)).NotTo(BeEmpty())
	})
	t.Run("catching up later than the overlap", func(t *testing.T) {
		history := simulate(t, testSpec, t0.Add(DefaultCAValidity), 10*time.Minute)
		lag := DefaultOverlap + 10*time.Minute
		g := NewWithT(t)
		g.Expect(dropped(history, testSpec, lag, 0, 0)).NotTo(BeEmpty())
		g.Expect(dropped(history, testSpec, 0, lag, 0)).NotTo(BeEmpty())
	})
}

func TestParseMaterialReportsProblems(t *testing.T) {
	m := plan(t, t0, nil, testSpec).Material
	good, err := m.SecretData()
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	for name, tt := range map[string]struct {
		key, value, problem string
	}{
		"stray bytes":        {KeyCABundle, string(good[KeyCABundle]) + "junk", "not PEM"},
		"wrong block":        {KeyServingCert, "-----BEGIN FOO-----\n-----END FOO-----\n", `"FOO"`},
		"bad certificate":    {KeyCABundle, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "parsing certificate"},
		"bad key":            {KeyCAKey, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "unparseable PRIVATE KEY"},
		"CA key of a leaf":   {KeyCAKey, string(good[KeyServingKey]), "matches no CA certificate"},
		"serving key absent": {KeyServingKey, "", "no PEM private key"},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			data := map[string][]byte{}
			for k, v := range good {
				data[k] = v
			}
			data[tt.key] = []byte(tt.value)
			parsed, err := ParseMaterial(data)
			g.Expect(err).To(MatchError(ContainSubstring(tt.problem)))
			g.Expect(err.Error()).To(ContainSubstring(tt.key))
			g.Expect(parsed).NotTo(BeNil())
			// Never echo key material.
			for _, k := range []string{KeyCAKey, KeyServingKey} {
				g.Expect(err.Error()).NotTo(ContainSubstring(string(good[k][30:60])))
			}
		})
	}
}

// Whatever a Secret holds, Plan neither panics nor returns anything but usable material.
func FuzzPlan(f *testing.F) {
	m, err := Plan(t0, nil, testSpec)
	if err != nil {
		f.Fatal(err)
	}
	data, err := m.Material.SecretData()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data[KeyCABundle], data[KeyCAKey], data[KeyServingCert], data[KeyServingKey], int64(0))
	f.Add([]byte("x"), []byte{}, []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), []byte{}, int64(400*day))
	f.Fuzz(func(t *testing.T, bundle, caKey, chain, key []byte, after int64) {
		parsed, _ := ParseMaterial(map[string][]byte{KeyCABundle: bundle, KeyCAKey: caKey, KeyServingCert: chain, KeyServingKey: key})
		plan(t, t0.Add(time.Duration(after)%(1000*day)), parsed, testSpec)
	})
}
