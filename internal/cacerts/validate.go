// Package cacerts validates the "cacerts" Secret that plugs a user's CA into istiod, and
// builds one from a cert-manager issued CA certificate.
//
// istiod mounts the Secret at /etc/cacerts and signs workload certificates with ca-cert.pem
// and ca-key.pem. It hands cert-chain.pem and root-cert.pem to every workload as the chain
// above its certificate and the mesh's trust anchor, so a key in either would be exposed.
package cacerts

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Keys of the cacerts Secret.
const (
	// KeyCACert holds the CA certificate istiod signs workload certificates with.
	KeyCACert = "ca-cert.pem"
	// KeyCAKey holds the private key of KeyCACert.
	KeyCAKey = "ca-key.pem"
	// KeyRootCert holds the mesh's root certificate (more than one during a root rotation).
	KeyRootCert = "root-cert.pem"
	// KeyCertChain holds the chain from KeyCACert up to the root: ca-cert first, root last.
	KeyCertChain = "cert-chain.pem"
)

// maxExpiryWarning bounds how long before a certificate expires Validate warns about it.
const maxExpiryWarning = 30 * 24 * time.Hour

// warnFrom is when Validate starts warning that c expires: a sixth of its lifetime before
// the end, at most 30 days before. A plugged CA, which nobody renews automatically, is
// flagged a month ahead; a cert-manager CA (renewed a third of its lifetime before the end,
// by default) only once renewal has been failing for a while.
func warnFrom(c *x509.Certificate) time.Time {
	return c.NotAfter.Add(-min(c.NotAfter.Sub(c.NotBefore)/6, maxExpiryWarning))
}

// NextWarning returns the earliest time after now at which Validate would start warning
// that a certificate of data expires, so a controller can look again then. ok is false
// when no such time is ahead.
func NextWarning(data map[string][]byte, now time.Time) (at time.Time, ok bool) {
	v := &validation{now: now}
	for _, c := range v.parse(data).labelled() {
		if w := warnFrom(c.Certificate); w.After(now) && (!ok || w.Before(at)) {
			at, ok = w, true
		}
	}
	return at, ok
}

// InvalidError lists why CA material cannot be used, in a stable order. Problems name the
// Secret key and what is wrong with it; they never contain key material.
type InvalidError struct {
	Problems []string
}

// maxReported bounds how many problems Error lists, so that a message built from
// arbitrary data still fits a status condition.
const maxReported = 10

func (e *InvalidError) Error() string {
	if n := len(e.Problems); n > maxReported {
		return fmt.Sprintf("cacerts: %s; and %d more", strings.Join(e.Problems[:maxReported], "; "), n-maxReported)
	}
	return "cacerts: " + strings.Join(e.Problems, "; ")
}

// Validate checks a cacerts Secret's data as istiod will use it at now: every key present
// and parseable, ca-key.pem matching ca-cert.pem, every certificate a CA that may sign
// certificates, cert-chain.pem leading in order from ca-cert.pem to a self-signed root of
// root-cert.pem, and every certificate valid at now. Problems come back as an
// *InvalidError. Warnings are about material istiod can use today but that needs attention
// soon, such as a certificate near its expiry (see warnFrom). Messages depend only on the
// data and on where now falls among the certificates' validity bounds (never on now
// itself), so a status built from them does not change from one reconcile to the next.
func Validate(data map[string][]byte, now time.Time) (warnings []string, err error) {
	v := &validation{now: now}
	m := v.parse(data)
	v.checkKeyPair(m)
	v.checkCAs(m)
	v.checkChain(m)
	v.checkValidity(m)
	if len(v.problems) == 0 {
		// The specific checks passed; verify once more exactly as istiod does, which also
		// catches what they do not cover (path length and name constraints, weak signatures).
		v.checkAsIstiod(m)
	}
	return v.warnings, v.err()
}

// material is what could be parsed of a cacerts Secret; parts that could not are nil.
type material struct {
	// caCert is the first certificate of ca-cert.pem, the only one istiod signs with.
	caCert *x509.Certificate
	caKey  crypto.Signer
	chain  []*x509.Certificate
	roots  []*x509.Certificate
}

type validation struct {
	now      time.Time
	problems []string
	warnings []string
}

func (v *validation) problem(format string, args ...any) {
	v.problems = appendNew(v.problems, fmt.Sprintf(format, args...))
}

func (v *validation) warn(format string, args ...any) {
	v.warnings = appendNew(v.warnings, fmt.Sprintf(format, args...))
}

func (v *validation) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	return &InvalidError{Problems: v.problems}
}

// parse decodes every key, recording a problem for each that is missing or unusable.
func (v *validation) parse(data map[string][]byte) *material {
	m := &material{}
	if caCerts := v.certs(data, KeyCACert); len(caCerts) > 0 {
		m.caCert = caCerts[0]
		if len(caCerts) > 1 {
			v.warn("%s holds %d certificates; istiod signs with the first and ignores the rest, which belong in %s", KeyCACert, len(caCerts), KeyCertChain)
		}
	}
	if b, ok := data[KeyCAKey]; !ok {
		v.problem("%s is missing", KeyCAKey)
	} else if _, key, problem := decodeKey(KeyCAKey, b); problem != "" {
		v.problem("%s", problem)
	} else {
		m.caKey = key
	}
	m.chain = v.certs(data, KeyCertChain)
	m.roots = v.certs(data, KeyRootCert)
	return m
}

// certs decodes the certificates of data[key], recording a problem for anything else.
func (v *validation) certs(data map[string][]byte, key string) []*x509.Certificate {
	b, ok := data[key]
	if !ok {
		v.problem("%s is missing", key)
		return nil
	}
	certs, problems := decodeCerts(key, b)
	for _, p := range problems {
		v.problem("%s", p)
	}
	return certs
}

func (v *validation) checkKeyPair(m *material) {
	if m.caCert != nil && m.caKey != nil && !publicKeyEqual(m.caCert.PublicKey, m.caKey.Public()) {
		v.problem("%s does not match %s", KeyCAKey, KeyCACert)
	}
}

// checkCAs checks what every certificate from ca-cert.pem up must be.
func (v *validation) checkCAs(m *material) {
	for _, c := range m.labelled() {
		if !c.BasicConstraintsValid || !c.IsCA {
			v.problem("%s is not a CA certificate (its basic constraints lack CA:TRUE)", c.label)
		}
		// Without a key usage extension any usage is allowed (RFC 5280, and what Go and
		// BoringSSL accept), so only an extension that leaves out keyCertSign is wrong.
		if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
			v.problem("%s may not sign certificates (its key usage lacks keyCertSign)", c.label)
		}
		// istiod verifies ca-cert.pem for server authentication, and an extended key usage
		// anywhere in the chain must allow it.
		if (len(c.ExtKeyUsage) > 0 || len(c.UnknownExtKeyUsage) > 0) && !allowsServerAuth(c.Certificate) {
			v.problem("%s has an extended key usage without serverAuth, which istiod requires of every certificate in the chain (drop the extension or add serverAuth)", c.label)
		}
		if c.root && !selfSigned(c.Certificate) {
			v.problem("%s is not self-signed (it is issued by %q); it must hold the mesh's root certificate", c.label, c.Issuer.String())
		}
	}
}

// checkChain checks that cert-chain.pem lists ca-cert.pem and its issuers in order, and
// that they lead to root-cert.pem.
func (v *validation) checkChain(m *material) {
	if m.caCert != nil && len(m.chain) > 0 && !m.chain[0].Equal(m.caCert) {
		v.problem("%s does not start with %s (it starts with %q)", KeyCertChain, KeyCACert, m.chain[0].Subject.String())
	}
	for i := 0; i+1 < len(m.chain); i++ {
		if !issuedBy(m.chain[i], m.chain[i+1]) {
			v.problem("%s is out of order: certificate %d (%q) is not issued by certificate %d (%q); list %s first, then each issuer, the root last",
				KeyCertChain, i+1, m.chain[i].Subject.String(), i+2, m.chain[i+1].Subject.String(), KeyCACert)
			break
		}
	}
	if m.caCert != nil && len(m.roots) > 0 {
		if _, broken := m.pathToRoot(); broken != "" {
			v.problem("%s does not chain to %s: %s", KeyCACert, KeyRootCert, broken)
		}
	}
}

func (v *validation) checkValidity(m *material) {
	for _, c := range m.labelled() {
		switch {
		case v.now.Before(c.NotBefore):
			v.problem("%s is not valid before %s", c.label, formatTime(c.NotBefore))
		case v.now.After(c.NotAfter):
			v.problem("%s expired at %s", c.label, formatTime(c.NotAfter))
		case !v.now.Before(warnFrom(c.Certificate)):
			v.warn("%s expires soon, at %s; renew it before then", c.label, formatTime(c.NotAfter))
		}
	}
}

// checkAsIstiod verifies ca-cert.pem the way istiod does before it uses the material.
func (v *validation) checkAsIstiod(m *material) {
	roots, intermediates := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range m.roots {
		roots.AddCert(c)
	}
	for _, c := range m.chain {
		intermediates.AddCert(c)
	}
	// Like istiod, ask for the default usage (server authentication).
	opts := x509.VerifyOptions{Roots: roots, Intermediates: intermediates, CurrentTime: v.now}
	if _, err := m.caCert.Verify(opts); err != nil {
		v.problem("%s does not verify against %s as istiod checks it: %v", KeyCACert, KeyRootCert, err)
	}
}

// labelledCert is a certificate with the words that name it in a message.
type labelledCert struct {
	*x509.Certificate
	label string
	root  bool
}

// labelled returns every distinct certificate of the material from ca-cert.pem up: the CA,
// the rest of cert-chain.pem, then root-cert.pem. A certificate in several keys is named
// after the first of ca-cert.pem, root-cert.pem, cert-chain.pem that holds it.
func (m *material) labelled() []labelledCert {
	var out []labelledCert
	if m.caCert != nil {
		out = append(out, labelledCert{Certificate: m.caCert, label: KeyCACert})
	}
	for i, c := range m.chain {
		if c.Equal(m.caCert) || indexOf(m.roots, c) >= 0 || indexOf(m.chain[:i], c) >= 0 {
			continue
		}
		out = append(out, labelledCert{Certificate: c, label: fmt.Sprintf("%s certificate %d (%q)", KeyCertChain, i+1, c.Subject.String())})
	}
	for i, c := range m.roots {
		if indexOf(m.roots[:i], c) >= 0 {
			continue
		}
		label := KeyRootCert
		if len(m.roots) > 1 {
			label = fmt.Sprintf("%s certificate %d (%q)", KeyRootCert, i+1, c.Subject.String())
		}
		out = append(out, labelledCert{Certificate: c, label: label, root: true})
	}
	return out
}

// pathToRoot follows issuers from ca-cert.pem through cert-chain.pem to a root of
// root-cert.pem and returns the path, root last. When there is none, it says where the
// path breaks off instead.
func (m *material) pathToRoot() ([]*x509.Certificate, string) {
	cur := m.caCert
	path := []*x509.Certificate{cur}
	for {
		if indexOf(m.roots, cur) >= 0 {
			return path, ""
		}
		if root := issuerIn(m.roots, cur); root != nil {
			return append(path, root), ""
		}
		next := issuerIn(m.chain, cur)
		if next == nil || indexOf(path, next) >= 0 {
			switch {
			case selfSigned(cur) && cur == m.caCert:
				return nil, "it is self-signed but not in " + KeyRootCert
			case selfSigned(cur):
				return nil, fmt.Sprintf("%s leads to the root %q, which is not in %s", KeyCertChain, cur.Subject.String(), KeyRootCert)
			default:
				return nil, fmt.Sprintf("no certificate in %s or %s issued %q (its issuer is %q)", KeyCertChain, KeyRootCert, cur.Subject.String(), cur.Issuer.String())
			}
		}
		path = append(path, next)
		cur = next
	}
}

// issuerIn returns the certificate of certs, other than c itself, that issued c.
func issuerIn(certs []*x509.Certificate, c *x509.Certificate) *x509.Certificate {
	for _, p := range certs {
		if !p.Equal(c) && issuedBy(c, p) {
			return p
		}
	}
	return nil
}

// issuedBy says whether parent's key signed child under parent's name. Whether parent may
// sign certificates at all is checked separately, to name that problem precisely.
func issuedBy(child, parent *x509.Certificate) bool {
	if !bytes.Equal(child.RawIssuer, parent.RawSubject) {
		return false
	}
	err := parent.CheckSignature(child.SignatureAlgorithm, child.RawTBSCertificate, child.Signature)
	// A weak algorithm still identifies the issuer; the final verification rejects it.
	var insecure x509.InsecureAlgorithmError
	return err == nil || errors.As(err, &insecure)
}

func selfSigned(c *x509.Certificate) bool {
	return issuedBy(c, c)
}

func allowsServerAuth(c *x509.Certificate) bool {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

func indexOf(certs []*x509.Certificate, c *x509.Certificate) int {
	for i, o := range certs {
		if o.Equal(c) {
			return i
		}
	}
	return -1
}

func appendNew(list []string, s string) []string {
	for _, o := range list {
		if o == s {
			return list
		}
	}
	return append(list, s)
}

func formatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}
