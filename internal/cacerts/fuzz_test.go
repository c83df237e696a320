package cacerts

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzValidate feeds arbitrary bytes into every key. Whatever the input, nothing panics,
// problems come back as a non-empty *InvalidError, accepted material can be summarised, and
// the cert-manager conversion of the same bytes either fails or yields the four keys.
// Run longer with: go test ./internal/cacerts -fuzz FuzzValidate -fuzztime 60s -fuzzminimizetime 2s
// (minimizing an interesting input of five arguments otherwise stalls the run for a minute).
// The seeds are ECDSA only: RSA under the fuzzer's coverage instrumentation is very slow.
func FuzzValidate(f *testing.F) {
	root := newCA(f, ecdsaP256, "Root CA", nil)
	mid := newCA(f, ecdsaP256, "Mid CA", root)
	inter := newCA(f, ecdsaP256, "Intermediate CA", mid)
	valid := plugged(f, inter, certs(inter, mid, root), root)
	add := func(data map[string][]byte, offset int64) {
		f.Add(data[KeyCACert], data[KeyCAKey], data[KeyCertChain], data[KeyRootCert], offset)
	}
	add(valid, 0)
	add(valid, int64(400*day/time.Second))
	add(with(valid, KeyCAKey, pemLegacy(f, inter.key)), 0)
	add(with(valid, KeyCACert, valid[KeyCAKey]), 0)
	add(with(valid, KeyCertChain, pemCerts(root.cert, inter.cert)), 0)
	add(with(valid, KeyRootCert, valid[KeyCertChain]), -int64(2*day/time.Second))
	add(map[string][]byte{KeyCACert: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")}, 0)
	add(map[string][]byte{}, 0)

	f.Fuzz(func(t *testing.T, caCert, caKey, chain, rootCert []byte, offset int64) {
		data := map[string][]byte{KeyCACert: caCert, KeyCAKey: caKey, KeyCertChain: chain, KeyRootCert: rootCert}
		at := now.Add(time.Duration(offset%int64(100*365*day/time.Second)) * time.Second)

		_, err := Validate(data, at)
		if err != nil {
			var invalid *InvalidError
			if !errors.As(err, &invalid) || len(invalid.Problems) == 0 {
				t.Fatalf("Validate returned %T %v, want a non-empty *InvalidError", err, err)
			}
			if !strings.HasPrefix(err.Error(), "cacerts: ") || strings.Contains(err.Error(), "-----BEGIN") {
				t.Fatalf("unexpected message: %s", err)
			}
		} else if _, err := Summarize(data); err != nil {
			t.Fatalf("Validate accepted what Summarize rejects: %v", err)
		}
		if fp := Fingerprint(data); len(fp) != 16 {
			t.Fatalf("fingerprint %q", fp)
		}

		out, err := FromCertManager(map[string][]byte{"tls.crt": caCert, "tls.key": caKey, "ca.crt": rootCert})
		if err == nil && len(out) != 4 {
			t.Fatalf("FromCertManager returned %d keys", len(out))
		}
	})
}
