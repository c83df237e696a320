package webhookcert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// The label on every object meshplane creates (render.LabelManagedBy, not imported to keep
// this package free of the renderer's dependencies).
const (
	labelManagedBy = "app.kubernetes.io/managed-by"
	managedByValue = "meshplane"
)

// DefaultResync is how often Manager re-reads the Secret when it has nothing due, so that
// a rotation written by another replica reaches this one's Store well within the overlap.
const DefaultResync = 5 * time.Minute

// Retry backoff after a failed Ensure in Start.
const (
	minRetry = 500 * time.Millisecond
	maxRetry = time.Minute
)

// Manager keeps the certificate Secret current and the Store in step with it. It runs on
// every replica (each must serve the current certificate); replicas racing to write are
// kept apart by the Secret's resourceVersion, and the loser adopts the winner's content.
type Manager struct {
	// Client writes the Secret.
	Client client.Client
	// APIReader reads the Secret from the API server, not a cache (the manager's
	// GetAPIReader); nil means Client, which must then be uncached.
	APIReader client.Reader
	// Namespace and Name of the Secret.
	Namespace, Name string
	// Spec of the certificates.
	Spec Spec
	// Store receives every certificate read or written; required.
	Store *Store
	// OnChange, if set, is called with the new CA bundle whenever it changes (including
	// the first load), to re-render the webhook configurations. It must not block and
	// must not call Ensure.
	OnChange func(caBundle []byte)
	// Clock defaults to the real clock.
	Clock clock.Clock
	// Resync bounds the wait between reads (default DefaultResync); it must be shorter
	// than Spec.Overlap.
	Resync time.Duration

	mu sync.Mutex // one Ensure at a time, so Store and OnChange see changes in order
}

var (
	_ manager.Runnable               = (*Manager)(nil)
	_ manager.LeaderElectionRunnable = (*Manager)(nil)
)

// NeedLeaderElection is false: every replica serves webhooks and needs the certificate.
func (m *Manager) NeedLeaderElection() bool { return false }

// Start keeps the certificate current until ctx ends: Ensure, then wait until the next
// planned step or the resync interval, retrying failures with a bounded backoff.
func (m *Manager) Start(ctx context.Context) error {
	if err := m.validate(); err != nil {
		return err
	}
	log := ctrl.LoggerFrom(ctx).WithValues("secret", klog.KRef(m.Namespace, m.Name))
	ctx = ctrl.LoggerInto(ctx, log)
	clk := m.clock()
	retryAfter := minRetry
	for {
		_, next, err := m.Ensure(ctx)
		var wait time.Duration
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			wait = retryAfter
			retryAfter = min(2*retryAfter, maxRetry)
			log.Error(err, "Ensuring webhook certificate failed", "retryAfter", wait)
		default:
			retryAfter = minRetry
			wait = min(max(next.Sub(clk.Now()), time.Second), m.resync())
		}
		t := clk.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// Ensure reads the Secret, creates or updates it as Plan decides (writing only when its
// content changes), loads the result into the Store and calls OnChange if the bundle
// changed. It returns what the Secret holds and when to call it again.
func (m *Manager) Ensure(ctx context.Context) (*Material, time.Time, error) {
	if err := m.validate(); err != nil {
		return nil, time.Time{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()

	var mat *Material
	var next time.Time
	// A conflict means another replica wrote first: re-read and plan from its content,
	// which normally needs no further write.
	err := retry.OnError(retry.DefaultRetry, func(err error) bool {
		return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)
	}, func() error {
		var err error
		mat, next, err = m.ensureOnce(ctx)
		return err
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	changed, err := m.Store.Set(mat)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("loading webhook certificate: %w", err)
	}
	if changed && m.OnChange != nil {
		m.OnChange(m.Store.CABundle())
	}
	return mat, next, nil
}

func (m *Manager) ensureOnce(ctx context.Context) (*Material, time.Time, error) {
	log := ctrl.LoggerFrom(ctx)
	now := m.clock().Now()
	reader := m.APIReader
	if reader == nil {
		reader = m.Client
	}
	secret := &corev1.Secret{}
	var existing *Material
	err := reader.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Name}, secret)
	switch {
	case apierrors.IsNotFound(err):
		secret = nil
	case err != nil:
		return nil, time.Time{}, fmt.Errorf("reading webhook certificate Secret: %w", err)
	case secret.Labels[labelManagedBy] != managedByValue:
		return nil, time.Time{}, fmt.Errorf("secret %s/%s exists but is not managed by meshplane (label %s=%s); refusing to overwrite it",
			m.Namespace, m.Name, labelManagedBy, managedByValue)
	default:
		var perr error
		existing, perr = ParseMaterial(secret.Data)
		if perr != nil {
			log.Info("Webhook certificate Secret holds unusable content; replacing it", "problems", perr.Error())
		}
	}

	out, err := Plan(now, existing, m.Spec)
	if err != nil {
		return nil, time.Time{}, err
	}
	data, err := out.Material.SecretData()
	if err != nil {
		return nil, time.Time{}, err
	}

	if secret == nil {
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: m.Namespace,
				Name:      m.Name,
				Labels:    map[string]string{labelManagedBy: managedByValue},
			},
			Type: corev1.SecretTypeTLS,
			Data: data,
		}
		if err := m.Client.Create(ctx, secret); err != nil {
			return nil, time.Time{}, fmt.Errorf("creating webhook certificate Secret: %w", err)
		}
		log.Info("Created webhook certificate Secret", "reasons", out.Reasons)
		return out.Material, out.NextCheck, nil
	}
	if sameData(secret.Data, data) {
		return out.Material, out.NextCheck, nil
	}
	if secret.Data == nil {
		secret.Data = map[string][]byte{}
	}
	for k, v := range data {
		secret.Data[k] = v
	}
	// Update carries the resourceVersion we read: a concurrent writer makes it conflict.
	if err := m.Client.Update(ctx, secret); err != nil {
		return nil, time.Time{}, fmt.Errorf("updating webhook certificate Secret: %w", err)
	}
	reasons := out.Reasons
	if len(reasons) == 0 {
		reasons = []string{"normalising encoding"}
	}
	log.Info("Updated webhook certificate Secret", "reasons", reasons)
	return out.Material, out.NextCheck, nil
}

func sameData(have, want map[string][]byte) bool {
	for k, v := range want {
		if !bytes.Equal(have[k], v) {
			return false
		}
	}
	return true
}

func (m *Manager) validate() error {
	var errs []error
	if m.Client == nil {
		errs = append(errs, errors.New("no Client"))
	}
	if m.Store == nil {
		errs = append(errs, errors.New("no Store"))
	}
	if m.Namespace == "" || m.Name == "" {
		errs = append(errs, errors.New("no Secret namespace or name"))
	}
	if overlap := m.Spec.withDefaults().Overlap; m.resync() >= overlap {
		errs = append(errs, fmt.Errorf("resync %s must be shorter than the overlap %s", m.resync(), overlap))
	}
	if len(errs) > 0 {
		return fmt.Errorf("webhook certificate manager: %w", errors.Join(errs...))
	}
	return nil
}

func (m *Manager) clock() clock.Clock {
	if m.Clock == nil {
		return clock.RealClock{}
	}
	return m.Clock
}

func (m *Manager) resync() time.Duration {
	if m.Resync == 0 {
		return DefaultResync
	}
	return m.Resync
}
