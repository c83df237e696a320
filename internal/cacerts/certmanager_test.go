package cacerts

import (
	"testing"

	. "github.com/onsi/gomega"
)

func TestFromCertManager(t *testing.T) {
	rsaRoot := newCA(t, rsa2048, "Root CA", nil)
	rsaInter := newCA(t, rsa2048, "Intermediate CA", rsaRoot)
	ecRoot := newCA(t, ecdsaP256, "Root CA", nil)
	ecMid := newCA(t, ecdsaP256, "Mid CA", ecRoot)
	ecInter := newCA(t, ecdsaP256, "Intermediate CA", ecMid)

	for _, tc := range []struct {
		name      string
		tlsCrt    []*ca
		caCrt     *ca
		legacyKey bool
		wantChain []*ca
	}{
		{name: "tls.crt holds the issued CA only", tlsCrt: []*ca{rsaInter}, caCrt: rsaRoot, wantChain: []*ca{rsaInter, rsaRoot}},
		{name: "tls.crt ends with the root", tlsCrt: []*ca{rsaInter, rsaRoot}, caCrt: rsaRoot, wantChain: []*ca{rsaInter, rsaRoot}},
		{name: "tls.crt holds the chain without the root", tlsCrt: []*ca{ecInter, ecMid}, caCrt: ecRoot, wantChain: []*ca{ecInter, ecMid, ecRoot}},
		{name: "tls.crt holds the chain with the root", tlsCrt: []*ca{ecInter, ecMid, ecRoot}, caCrt: ecRoot, wantChain: []*ca{ecInter, ecMid, ecRoot}},
		{name: "a self-signed CA issued by cert-manager's SelfSigned issuer", tlsCrt: []*ca{ecRoot}, caCrt: ecRoot, wantChain: []*ca{ecRoot}},
		{name: "PKCS #1 key kept in its format", tlsCrt: []*ca{rsaInter}, caCrt: rsaRoot, legacyKey: true, wantChain: []*ca{rsaInter, rsaRoot}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			key := pemPKCS8(t, tc.tlsCrt[0].key)
			if tc.legacyKey {
				key = pemLegacy(t, tc.tlsCrt[0].key)
			}
			secret := map[string][]byte{
				"tls.crt": pemCerts(certs(tc.tlsCrt...)...),
				"tls.key": key,
				"ca.crt":  pemCerts(tc.caCrt.cert),
			}

			out, err := FromCertManager(secret)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(out).To(Equal(map[string][]byte{
				KeyCACert:    pemCerts(tc.tlsCrt[0].cert),
				KeyCAKey:     key,
				KeyCertChain: pemCerts(certs(tc.wantChain...)...),
				KeyRootCert:  pemCerts(tc.caCrt.cert),
			}))
			warnings, err := Validate(out, now)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(warnings).To(BeEmpty())

			// The same certificates and key give the same bytes, however they were
			// formatted, so the Secret changes only when cert-manager re-issues.
			reformatted := map[string][]byte{}
			for k, v := range secret {
				reformatted[k] = cat([]byte("Bag Attributes\n    friendlyName: x\n"), crlf(v), []byte("\r\n\r\n"))
			}
			again, err := FromCertManager(reformatted)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(again).To(Equal(out))
		})
	}
}

func TestFromCertManagerProblems(t *testing.T) {
	root := newCA(t, ecdsaP256, "Root CA", nil)
	inter := newCA(t, ecdsaP256, "Intermediate CA", root)
	secret := map[string][]byte{
		"tls.crt": pemCerts(inter.cert),
		"tls.key": pemPKCS8(t, inter.key),
		"ca.crt":  pemCerts(root.cert),
	}
	for _, tc := range []struct {
		name string
		data map[string][]byte
		want string
	}{
		{name: "empty", data: map[string][]byte{}, want: "cacerts: tls.crt is missing; tls.key is missing; ca.crt is missing"},
		{name: "no ca.crt", data: with(secret, "ca.crt", nil), want: "cacerts: ca.crt is missing"},
		{name: "empty ca.crt, as some issuers leave it", data: with(secret, "ca.crt", []byte{}), want: "cacerts: ca.crt is empty"},
		{name: "tls.key holding a certificate", data: with(secret, "tls.key", secret["tls.crt"]), want: "cacerts: tls.key holds a certificate where the CA's private key belongs"},
		{name: "tls.crt not PEM", data: with(secret, "tls.crt", []byte("MIIB")), want: "cacerts: tls.crt is not PEM-encoded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			out, err := FromCertManager(tc.data)
			g.Expect(err).To(MatchError(tc.want))
			g.Expect(out).To(BeNil())
			expectNoKeyMaterial(t, err.Error(), tc.data)
		})
	}
}

// TestFromCertManagerUnrelatedRoot shows that a ca.crt that did not issue tls.crt is not
// appended to the chain, so Validate names the gap rather than an ordering problem.
func TestFromCertManagerUnrelatedRoot(t *testing.T) {
	g := NewWithT(t)
	root := newCA(t, ecdsaP256, "Root CA", nil)
	other := newCA(t, ecdsaP256, "Other Root CA", nil)
	inter := newCA(t, ecdsaP256, "Intermediate CA", root)
	out, err := FromCertManager(map[string][]byte{
		"tls.crt": pemCerts(inter.cert),
		"tls.key": pemPKCS8(t, inter.key),
		"ca.crt":  pemCerts(other.cert),
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out[KeyCertChain]).To(Equal(pemCerts(inter.cert)))
	_, err = Validate(out, now)
	g.Expect(err).To(MatchError(`cacerts: ca-cert.pem does not chain to root-cert.pem: no certificate in cert-chain.pem or root-cert.pem issued "CN=Intermediate CA" (its issuer is "CN=Root CA")`))
}

func crlf(b []byte) []byte {
	var out []byte
	for _, c := range b {
		if c == '\n' {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}
