package cacerts

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestValidate(t *testing.T) {
	garbageDER := []byte("not DER at all")
	_, garbageErr := x509.ParseCertificate(garbageDER)

	cases := []struct {
		name     string
		data     func(t *testing.T) map[string][]byte
		problems []string // none: valid
		warnings []string
	}{
		{
			name: "valid RSA root and intermediate",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, rsa2048, "Root CA", nil)
				inter := newCA(t, rsa2048, "Intermediate CA", root)
				return plugged(t, inter, certs(inter, root), root)
			},
		},
		{
			name: "valid ECDSA root and intermediate",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				inter := newCA(t, ecdsaP256, "Intermediate CA", root)
				return plugged(t, inter, certs(inter, root), root)
			},
		},
		{
			name: "valid ECDSA intermediate under an RSA root",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, rsa2048, "Root CA", nil)
				inter := newCA(t, ecdsaP256, "Intermediate CA", root)
				return plugged(t, inter, certs(inter, root), root)
			},
		},
		{
			name: "valid with an extra intermediate in the chain",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				mid := newCA(t, rsa2048, "Mid CA", root)
				inter := newCA(t, ecdsaP256, "Intermediate CA", mid)
				return plugged(t, inter, certs(inter, mid, root), root)
			},
		},
		{
			name: "valid cert-chain without the root, which workloads get from root-cert.pem",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				inter := newCA(t, ecdsaP256, "Intermediate CA", root)
				return plugged(t, inter, certs(inter), root)
			},
		},
		{
			name: "valid root signing workload certificates itself",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				return plugged(t, root, certs(root), root)
			},
		},
		{
			name: "valid with two roots during a root rotation",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				next := newCA(t, ecdsaP256, "Next Root CA", nil)
				inter := newCA(t, ecdsaP256, "Intermediate CA", next)
				return plugged(t, inter, certs(inter, next), root, next)
			},
		},
		{
			name: "valid PKCS #1 RSA key",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, rsa2048, "Root CA", nil)
				inter := newCA(t, rsa2048, "Intermediate CA", root)
				return with(plugged(t, inter, certs(inter, root), root), KeyCAKey, pemLegacy(t, inter.key))
			},
		},
		{
			name: "valid SEC 1 EC key, with text around the PEM blocks",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				inter := newCA(t, ecdsaP256, "Intermediate CA", root)
				data := plugged(t, inter, certs(inter, root), root)
				data[KeyCAKey] = pemLegacy(t, inter.key)
				data[KeyCACert] = cat([]byte("subject=CN=Intermediate CA\n"), data[KeyCACert], []byte("\n\n"))
				return data
			},
		},
		{
			name: "a long-lived ca-cert.pem warns 30 days before it expires",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				inter := newCA(t, ecdsaP256, "Intermediate CA", root, validFor(-340*day, 20*day))
				return plugged(t, inter, certs(inter, root), root)
			},
			warnings: []string{"ca-cert.pem expires soon, at 2030-01-21T12:00:00Z; renew it before then"},
		},
		{
			// cert-manager renews a third of the lifetime ahead: 20 of 21 days left is normal.
			name: "a short-lived ca-cert.pem warns only in the last sixth of its lifetime",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				inter := newCA(t, ecdsaP256, "Intermediate CA", root, validFor(-day, 20*day))
				return plugged(t, inter, certs(inter, root), root)
			},
		},
		{
			name: "a short-lived ca-cert.pem in the last sixth of its lifetime warns",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				inter := newCA(t, ecdsaP256, "Intermediate CA", root, validFor(-20*day, 3*day))
				return plugged(t, inter, certs(inter, root), root)
			},
			warnings: []string{"ca-cert.pem expires soon, at 2030-01-04T12:00:00Z; renew it before then"},
		},
		{
			name: "ca-cert.pem holding the whole chain warns",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				inter := newCA(t, ecdsaP256, "Intermediate CA", root)
				data := plugged(t, inter, certs(inter, root), root)
				data[KeyCACert] = pemCerts(inter.cert, root.cert)
				return data
			},
			warnings: []string{"ca-cert.pem holds 2 certificates; istiod signs with the first and ignores the rest, which belong in cert-chain.pem"},
		},
		{
			name: "empty Secret",
			data: func(t *testing.T) map[string][]byte { return map[string][]byte{} },
			problems: []string{
				"ca-cert.pem is missing",
				"ca-key.pem is missing",
				"cert-chain.pem is missing",
				"root-cert.pem is missing",
			},
		},
		{
			name:     "missing ca-key.pem",
			data:     func(t *testing.T) map[string][]byte { return with(ecdsaData(t), KeyCAKey, nil) },
			problems: []string{"ca-key.pem is missing"},
		},
		{
			name:     "empty root-cert.pem",
			data:     func(t *testing.T) map[string][]byte { return with(ecdsaData(t), KeyRootCert, []byte(" \n")) },
			problems: []string{"root-cert.pem is empty"},
		},
		{
			name:     "ca-cert.pem not PEM",
			data:     func(t *testing.T) map[string][]byte { return with(ecdsaData(t), KeyCACert, []byte("MIIB...")) },
			problems: []string{"ca-cert.pem is not PEM-encoded"},
		},
		{
			name: "ca-cert.pem truncated",
			data: func(t *testing.T) map[string][]byte {
				data := ecdsaData(t)
				pemText := string(data[KeyCACert])
				return with(data, KeyCACert, []byte(pemText[:len(pemText)/2]))
			},
			problems: []string{"ca-cert.pem has a malformed PEM block (bad base64, or a missing or mismatched END line)"},
		},
		{
			name: "malformed block between good ones in cert-chain.pem",
			data: func(t *testing.T) map[string][]byte {
				data := ecdsaData(t)
				return with(data, KeyCertChain, cat(data[KeyCACert], []byte("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"), data[KeyRootCert]))
			},
			problems: []string{"cert-chain.pem has a malformed PEM block (bad base64, or a missing or mismatched END line)"},
		},
		{
			name: "ca-cert.pem not a certificate inside its PEM block",
			data: func(t *testing.T) map[string][]byte {
				return with(ecdsaData(t), KeyCACert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: garbageDER}))
			},
			problems: []string{"ca-cert.pem: PEM block 1 is not a valid certificate: " + garbageErr.Error()},
		},
		{
			name: "ca-cert.pem holding the private key",
			data: func(t *testing.T) map[string][]byte {
				data := ecdsaData(t)
				return with(data, KeyCACert, data[KeyCAKey])
			},
			problems: []string{"ca-cert.pem holds a private key; only certificates belong there"},
		},
		{
			name: "ca-key.pem holding a certificate",
			data: func(t *testing.T) map[string][]byte {
				data := ecdsaData(t)
				return with(data, KeyCAKey, data[KeyCACert])
			},
			problems: []string{"ca-key.pem holds a certificate where the CA's private key belongs"},
		},
		{
			name: "root-cert.pem holding a public key",
			data: func(t *testing.T) map[string][]byte {
				return with(ecdsaData(t), KeyRootCert, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}))
			},
			problems: []string{`root-cert.pem holds a "PUBLIC KEY" PEM block; only certificates belong there`},
		},
		{
			name: "cert-chain.pem with the key appended, which would reach every workload",
			data: func(t *testing.T) map[string][]byte {
				data := ecdsaData(t)
				return with(data, KeyCertChain, cat(data[KeyCertChain], data[KeyCAKey]))
			},
			problems: []string{"cert-chain.pem holds a private key; only certificates belong there"},
		},
		{
			name: "the private key in every key",
			data: func(t *testing.T) map[string][]byte {
				data := ecdsaData(t)
				key := data[KeyCAKey]
				return map[string][]byte{KeyCACert: key, KeyCAKey: key, KeyCertChain: key, KeyRootCert: key}
			},
			problems: []string{
				"ca-cert.pem holds a private key; only certificates belong there",
				"cert-chain.pem holds a private key; only certificates belong there",
				"root-cert.pem holds a private key; only certificates belong there",
			},
		},
		{
			name: "ca-key.pem starting with EC PARAMETERS, as openssl ecparam -genkey writes",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				inter := newCA(t, ecdsaP256, "Intermediate CA", root)
				params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
				return with(plugged(t, inter, certs(inter, root), root), KeyCAKey, cat(params, pemLegacy(t, inter.key)))
			},
			problems: []string{"ca-key.pem starts with an EC PARAMETERS block; istiod reads only the first PEM block, so remove it and keep only the key"},
		},
		{
			name: "ca-key.pem encrypted",
			data: func(t *testing.T) map[string][]byte {
				return with(ecdsaData(t), KeyCAKey, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("opaque ciphertext, 0123456789abcdef")}))
			},
			problems: []string{"ca-key.pem is encrypted; istiod needs the key unencrypted"},
		},
		{
			name: "ca-key.pem not a key inside its PEM block",
			data: func(t *testing.T) map[string][]byte {
				return with(ecdsaData(t), KeyCAKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte("0123456789abcdef0123456789abcdef")}))
			},
			problems: []string{"ca-key.pem is not a valid PKCS #1 (RSA) private key"},
		},
		{
			name: "ca-key.pem not matching ca-cert.pem",
			data: func(t *testing.T) map[string][]byte {
				return with(ecdsaData(t), KeyCAKey, pemPKCS8(t, testKey(t, ecdsaP256, "another key")))
			},
			problems: []string{"ca-key.pem does not match ca-cert.pem"},
		},
		{
			name: "ca-cert.pem not a CA",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				inter := newCA(t, ecdsaP256, "Intermediate CA", root, notCA)
				return plugged(t, inter, certs(inter, root), root)
			},
			problems: []string{"ca-cert.pem is not a CA certificate (its basic constraints lack CA:TRUE)"},
		},
		{
			name: "ca-cert.pem without keyCertSign",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				inter := newCA(t, ecdsaP256, "Intermediate CA", root, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature })
				return plugged(t, inter, certs(inter, root), root)
			},
			problems: []string{"ca-cert.pem may not sign certificates (its key usage lacks keyCertSign)"},
		},
		{
			name: "ca-cert.pem for client authentication only",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				inter := newCA(t, ecdsaP256, "Intermediate CA", root, func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} })
				return plugged(t, inter, certs(inter, root), root)
			},
			problems: []string{"ca-cert.pem has an extended key usage without serverAuth, which istiod requires of every certificate in the chain (drop the extension or add serverAuth)"},
		},
		{
			name: "intermediate in cert-chain.pem not a CA",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				mid := newCA(t, ecdsaP256, "Mid CA", root, notCA)
				inter := newCA(t, ecdsaP256, "Intermediate CA", mid)
				return plugged(t, inter, certs(inter, mid, root), root)
			},
			problems: []string{`cert-chain.pem certificate 2 ("CN=Mid CA") is not a CA certificate (its basic constraints lack CA:TRUE)`},
		},
		{
			name: "root not self-signed",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				mid := newCA(t, ecdsaP256, "Mid CA", root)
				inter := newCA(t, ecdsaP256, "Intermediate CA", mid)
				return plugged(t, inter, certs(inter, mid), mid)
			},
			problems: []string{`root-cert.pem is not self-signed (it is issued by "CN=Root CA"); it must hold the mesh's root certificate`},
		},
		{
			name: "root not a CA",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil, notCA)
				inter := newCA(t, ecdsaP256, "Intermediate CA", root)
				return plugged(t, inter, certs(inter, root), root)
			},
			problems: []string{"root-cert.pem is not a CA certificate (its basic constraints lack CA:TRUE)"},
		},
		{
			name: "foreign root, cert-chain.pem ending with the real one",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				other := newCA(t, ecdsaP256, "Other Root CA", nil)
				inter := newCA(t, ecdsaP256, "Intermediate CA", root)
				return plugged(t, inter, certs(inter, root), other)
			},
			problems: []string{`ca-cert.pem does not chain to root-cert.pem: cert-chain.pem leads to the root "CN=Root CA", which is not in root-cert.pem`},
		},
		{
			name: "foreign root, cert-chain.pem without a root",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, rsa2048, "Root CA", nil)
				other := newCA(t, rsa2048, "Other Root CA", nil)
				inter := newCA(t, rsa2048, "Intermediate CA", root)
				return plugged(t, inter, certs(inter), other)
			},
			problems: []string{`ca-cert.pem does not chain to root-cert.pem: no certificate in cert-chain.pem or root-cert.pem issued "CN=Intermediate CA" (its issuer is "CN=Root CA")`},
		},
		{
			name: "self-signed ca-cert.pem that is not the root",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				other := newCA(t, ecdsaP256, "Other Root CA", nil)
				return plugged(t, other, certs(other), root)
			},
			problems: []string{"ca-cert.pem does not chain to root-cert.pem: it is self-signed but not in root-cert.pem"},
		},
		{
			name: "intermediate missing from cert-chain.pem",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				mid := newCA(t, ecdsaP256, "Mid CA", root)
				inter := newCA(t, ecdsaP256, "Intermediate CA", mid)
				return plugged(t, inter, certs(inter, root), root)
			},
			problems: []string{
				`cert-chain.pem is out of order: certificate 1 ("CN=Intermediate CA") is not issued by certificate 2 ("CN=Root CA"); list ca-cert.pem first, then each issuer, the root last`,
				`ca-cert.pem does not chain to root-cert.pem: no certificate in cert-chain.pem or root-cert.pem issued "CN=Intermediate CA" (its issuer is "CN=Mid CA")`,
			},
		},
		{
			name: "cert-chain.pem out of order",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				mid := newCA(t, ecdsaP256, "Mid CA", root)
				inter := newCA(t, ecdsaP256, "Intermediate CA", mid)
				return plugged(t, inter, certs(inter, root, mid), root)
			},
			problems: []string{`cert-chain.pem is out of order: certificate 1 ("CN=Intermediate CA") is not issued by certificate 2 ("CN=Root CA"); list ca-cert.pem first, then each issuer, the root last`},
		},
		{
			name: "cert-chain.pem not starting with ca-cert.pem",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				inter := newCA(t, ecdsaP256, "Intermediate CA", root)
				return plugged(t, inter, certs(root), root)
			},
			problems: []string{`cert-chain.pem does not start with ca-cert.pem (it starts with "CN=Root CA")`},
		},
		{
			name: "expired ca-cert.pem",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				inter := newCA(t, ecdsaP256, "Intermediate CA", root, validFor(-365*day, -time.Hour))
				return plugged(t, inter, certs(inter, root), root)
			},
			problems: []string{"ca-cert.pem expired at 2030-01-01T11:00:00Z"},
		},
		{
			name: "ca-cert.pem not yet valid",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil)
				inter := newCA(t, ecdsaP256, "Intermediate CA", root, validFor(time.Hour, 365*day))
				return plugged(t, inter, certs(inter, root), root)
			},
			problems: []string{"ca-cert.pem is not valid before 2030-01-01T13:00:00Z"},
		},
		{
			name: "expired intermediate and expired root",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil, validFor(-3650*day, -2*time.Hour))
				mid := newCA(t, ecdsaP256, "Mid CA", root, validFor(-365*day, -time.Hour))
				inter := newCA(t, ecdsaP256, "Intermediate CA", mid)
				return plugged(t, inter, certs(inter, mid, root), root)
			},
			problems: []string{
				`cert-chain.pem certificate 2 ("CN=Mid CA") expired at 2030-01-01T11:00:00Z`,
				"root-cert.pem expired at 2030-01-01T10:00:00Z",
			},
		},
		{
			name: "root's path length exceeded, caught verifying as istiod does",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, ecdsaP256, "Root CA", nil, func(c *x509.Certificate) { c.MaxPathLenZero = true })
				mid := newCA(t, ecdsaP256, "Mid CA", root)
				inter := newCA(t, ecdsaP256, "Intermediate CA", mid)
				return plugged(t, inter, certs(inter, mid, root), root)
			},
			problems: []string{"ca-cert.pem does not verify against root-cert.pem as istiod checks it: x509: too many intermediates for path length constraint"},
		},
		{
			name: "several problems, in a stable order",
			data: func(t *testing.T) map[string][]byte {
				root := newCA(t, rsa2048, "Root CA", nil)
				inter := newCA(t, rsa2048, "Intermediate CA", root, validFor(-365*day, -time.Hour))
				data := plugged(t, inter, certs(inter, root), root)
				data[KeyCAKey] = pemPKCS8(t, testKey(t, rsa2048, "another key"))
				delete(data, KeyRootCert)
				return data
			},
			problems: []string{
				"root-cert.pem is missing",
				"ca-key.pem does not match ca-cert.pem",
				"ca-cert.pem expired at 2030-01-01T11:00:00Z",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			data := tc.data(t)
			warnings, err := Validate(data, now)
			g.Expect(warnings).To(Equal(tc.warnings))
			if tc.problems == nil {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			var invalid *InvalidError
			g.Expect(errors.As(err, &invalid)).To(BeTrue(), "error %v is not an *InvalidError", err)
			g.Expect(invalid.Problems).To(Equal(tc.problems))
			g.Expect(err.Error()).To(Equal("cacerts: " + strings.Join(tc.problems, "; ")))
			expectNoKeyMaterial(t, err.Error(), data)
			for range 3 {
				_, again := Validate(data, now)
				g.Expect(again).To(Equal(err))
			}
		})
	}
}

// ecdsaData returns valid cacerts data: an ECDSA intermediate under an ECDSA root.
func ecdsaData(t *testing.T) map[string][]byte {
	root := newCA(t, ecdsaP256, "Root CA", nil)
	inter := newCA(t, ecdsaP256, "Intermediate CA", root)
	return plugged(t, inter, certs(inter, root), root)
}

// recorder is a testing.TB whose failures are recorded rather than reported.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatalf(string, ...any) { r.failed = true }

// TestExpectNoKeyMaterial shows the leak check used above can fail.
func TestExpectNoKeyMaterial(t *testing.T) {
	data := ecdsaData(t)
	block, _ := pem.Decode(data[KeyCAKey])
	leaked := base64.StdEncoding.EncodeToString(block.Bytes)[20:40]
	for _, tc := range []struct {
		msg  string
		leak bool
	}{
		{msg: "ca-key.pem does not match ca-cert.pem"},
		{msg: "ca-key.pem is " + leaked, leak: true},
		{msg: "found -----BEGIN EC PRIVATE KEY-----", leak: true},
	} {
		r := &recorder{TB: t}
		expectNoKeyMaterial(r, tc.msg, data)
		if r.failed != tc.leak {
			t.Errorf("expectNoKeyMaterial(%q) failed=%v, want %v", tc.msg, r.failed, tc.leak)
		}
	}
}

func TestInvalidErrorBoundsItsMessage(t *testing.T) {
	g := NewWithT(t)
	var problems []string
	for i := range 12 {
		problems = append(problems, fmt.Sprintf("problem %d", i))
	}
	g.Expect((&InvalidError{Problems: problems}).Error()).To(Equal(
		"cacerts: problem 0; problem 1; problem 2; problem 3; problem 4; problem 5; problem 6; problem 7; problem 8; problem 9; and 2 more"))

	// Many broken blocks in one key.
	data := ecdsaData(t)
	var chain []byte
	for i := range 20 {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{byte(i)}})...)
	}
	_, err := Validate(with(data, KeyCertChain, chain), now)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(HaveSuffix("; and 10 more"))
}

func TestNextWarning(t *testing.T) {
	g := NewWithT(t)
	root := newCA(t, ecdsaP256, "Root CA", nil, validFor(-day, 3650*day))
	inter := newCA(t, ecdsaP256, "Intermediate CA", root, validFor(-day, 59*day)) // 60 days: warn 10 days ahead
	data := plugged(t, inter, certs(inter, root), root)

	at, ok := NextWarning(data, now)
	g.Expect(ok).To(BeTrue())
	g.Expect(at).To(Equal(now.Add(49 * day)))
	warnings, err := Validate(data, at.Add(-time.Second))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(warnings).To(BeEmpty(), "no warning before the time NextWarning names")
	warnings, err = Validate(data, at)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(warnings).To(HaveLen(1), "a warning from the time NextWarning names")

	at, ok = NextWarning(data, now.Add(50*day))
	g.Expect(ok).To(BeTrue())
	g.Expect(at).To(Equal(now.Add(3620*day)), "next, the root's warning")
	_, ok = NextWarning(data, now.Add(3700*day))
	g.Expect(ok).To(BeFalse())
}
