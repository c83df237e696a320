// Package webhookcert gives the operator its own CA and serving certificate for its
// admission webhooks, kept in a Secret in its namespace: Plan decides (purely, from the
// certificates and the time) what the Secret should hold, Manager reads and writes the
// Secret and loops, and Store serves the result to the webhook server and hands the CA
// bundle to whoever renders the webhook configurations.
//
// Nothing here patches webhook configurations: the operator renders them itself and takes
// caBundle from Store.CABundle, re-rendering when Manager.OnChange fires.
package webhookcert

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"
)

// Defaults for the zero values of Spec.
const (
	DefaultCAValidity = 365 * 24 * time.Hour
	DefaultValidity   = 90 * 24 * time.Hour
	DefaultOverlap    = time.Hour
)

// Spec is the certificate the webhook server needs.
type Spec struct {
	// DNSNames and IPAddresses go into the serving certificate; at least one is required.
	// For a Service: <service>.<namespace>.svc and <service>.<namespace>.svc.cluster.local.
	DNSNames    []string
	IPAddresses []net.IP
	// CAValidity is the CA's lifetime (default one year); it is replaced after 2/3 of it.
	CAValidity time.Duration
	// Validity is the serving certificate's lifetime (default 90 days); it is replaced
	// after 2/3 of it.
	Validity time.Duration
	// Overlap is how long each step of a CA rotation waits for the previous one to reach
	// everyone (default one hour). It must exceed the time for a Secret change to reach
	// every replica's Store and for a new CA bundle to reach the webhook configurations.
	Overlap time.Duration
}

func (s Spec) withDefaults() Spec {
	if s.CAValidity == 0 {
		s.CAValidity = DefaultCAValidity
	}
	if s.Validity == 0 {
		s.Validity = DefaultValidity
	}
	if s.Overlap == 0 {
		s.Overlap = DefaultOverlap
	}
	return s
}

func (s Spec) validate() error {
	var errs []error
	if len(s.DNSNames) == 0 && len(s.IPAddresses) == 0 {
		errs = append(errs, errors.New("no DNS names or IP addresses"))
	}
	if s.CAValidity < 0 || s.Validity < 0 || s.Overlap < 0 {
		errs = append(errs, errors.New("negative duration"))
	}
	if s.Validity > s.CAValidity {
		errs = append(errs, fmt.Errorf("serving certificate validity %s exceeds CA validity %s", s.Validity, s.CAValidity))
	}
	// A serving certificate has at least a third of its life left when a rotation starts,
	// and must last through the overlap before it is replaced; the old CA must last through
	// both overlaps before it is dropped.
	if 3*(s.Overlap+backdate) >= s.Validity {
		errs = append(errs, fmt.Errorf("overlap %s is too long for serving certificate validity %s", s.Overlap, s.Validity))
	}
	if 3*(2*s.Overlap+backdate) >= s.CAValidity {
		errs = append(errs, fmt.Errorf("overlap %s is too long for CA validity %s", s.Overlap, s.CAValidity))
	}
	return errors.Join(errs...)
}

// Outcome is what Plan decided.
type Outcome struct {
	// Material is what the Secret should hold.
	Material *Material
	// Changed says Material differs from the input.
	Changed bool
	// Reasons say what changed and why, for logs; empty when nothing changed.
	Reasons []string
	// NextCheck is when Plan will next have something to do, if nothing else changes.
	NextCheck time.Time
}

// Plan returns what the Secret should hold at now, given what it holds (existing, nil when
// absent). It keeps whatever is still usable and replaces the rest; it errs only on an
// invalid spec or when key generation fails.
//
// A CA rotation never leaves a served certificate that clients do not trust, assuming every
// replica re-reads the Secret and the webhook configurations get the new bundle within
// Spec.Overlap. With the defaults (CA one year, serving certificate 90 days, overlap 1h):
//
//	day 0        CA1 created; leaf signed by CA1; bundle [CA1]
//	day 60, 120, 180, 240
//	             leaf renewed (2/3 of its life), still signed by CA1; bundle unchanged
//	day 243.3    (2/3 of CA1's life) CA2 created and becomes the signer; bundle [CA2 CA1];
//	             the leaf signed by CA1 keeps being served, so clients on either bundle
//	             accept it
//	  +1h        the new bundle has reached the webhook configurations: the leaf is
//	             re-issued by CA2; bundle unchanged, so clients still on it accept both leaves
//	  +2h        every replica now serves the CA2 leaf: CA1 leaves the bundle [CA2]
//	day 303.3    leaf renewed by CA2 ... and CA2 rotates at day 486.7
//
// The times come from the certificates themselves (each NotBefore is its issue time minus
// a small backdate for clock skew), so the Secret needs no other state and any replica can
// take the next step. A leaf renewal that falls inside the first overlap waits for the
// switch to the new CA. A leaf that is missing, broken, expired, untrusted by the bundle
// or has the wrong names is replaced at once, by the CA that is already published when it
// can still sign, else by the new one (no overlap can help a leaf that is unusable anyway).
// If the CA key is lost or unusable, a new CA starts a rotation like the above, keeping
// the old bundle and leaf while they are valid.
func Plan(now time.Time, existing *Material, want Spec) (Outcome, error) {
	want = want.withDefaults()
	if err := want.validate(); err != nil {
		return Outcome{}, fmt.Errorf("invalid certificate spec: %w", err)
	}
	m := existing.clone()
	var reasons []string
	note := func(format string, args ...any) { reasons = append(reasons, fmt.Sprintf(format, args...)) }

	// Expired or not yet valid certificates are of no use to anyone. A CA that cannot sign
	// stays in the bundle (while valid) only as a previous CA.
	if m.CA != nil {
		switch {
		case !validAt(m.CA, now):
			note("CA %q is not valid now", m.CA.Subject.CommonName)
			m.CA, m.CAKey = nil, nil
		case m.CAKey == nil || !publicKeyEqual(m.CA.PublicKey, m.CAKey.Public()) || !m.CA.IsCA:
			note("CA %q cannot sign: no matching key", m.CA.Subject.CommonName)
			m.CA, m.CAKey = nil, nil
		default:
			if !slices.ContainsFunc(m.Bundle, m.CA.Equal) {
				note("adding CA %q to the bundle", m.CA.Subject.CommonName)
			}
			m.Bundle = append([]*x509.Certificate{m.CA}, slices.DeleteFunc(m.Bundle, func(c *x509.Certificate) bool { return c.Equal(m.CA) })...)
		}
	}
	m.Bundle = slices.DeleteFunc(m.Bundle, func(c *x509.Certificate) bool {
		if c == m.CA || validAt(c, now) {
			return false
		}
		note("dropping CA %q from the bundle: not valid now", c.Subject.CommonName)
		return true
	})
	if leaf := m.Leaf(); leaf != nil {
		if problem := leafProblem(now, m, want); problem != "" {
			note("replacing serving certificate: %s", problem)
			m.Chain, m.Key = nil, nil
		}
	}

	// The current signer replaces a missing or broken leaf, and renews its own leaf at 2/3
	// of its life, before any CA rotation below: this CA is already published, so its new
	// leaf is trusted at once.
	if m.CA != nil {
		switch leaf := m.Leaf(); {
		case leaf == nil:
			if err := issueLeaf(now, m, want); err != nil {
				return Outcome{}, err
			}
			note("issuing serving certificate")
		case signedBy(leaf, m.CA) && !now.Before(renewAt(leaf)):
			if err := issueLeaf(now, m, want); err != nil {
				return Outcome{}, err
			}
			note("renewing serving certificate: 2/3 of its lifetime passed")
		}
	}

	// New signer: on first install, when the CA is unusable, or at 2/3 of the CA's life
	// unless a previous rotation is still finishing.
	switch {
	case m.CA == nil:
		if err := rotateCA(now, m, want); err != nil {
			return Outcome{}, err
		}
		note("creating CA %q", m.CA.Subject.CommonName)
	case !now.Before(renewAt(m.CA)) && len(m.Bundle) == 1:
		old := m.CA.Subject.CommonName
		if err := rotateCA(now, m, want); err != nil {
			return Outcome{}, err
		}
		note("rotating CA: 2/3 of %q's lifetime passed; %q added to the bundle", old, m.CA.Subject.CommonName)
	}

	// A leaf from an earlier CA is re-issued once the new CA has been in the bundle for
	// the overlap. With no usable leaf at all, the new CA issues one at once.
	switch leaf := m.Leaf(); {
	case leaf == nil:
		if err := issueLeaf(now, m, want); err != nil {
			return Outcome{}, err
		}
		note("issuing serving certificate")
	case !signedBy(leaf, m.CA) && !now.Before(issuedAt(m.CA).Add(want.Overlap)):
		if err := issueLeaf(now, m, want); err != nil {
			return Outcome{}, err
		}
		note("switching serving certificate to CA %q: it has been in the bundle for the overlap", m.CA.Subject.CommonName)
	}

	// Earlier CAs leave once the current CA's leaf has been served long enough for every
	// replica to have picked it up.
	if len(m.Bundle) > 1 && signedBy(m.Leaf(), m.CA) && !now.Before(issuedAt(m.Leaf()).Add(want.Overlap)) {
		for _, c := range m.Bundle[1:] {
			note("dropping CA %q from the bundle: no longer signs a served certificate", c.Subject.CommonName)
		}
		m.Bundle = m.Bundle[:1]
	}

	return Outcome{
		Material:  m,
		Changed:   len(reasons) > 0,
		Reasons:   reasons,
		NextCheck: nextCheck(m, want),
	}, nil
}

// nextCheck is the earliest time Plan would act on m.
func nextCheck(m *Material, want Spec) time.Time {
	leaf := m.Leaf()
	var times []time.Time
	for _, c := range m.Bundle {
		times = append(times, c.NotAfter)
	}
	times = append(times, leaf.NotAfter)
	bySigner := signedBy(leaf, m.CA)
	switch {
	case !bySigner:
		times = append(times, issuedAt(m.CA).Add(want.Overlap))
	case len(m.Bundle) > 1:
		times = append(times, renewAt(leaf), issuedAt(leaf).Add(want.Overlap))
	default:
		times = append(times, renewAt(leaf), renewAt(m.CA))
	}
	return slices.MinFunc(times, time.Time.Compare)
}

// leafProblem says why the served leaf must be replaced now, or "".
func leafProblem(now time.Time, m *Material, want Spec) string {
	leaf := m.Leaf()
	if m.Key == nil || !publicKeyEqual(leaf.PublicKey, m.Key.Public()) {
		return "no matching key"
	}
	if !validAt(leaf, now) {
		return "not valid now"
	}
	if !sameStrings(leaf.DNSNames, want.DNSNames) || !sameIPs(leaf.IPAddresses, want.IPAddresses) {
		return "DNS names or IP addresses changed"
	}
	roots := x509.NewCertPool()
	for _, c := range m.Bundle {
		roots.AddCert(c)
	}
	if _, err := leaf.Verify(verifyOptions(roots, m.Chain, now)); err != nil {
		return "not trusted by the CA bundle"
	}
	return ""
}

// signedBy reports whether ca issued leaf directly (as every leaf Plan issues is).
func signedBy(leaf, ca *x509.Certificate) bool {
	return leaf != nil && ca != nil && leaf.CheckSignatureFrom(ca) == nil
}

func verifyOptions(roots *x509.CertPool, chain []*x509.Certificate, now time.Time) x509.VerifyOptions {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	return x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
}

func rotateCA(now time.Time, m *Material, want Spec) error {
	ca, key, err := newCA(now, want.CAValidity)
	if err != nil {
		return err
	}
	m.CA, m.CAKey = ca, key
	m.Bundle = append([]*x509.Certificate{ca}, m.Bundle...)
	return nil
}

func issueLeaf(now time.Time, m *Material, want Spec) error {
	chain, key, err := newLeaf(now, want.Validity, want.DNSNames, want.IPAddresses, m.CA, m.CAKey)
	if err != nil {
		return err
	}
	m.Chain, m.Key = chain, key
	return nil
}

func validAt(c *x509.Certificate, now time.Time) bool {
	return !now.Before(c.NotBefore) && now.Before(c.NotAfter)
}

// issuedAt undoes the backdate.
func issuedAt(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(backdate)
}

// renewAt is 2/3 of the way through c's validity.
func renewAt(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func sameIPs(a, b []net.IP) bool {
	str := func(ips []net.IP) []string {
		s := make([]string, len(ips))
		for i, ip := range ips {
			s[i] = ip.String()
		}
		return s
	}
	return sameStrings(str(a), str(b))
}
