package cacerts

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"maps"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	now = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	day = 24 * time.Hour
)

type alg string

const (
	ecdsaP256 alg = "ECDSA P-256"
	rsa2048   alg = "RSA 2048"
)

var (
	keysMu sync.Mutex
	keys   = map[string]crypto.Signer{}
	serial int64
)

// testKey returns the key named name, generated on first use: RSA keys are slow to make,
// and a CA re-issued under the same name keeps its key, as a renewal usually does.
func testKey(t testing.TB, a alg, name string) crypto.Signer {
	t.Helper()
	keysMu.Lock()
	defer keysMu.Unlock()
	id := string(a) + "/" + name
	if k, ok := keys[id]; ok {
		return k
	}
	var k crypto.Signer
	var err error
	switch a {
	case ecdsaP256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case rsa2048:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatalf("generating %s key: %v", a, err)
	}
	keys[id] = k
	return k
}

// ca is a certificate and its key.
type ca struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// newCA issues a CA certificate for cn, valid from a day before now for a year, with a key
// of a. parent signs it; nil makes it self-signed. mutate adjusts the template.
func newCA(t testing.TB, a alg, cn string, parent *ca, mutate ...func(*x509.Certificate)) *ca {
	t.Helper()
	keysMu.Lock()
	serial++
	sn := big.NewInt(serial)
	keysMu.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-day),
		NotAfter:              now.Add(365 * day),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	for _, m := range mutate {
		m(tmpl)
	}
	key := testKey(t, a, cn)
	issuer, issuerKey := tmpl, key
	if parent != nil {
		issuer, issuerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), issuerKey)
	if err != nil {
		t.Fatalf("creating certificate %q: %v", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing certificate %q: %v", cn, err)
	}
	return &ca{cert: cert, key: key}
}

func notCA(c *x509.Certificate) { c.IsCA = false }

func validFor(from, to time.Duration) func(*x509.Certificate) {
	return func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = now.Add(from), now.Add(to)
	}
}

// plugged returns the cacerts data for signing CA c, with cert-chain.pem holding chain and
// root-cert.pem holding roots.
func plugged(t testing.TB, c *ca, chain []*x509.Certificate, roots ...*ca) map[string][]byte {
	t.Helper()
	var rootCerts []*x509.Certificate
	for _, r := range roots {
		rootCerts = append(rootCerts, r.cert)
	}
	return map[string][]byte{
		KeyCACert:    pemCerts(c.cert),
		KeyCAKey:     pemPKCS8(t, c.key),
		KeyCertChain: pemCerts(chain...),
		KeyRootCert:  pemCerts(rootCerts...),
	}
}

func certs(cas ...*ca) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range cas {
		out = append(out, c.cert)
	}
	return out
}

func pemCerts(certs ...*x509.Certificate) []byte {
	return encodeCerts(certs)
}

func pemPKCS8(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("encoding key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// pemLegacy encodes key as PKCS #1 (RSA) or SEC 1 (ECDSA), as openssl and cert-manager may.
func pemLegacy(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatalf("encoding key: %v", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	t.Fatalf("unexpected key type %T", key)
	return nil
}

// with returns a copy of data with key set to value, or removed when value is nil.
func with(data map[string][]byte, key string, value []byte) map[string][]byte {
	out := maps.Clone(data)
	if value == nil {
		delete(out, key)
	} else {
		out[key] = value
	}
	return out
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// expectNoKeyMaterial fails t if msg quotes a private key of data: a PEM marker, or any run
// of 16 characters of the base64 of a key block (as PEM carries it).
func expectNoKeyMaterial(t testing.TB, msg string, data map[string][]byte) {
	t.Helper()
	for _, marker := range []string{"PRIVATE KEY", "-----BEGIN", "-----END"} {
		if strings.Contains(msg, marker) {
			t.Fatalf("message contains %q: %s", marker, msg)
		}
	}
	for key, value := range data {
		for rest := value; ; {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				break
			}
			if key != KeyCAKey && !strings.Contains(block.Type, "PRIVATE KEY") {
				continue
			}
			b64 := base64.StdEncoding.EncodeToString(block.Bytes)
			for i := 0; i+16 <= len(b64); i++ {
				if strings.Contains(msg, b64[i:i+16]) {
					t.Fatalf("message quotes key material of %s: %s", key, msg)
				}
			}
		}
	}
}
