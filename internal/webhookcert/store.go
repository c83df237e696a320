package webhookcert

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
)

// Store holds the certificate the webhook server presents and the CA bundle to publish.
// The zero value is empty and ready to use; Manager fills it.
type Store struct {
	mu      sync.Mutex // serialises Set
	current atomic.Pointer[stored]
}

type stored struct {
	cert   *tls.Certificate
	bundle []byte
}

// errNotLoaded is returned until the first Set.
var errNotLoaded = errors.New("webhook serving certificate not loaded yet")

// Set makes m's serving certificate and CA bundle current, and reports whether the bundle
// changed.
func (s *Store) Set(m *Material) (bundleChanged bool, err error) {
	cert, err := m.TLSCertificate()
	if err != nil {
		return false, err
	}
	bundle := m.CABundlePEM()
	if len(bundle) == 0 {
		return false, errors.New("empty CA bundle")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.current.Load()
	if old != nil && bytes.Equal(old.bundle, bundle) && sameChain(old.cert, cert) {
		return false, nil
	}
	s.current.Store(&stored{cert: cert, bundle: bundle})
	return old == nil || !bytes.Equal(old.bundle, bundle), nil
}

// GetCertificate serves as tls.Config.GetCertificate (controller-runtime's webhook server
// uses it when set in TLSOpts, instead of reading files).
func (s *Store) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cur := s.current.Load()
	if cur == nil {
		return nil, errNotLoaded
	}
	return cur.cert, nil
}

// CABundle returns the PEM CA certificates clients must trust, for a webhook's caBundle;
// nil until loaded.
func (s *Store) CABundle() []byte {
	cur := s.current.Load()
	if cur == nil {
		return nil
	}
	return bytes.Clone(cur.bundle)
}

// Check is a healthz.Checker: ready once a certificate is loaded, so a replica gets no
// webhook traffic before it can complete a handshake.
func (s *Store) Check(*http.Request) error {
	if s.current.Load() == nil {
		return errNotLoaded
	}
	return nil
}

func sameChain(a, b *tls.Certificate) bool {
	if len(a.Certificate) != len(b.Certificate) {
		return false
	}
	for i := range a.Certificate {
		if !bytes.Equal(a.Certificate[i], b.Certificate[i]) {
			return false
		}
	}
	return true
}
