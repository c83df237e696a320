package cacerts

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func TestSummarize(t *testing.T) {
	root := newCA(t, ecdsaP256, "Root CA", nil)
	next := newCA(t, rsa2048, "Next Root CA", nil)
	inter := newCA(t, ecdsaP256, "Intermediate CA", root)
	nextInter := newCA(t, rsa2048, "Next Intermediate CA", next)

	for _, tc := range []struct {
		name     string
		data     map[string][]byte
		want     *ca // the root it should name
		wantCA   *ca
		problems string
	}{
		{name: "one root", data: plugged(t, inter, certs(inter, root), root), want: root, wantCA: inter},
		{name: "the root the CA chains to, not the first", data: plugged(t, nextInter, certs(nextInter, next), root, next), want: next, wantCA: nextInter},
		{name: "the first root when the CA chains to none", data: plugged(t, nextInter, certs(nextInter), root), want: root, wantCA: nextInter},
		{name: "ca-cert.pem missing", data: with(plugged(t, inter, certs(inter, root), root), KeyCACert, nil), problems: "cacerts: ca-cert.pem is missing"},
		{name: "root-cert.pem not PEM", data: with(plugged(t, inter, certs(inter, root), root), KeyRootCert, []byte("x")), problems: "cacerts: root-cert.pem is not PEM-encoded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			sum, err := Summarize(tc.data)
			if tc.problems != "" {
				g.Expect(err).To(MatchError(tc.problems))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			digest := sha256.Sum256(tc.want.cert.Raw)
			g.Expect(sum).To(Equal(Summary{
				RootSubject: tc.want.cert.Subject.String(),
				RootSHA256:  opensslFingerprint(digest[:]),
				CASubject:   tc.wantCA.cert.Subject.String(),
				CANotAfter:  tc.wantCA.cert.NotAfter,
			}))
			g.Expect(sum.RootSHA256).To(MatchRegexp(`^([0-9A-F]{2}:){31}[0-9A-F]{2}$`))
			g.Expect(fmt.Sprint(sum)).NotTo(ContainSubstring("PRIVATE"))
		})
	}
}

// opensslFingerprint formats a digest the way `openssl x509 -fingerprint` does.
func opensslFingerprint(digest []byte) string {
	var parts []string
	for _, b := range digest {
		parts = append(parts, fmt.Sprintf("%02X", b))
	}
	return strings.Join(parts, ":")
}

func TestFingerprint(t *testing.T) {
	root := newCA(t, ecdsaP256, "Root CA", nil)
	inter := newCA(t, ecdsaP256, "Intermediate CA", root)
	base := plugged(t, inter, certs(inter, root), root)
	fp := Fingerprint(base)

	g := NewWithT(t)
	g.Expect(fp).To(MatchRegexp(`^[0-9a-f]{16}$`))
	g.Expect(Fingerprint(base)).To(Equal(fp))
	g.Expect(Fingerprint(map[string][]byte{})).To(MatchRegexp(`^[0-9a-f]{16}$`))

	// The same certificates, formatted differently.
	reformatted := map[string][]byte{}
	for k, v := range base {
		reformatted[k] = cat([]byte("subject=whatever\n"), crlf(v), []byte("\n\n"))
	}

	renewed := newCA(t, ecdsaP256, "Intermediate CA", root) // same key, new certificate
	newRoot := newCA(t, ecdsaP256, "New Root CA", nil)
	newInter := newCA(t, ecdsaP256, "Intermediate CA", newRoot)

	for _, tc := range []struct {
		name    string
		data    map[string][]byte
		changed bool
	}{
		{name: "reformatted PEM", data: reformatted},
		{name: "ca-key.pem re-encoded", data: with(base, KeyCAKey, pemLegacy(t, inter.key))},
		{name: "other keys of the Secret", data: with(base, "README", []byte("hello"))},
		{name: "ca-cert.pem renewed with the same key", data: plugged(t, renewed, certs(renewed, root), root), changed: true},
		{name: "new root", data: plugged(t, newInter, certs(newInter, newRoot), newRoot), changed: true},
		{name: "a second root added", data: with(base, KeyRootCert, pemCerts(root.cert, newRoot.cert)), changed: true},
		{name: "root dropped from cert-chain.pem", data: with(base, KeyCertChain, pemCerts(inter.cert)), changed: true},
		{name: "ca-cert.pem replaced by garbage", data: with(base, KeyCACert, []byte("garbage")), changed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			if tc.changed {
				g.Expect(Fingerprint(tc.data)).NotTo(Equal(fp))
			} else {
				g.Expect(Fingerprint(tc.data)).To(Equal(fp))
			}
		})
	}
}
