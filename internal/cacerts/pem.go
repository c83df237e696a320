package cacerts

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strconv"
	"strings"
)

// decodeCerts returns the certificates in b, the value of key, and a problem for everything
// else there. Text around PEM blocks is ignored, as istiod ignores it.
func decodeCerts(key string, b []byte) ([]*x509.Certificate, []string) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, []string{key + " is empty"}
	}
	var certs []*x509.Certificate
	var problems []string
	blocks := 0
	for rest := b; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		blocks++
		switch {
		case isPrivateKey(block.Type):
			problems = append(problems, key+" holds a private key; only certificates belong there")
		case block.Type != blockCertificate:
			problems = append(problems, fmt.Sprintf("%s holds a %s PEM block; only certificates belong there", key, quoteType(block.Type)))
		default:
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: PEM block %d is not a valid certificate: %v", key, blocks, err))
				continue
			}
			certs = append(certs, c)
		}
	}
	// pem.Decode skips a malformed block silently, so count what looked like one.
	if bytes.Count(b, []byte("-----BEGIN")) > blocks {
		problems = append(problems, key+" has a malformed PEM block (bad base64, or a missing or mismatched END line)")
	} else if blocks == 0 {
		problems = append(problems, key+" is not PEM-encoded")
	}
	return certs, problems
}

// decodeKey parses the private key in b, the value of key, as istiod does: from the first
// PEM block only. It returns that block too. The problem never quotes the input, which
// keeps key material out of messages by construction.
func decodeKey(key string, b []byte) (*pem.Block, crypto.Signer, string) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil, key + " is empty"
	}
	block, _ := pem.Decode(b)
	switch {
	case block == nil && bytes.Contains(b, []byte("-----BEGIN")):
		return nil, nil, key + " has a malformed PEM block (bad base64, or a missing or mismatched END line)"
	case block == nil:
		return nil, nil, key + " is not PEM-encoded"
	case block.Type == blockCertificate:
		return nil, nil, key + " holds a certificate where the CA's private key belongs"
	case block.Type == "EC PARAMETERS":
		return nil, nil, key + " starts with an EC PARAMETERS block; istiod reads only the first PEM block, so remove it and keep only the key"
	case block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED"):
		return nil, nil, key + " is encrypted; istiod needs the key unencrypted"
	}
	var parsed any
	var err error
	var format string
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		format = "PKCS #8"
	case "EC PRIVATE KEY":
		parsed, err = x509.ParseECPrivateKey(block.Bytes)
		format = "SEC 1 (EC)"
	case "RSA PRIVATE KEY":
		parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		format = "PKCS #1 (RSA)"
	default:
		return nil, nil, fmt.Sprintf("%s holds a %s PEM block where the CA's private key (PKCS #8, SEC 1 or PKCS #1) belongs", key, quoteType(block.Type))
	}
	if err != nil {
		return nil, nil, fmt.Sprintf("%s is not a valid %s private key", key, format)
	}
	signer, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, nil, key + " holds a kind of key that cannot sign certificates"
	}
	return block, signer, ""
}

const blockCertificate = "CERTIFICATE"

func isPrivateKey(blockType string) bool {
	return strings.Contains(blockType, "PRIVATE KEY")
}

// quoteType quotes a PEM block type for a message, bounded: it comes from user data.
func quoteType(t string) string {
	const max = 40
	if len(t) > max {
		t = t[:max] + "..."
	}
	return strconv.Quote(t)
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: blockCertificate, Bytes: c.Raw})
	}
	return b.Bytes()
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}
