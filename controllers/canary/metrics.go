package canary

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/canary"
	"github.com/meshplane/meshplane/internal/prom"
)

// defaultInterval is the analysis interval when the spec has none (the CRD defaults it).
const defaultInterval = time.Minute

// interval is the analysis interval: the window every query measures.
func interval(c *meshv1alpha1.Canary) time.Duration {
	if i := c.Spec.Analysis.Interval; i != nil && i.Duration > 0 {
		return i.Duration
	}
	return defaultInterval
}

// check measures the canary (the target's workload) over the last interval, at now: the
// request count (always, so every check records it), then each metric of the spec. When
// Prometheus cannot be queried at all (a missing or unusable credentials Secret, an
// unusable address), every result is that error: the check is an Error, not a failure.
func (r *Reconciler) check(ctx context.Context, c *meshv1alpha1.Canary, now time.Time) *canary.Check {
	metrics := c.Spec.Analysis.Metrics
	out := &canary.Check{Metrics: make(map[string]canary.Result, len(metrics))}
	pc, err := r.promClient(ctx, c)
	if err != nil {
		out.Requests = canary.QueryFailed(err)
		for _, m := range metrics {
			out.Metrics[m.Name] = canary.QueryFailed(err)
		}
		return out
	}
	window := interval(c)
	target := prom.Target{Namespace: c.Namespace, Workload: c.Spec.TargetRef.Name}
	query := func(promql string, err error, scale float64) canary.Result {
		if err != nil {
			return canary.QueryFailed(err)
		}
		res, err := pc.Query(ctx, promql, now)
		switch {
		case err != nil:
			return canary.QueryFailed(err)
		case res.NoData:
			return canary.NoData()
		}
		return canary.Measured(res.Value * scale)
	}
	q, err := prom.RequestCountQuery(target, window)
	out.Requests = query(q, err, 1)
	for _, m := range metrics {
		switch m.Name {
		case meshv1alpha1.MetricRequestSuccessRate:
			// The query answers a ratio; the threshold is a percentage.
			q, err := prom.RequestSuccessRateQuery(target, window)
			out.Metrics[m.Name] = query(q, err, 100)
		case meshv1alpha1.MetricRequestDuration:
			q, err := prom.RequestDurationP99Query(target, window)
			out.Metrics[m.Name] = query(q, err, 1)
		default:
			q, err := prom.RenderTemplate(m.Query, prom.TemplateVars{
				Namespace: c.Namespace,
				Target:    c.Spec.TargetRef.Name,
				Primary:   c.Spec.TargetRef.Name + "-primary",
				Interval:  window,
			})
			out.Metrics[m.Name] = query(q, err, 1)
		}
	}
	return out
}

// promClient returns a client for the Canary's Prometheus, built again only when the
// address or the credentials Secret changed. Its errors name the Secret and its keys,
// never their values.
func (r *Reconciler) promClient(ctx context.Context, c *meshv1alpha1.Canary) (*prom.Client, error) {
	src := c.Spec.Analysis.Prometheus
	cfg := prom.Config{Address: src.Address}
	fingerprint := src.Address
	if ref := src.CredentialsSecretRef; ref != nil {
		secret := &corev1.Secret{}
		if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: ref.Name}, secret); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("the Prometheus credentials Secret %s does not exist in namespace %s (spec.analysis.prometheus.credentialsSecretRef)", ref.Name, c.Namespace)
			}
			return nil, fmt.Errorf("reading the Prometheus credentials Secret %s: %s", ref.Name, apierrors.ReasonForError(err))
		}
		creds, err := prom.CredentialsFromSecret(secret.Data)
		if err != nil {
			return nil, fmt.Errorf("Secret %s: %w", ref.Name, err)
		}
		cfg.Credentials = creds
		fingerprint += "|" + string(secret.UID) + "|" + secret.ResourceVersion
	}
	return r.prom.get(client.ObjectKeyFromObject(c), fingerprint, cfg)
}

// promClients keeps one client per Canary (its connections are reused from check to check).
type promClients struct {
	mu      sync.Mutex
	clients map[types.NamespacedName]promClient
}

type promClient struct {
	fingerprint string
	client      *prom.Client
}

func (p *promClients) get(key types.NamespacedName, fingerprint string, cfg prom.Config) (*prom.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if held, ok := p.clients[key]; ok && held.fingerprint == fingerprint {
		return held.client, nil
	}
	pc, err := prom.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	if p.clients == nil {
		p.clients = map[types.NamespacedName]promClient{}
	}
	p.clients[key] = promClient{fingerprint: fingerprint, client: pc}
	return pc, nil
}

func (p *promClients) forget(key types.NamespacedName) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.clients, key)
}
