package cacerts

import "encoding/pem"

// Keys of the Secret cert-manager writes for an issued Certificate.
const (
	certManagerCert = "tls.crt" // the issued certificate, then the chain above it
	certManagerKey  = "tls.key"
	certManagerCA   = "ca.crt" // the root of the issuer's chain
)

// FromCertManager converts the data of a Secret cert-manager issued for a CA Certificate
// (isCA: true) into the cacerts layout: ca-cert.pem is the first certificate of tls.crt,
// ca-key.pem is tls.key, cert-chain.pem is tls.crt followed by the root of ca.crt that
// issued its last certificate (unless tls.crt already ends with a root of ca.crt), and
// root-cert.pem is ca.crt.
//
// Certificates are re-encoded from their DER and the key from its PEM block, so the output
// depends only on them: the Secret written from it changes only when cert-manager
// re-issues. The result is not validated; Validate does that and says precisely what is
// wrong.
func FromCertManager(data map[string][]byte) (map[string][]byte, error) {
	v := &validation{}
	issued := v.certs(data, certManagerCert)
	var key *pem.Block
	if b, ok := data[certManagerKey]; !ok {
		v.problem("%s is missing", certManagerKey)
	} else if block, _, problem := decodeKey(certManagerKey, b); problem != "" {
		v.problem("%s", problem)
	} else {
		key = &pem.Block{Type: block.Type, Bytes: block.Bytes} // without headers
	}
	roots := v.certs(data, certManagerCA)
	if err := v.err(); err != nil {
		return nil, err
	}

	chain := issued
	if last := issued[len(issued)-1]; indexOf(roots, last) < 0 {
		// When no root issued it, leave the chain short: Validate then names the gap.
		if root := issuerIn(roots, last); root != nil {
			chain = append(issued[:len(issued):len(issued)], root)
		}
	}
	return map[string][]byte{
		KeyCACert:    encodeCerts(issued[:1]),
		KeyCAKey:     pem.EncodeToMemory(key),
		KeyCertChain: encodeCerts(chain),
		KeyRootCert:  encodeCerts(roots),
	}, nil
}
