package cacerts

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"time"
)

// Summary is what can be shown of CA material in status and logs: public facts only.
type Summary struct {
	// RootSubject and RootSHA256 identify the root ca-cert.pem chains to, or the first of
	// root-cert.pem when it chains to none. RootSHA256 is formatted as
	// `openssl x509 -noout -fingerprint -sha256` prints it, to compare at a glance.
	RootSubject string
	RootSHA256  string
	// CASubject and CANotAfter describe ca-cert.pem, the CA istiod signs with.
	CASubject  string
	CANotAfter time.Time
}

// Summarize returns the public facts of a cacerts Secret's data. It needs only ca-cert.pem
// and root-cert.pem to parse; Validate says whether the material is usable.
func Summarize(data map[string][]byte) (Summary, error) {
	v := &validation{}
	m := &material{}
	if certs := v.certs(data, KeyCACert); len(certs) > 0 {
		m.caCert = certs[0]
	}
	m.roots = v.certs(data, KeyRootCert)
	if m.caCert == nil || len(m.roots) == 0 {
		return Summary{}, v.err()
	}
	// The chain only helps to pick the root; without it, the root may be the CA's issuer.
	m.chain, _ = decodeCerts(KeyCertChain, data[KeyCertChain])

	root := m.roots[0]
	if path, broken := m.pathToRoot(); broken == "" {
		root = path[len(path)-1]
	}
	sum := sha256.Sum256(root.Raw)
	return Summary{
		RootSubject: root.Subject.String(),
		RootSHA256:  colonHex(sum[:]),
		CASubject:   m.caCert.Subject.String(),
		CANotAfter:  m.caCert.NotAfter.UTC(),
	}, nil
}

// Fingerprint identifies the public CA material of a cacerts Secret's data: 16 hex
// characters of a SHA-256 over the PEM blocks of ca-cert.pem, cert-chain.pem and
// root-cert.pem. It changes when any certificate changes but not with formatting, and
// takes no input from ca-key.pem (a new key comes with a new ca-cert.pem). It suits a pod
// template annotation that rolls istiod when its CA changes. A key without PEM blocks is
// hashed as it is, so any data has a fingerprint.
func Fingerprint(data map[string][]byte) string {
	h := sha256.New()
	field := func(b []byte) {
		_ = binary.Write(h, binary.BigEndian, uint64(len(b)))
		h.Write(b)
	}
	for _, key := range []string{KeyCACert, KeyCertChain, KeyRootCert} {
		field([]byte(key))
		blocks := 0
		for rest := data[key]; ; blocks++ {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				break
			}
			field([]byte(block.Type))
			field(block.Bytes)
		}
		if blocks == 0 {
			field(bytes.TrimSpace(data[key]))
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(parts, ":")
}
