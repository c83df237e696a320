package webhookcert

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// DefaultWatchResync is how often Watcher re-reads an externally issued Secret.
const DefaultWatchResync = time.Minute

// Watcher serves a certificate someone else issues and renews (cert-manager, through a
// Certificate whose Secret has tls.crt, tls.key and ca.crt): it loads the Secret into the
// Store, re-reads it every Resync, and reports CA bundle changes through OnChange. It never
// writes the Secret. The operator still renders caBundle into its webhook configurations
// itself, from ca.crt, so no other component (such as cert-manager's cainjector) patches
// objects the operator owns.
type Watcher struct {
	// APIReader reads the Secret from the API server (the manager's GetAPIReader).
	APIReader       client.Reader
	Namespace, Name string
	Store           *Store
	OnChange        func(caBundle []byte)
	// Resync is the time between reads (default DefaultWatchResync).
	Resync time.Duration
}

var (
	_ manager.Runnable               = (*Watcher)(nil)
	_ manager.LeaderElectionRunnable = (*Watcher)(nil)
)

// NeedLeaderElection is false: every replica serves webhooks.
func (w *Watcher) NeedLeaderElection() bool { return false }

// Load reads the Secret once and makes its certificate current.
func (w *Watcher) Load(ctx context.Context) error {
	s := &corev1.Secret{}
	if err := w.APIReader.Get(ctx, client.ObjectKey{Namespace: w.Namespace, Name: w.Name}, s); err != nil {
		return fmt.Errorf("reading webhook certificate Secret %s/%s: %w", w.Namespace, w.Name, err)
	}
	m, err := ParseMaterial(s.Data)
	if m.Leaf() == nil || len(m.Bundle) == 0 {
		return fmt.Errorf("webhook certificate Secret %s/%s has no usable tls.crt, tls.key and ca.crt: %w",
			w.Namespace, w.Name, errors.Join(err, errors.New("incomplete")))
	}
	changed, err := w.Store.Set(m)
	if err != nil {
		return err
	}
	if changed && w.OnChange != nil {
		w.OnChange(w.Store.CABundle())
	}
	return nil
}

// Start loads the Secret, then re-reads it every Resync until ctx ends. Until the Secret
// first loads (the Certificate may not be issued yet) it retries sooner.
func (w *Watcher) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithValues("secret", klog.KRef(w.Namespace, w.Name))
	resync := w.Resync
	if resync <= 0 {
		resync = DefaultWatchResync
	}
	wait := time.Second
	for {
		if err := w.Load(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Error(err, "Loading the webhook certificate failed", "retryAfter", wait)
			wait = min(2*wait, resync)
		} else {
			wait = resync
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}
