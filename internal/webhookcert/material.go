package webhookcert

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Keys of the certificate Secret.
const (
	// KeyServingCert holds the serving certificate chain, leaf first.
	KeyServingCert = "tls.crt"
	// KeyServingKey holds the serving certificate's private key.
	KeyServingKey = "tls.key"
	// KeyCABundle holds every CA clients must trust: the current CA, then the previous one
	// while a rotation is in progress. It is what goes into a webhook's caBundle.
	KeyCABundle = "ca.crt"
	// KeyCAKey holds the current CA's private key.
	KeyCAKey = "ca.key"
)

// backdate is subtracted from every certificate's NotBefore so that an API server whose
// clock is a little behind ours accepts a certificate we have just issued. Plan reads the
// issue time back as NotBefore+backdate.
const backdate = 5 * time.Minute

// Material is the parsed content of the certificate Secret.
type Material struct {
	// CA signs serving certificates; CAKey is its key. Both nil when ca.key is absent or
	// matches no certificate of the bundle.
	CA    *x509.Certificate
	CAKey crypto.Signer
	// Bundle is what clients trust: CA first (when set), then earlier CAs still needed.
	Bundle []*x509.Certificate
	// Chain is the served certificate chain, leaf first; Key is the leaf's key. Both nil
	// when absent or unusable.
	Chain []*x509.Certificate
	Key   crypto.Signer
}

// Leaf returns the serving certificate, or nil.
func (m *Material) Leaf() *x509.Certificate {
	if m == nil || len(m.Chain) == 0 {
		return nil
	}
	return m.Chain[0]
}

// CABundlePEM returns the bundle as concatenated PEM certificates.
func (m *Material) CABundlePEM() []byte {
	return encodeCerts(m.Bundle)
}

// TLSCertificate returns the serving chain and key for a tls.Config.
func (m *Material) TLSCertificate() (*tls.Certificate, error) {
	if m == nil || len(m.Chain) == 0 || m.Key == nil {
		return nil, errors.New("no serving certificate")
	}
	c := &tls.Certificate{PrivateKey: m.Key, Leaf: m.Chain[0]}
	for _, cert := range m.Chain {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	return c, nil
}

// SecretData encodes the material under the Secret's keys. Absent parts encode as empty.
func (m *Material) SecretData() (map[string][]byte, error) {
	data := map[string][]byte{
		KeyServingCert: encodeCerts(m.Chain),
		KeyCABundle:    encodeCerts(m.Bundle),
	}
	var err error
	if data[KeyServingKey], err = encodeKey(m.Key); err != nil {
		return nil, fmt.Errorf("encoding serving key: %w", err)
	}
	if data[KeyCAKey], err = encodeKey(m.CAKey); err != nil {
		return nil, fmt.Errorf("encoding CA key: %w", err)
	}
	return data, nil
}

// clone returns a copy whose slices can be changed without touching m. Certificates and
// keys are immutable and shared.
func (m *Material) clone() *Material {
	if m == nil {
		return &Material{}
	}
	c := *m
	c.Bundle = append([]*x509.Certificate(nil), m.Bundle...)
	c.Chain = append([]*x509.Certificate(nil), m.Chain...)
	return &c
}

// ParseMaterial parses a Secret's data leniently: whatever is usable is returned, and every
// part that is not is described in the error (which never contains key material). The
// Material is never nil, so Plan can keep what still works (a valid CA, a served leaf that
// clients trust) and replace only the rest.
func ParseMaterial(data map[string][]byte) (*Material, error) {
	m := &Material{}
	var errs []error

	bundle, err := decodeCerts(data[KeyCABundle])
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", KeyCABundle, err))
	}
	if len(data[KeyCAKey]) > 0 {
		key, err := decodeKey(data[KeyCAKey])
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", KeyCAKey, err))
		default:
			for _, c := range bundle {
				if c.IsCA && publicKeyEqual(c.PublicKey, key.Public()) {
					m.CA, m.CAKey = c, key
					break
				}
			}
			if m.CA == nil {
				errs = append(errs, fmt.Errorf("%s matches no CA certificate in %s", KeyCAKey, KeyCABundle))
			}
		}
	}
	if m.CA != nil {
		m.Bundle = append(m.Bundle, m.CA)
	}
	for _, c := range bundle {
		if c != m.CA {
			m.Bundle = append(m.Bundle, c)
		}
	}

	chain, err := decodeCerts(data[KeyServingCert])
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", KeyServingCert, err))
	}
	if len(chain) > 0 {
		key, err := decodeKey(data[KeyServingKey])
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", KeyServingKey, err))
		case !publicKeyEqual(chain[0].PublicKey, key.Public()):
			errs = append(errs, fmt.Errorf("%s does not match the certificate in %s", KeyServingKey, KeyServingCert))
		default:
			m.Chain, m.Key = chain, key
		}
	}
	return m, errors.Join(errs...)
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func encodeKey(k crypto.Signer) ([]byte, error) {
	if k == nil {
		return []byte{}, nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// decodeCerts returns every certificate it can parse, and an error if anything else was
// there (other PEM blocks, stray bytes, unparseable certificates).
func decodeCerts(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	var errs []error
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			errs = append(errs, fmt.Errorf("unexpected PEM block %q", block.Type))
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			errs = append(errs, fmt.Errorf("parsing certificate: %w", err))
			continue
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(b)) > 0 {
		errs = append(errs, errors.New("data that is not PEM"))
	}
	return certs, errors.Join(errs...)
}

// decodeKey parses one PEM private key (PKCS#8, SEC 1 EC or PKCS#1 RSA). Parser errors are
// not wrapped: they are generic, but this keeps key bytes out of messages by construction.
func decodeKey(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM private key")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("unparseable %s", block.Type)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	return s, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}

func newKey() (crypto.Signer, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

// newCA creates a self-signed CA valid from now for validity.
func newCA(now time.Time, validity time.Duration) (*x509.Certificate, crypto.Signer, error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, fmt.Errorf("generating CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, fmt.Errorf("generating serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The creation time in the name tells successive CAs apart when debugging.
		Subject:               pkix.Name{CommonName: fmt.Sprintf("meshplane-webhook-ca@%d", now.Unix())},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing CA certificate: %w", err)
	}
	return cert, key, nil
}

// newLeaf issues a serving certificate signed by ca, valid from now for validity but never
// past the CA's own expiry.
func newLeaf(now time.Time, validity time.Duration, dnsNames []string, ips []net.IP, ca *x509.Certificate, caKey crypto.Signer) ([]*x509.Certificate, crypto.Signer, error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, fmt.Errorf("generating serving key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, fmt.Errorf("generating serial number: %w", err)
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	cn := "meshplane-webhook"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		DNSNames:     dnsNames,
		IPAddresses:  ips,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("creating serving certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing serving certificate: %w", err)
	}
	return []*x509.Certificate{cert}, key, nil
}
