package metrics

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// source reports one kind's status metrics. Each kind's file registers its source in init,
// as API types register with a SchemeBuilder, so a new kind is one file.
type source interface {
	// kind names the reported kind (the value of the collector's error counter's label).
	kind() string
	// object is an empty object of the kind: its informer starts with the manager's cache.
	object() client.Object
	describe(ch chan<- *prometheus.Desc)
	// collect lists the kind from r and sends its metrics; it sends nothing when the list fails.
	collect(ctx context.Context, r client.Reader, ch chan<- prometheus.Metric) error
}

var sources []source

func register(s source) { sources = append(sources, s) }

// listTimeout bounds a scrape's lists. From a synced cache they take microseconds; the
// bound only matters if a cache is not synced, and keeps a scrape from hanging on it.
const listTimeout = 5 * time.Second

// StatusCollector is a prometheus.Collector reporting, on each scrape, the status of every
// object of the reported kinds that its reader (the manager's cache) holds.
type StatusCollector struct {
	reader client.Reader
	log    logr.Logger
	errors *prometheus.CounterVec
}

// NewStatusCollector returns a collector reading from r, which should be a cache: a scrape
// lists every reported kind.
func NewStatusCollector(r client.Reader, log logr.Logger) *StatusCollector {
	c := &StatusCollector{
		reader: r,
		log:    log,
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshplane_status_collector_errors_total",
			Help: "Scrapes whose list of the kind from the operator's cache failed, leaving that kind's status metrics out.",
		}, []string{"kind"}),
	}
	for _, s := range sources {
		c.errors.WithLabelValues(s.kind()) // present at 0, so increase() sees the first error
	}
	return c
}

// Describe sends every metric's descriptor.
func (c *StatusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range sources {
		s.describe(ch)
	}
	c.errors.Describe(ch)
}

// Collect lists each kind and sends its metrics. A failed list is logged and counted rather
// than reported to the registry: controller-runtime's endpoint answers a collector error with
// HTTP 500, which would lose every other metric of the scrape too.
func (c *StatusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), listTimeout)
	defer cancel()
	for _, s := range sources {
		if err := s.collect(ctx, c.reader, ch); err != nil {
			c.errors.WithLabelValues(s.kind()).Inc()
			c.log.Error(err, "Listing for the status metrics failed", "kind", s.kind())
		}
	}
	c.errors.Collect(ch)
}

// SetupWithManager reports the status metrics on the manager's metrics endpoint. The
// reported kinds' informers start with the manager's cache (so a scrape never waits for
// one), and the collector is registered in controller-runtime's registry only while this
// replica is the leader: of several replicas, exactly one reports each object, and sums over
// the series count it once.
func SetupWithManager(mgr ctrl.Manager) error {
	for _, s := range sources {
		// Before the manager starts this only adds the informer; it starts with the cache.
		if _, err := mgr.GetCache().GetInformer(context.Background(), s.object()); err != nil {
			return fmt.Errorf("watching %s for the status metrics: %w", s.kind(), err)
		}
	}
	log := mgr.GetLogger().WithName("metrics")
	return mgr.Add(&registration{
		collector: NewStatusCollector(mgr.GetCache(), log),
		registry:  ctrlmetrics.Registry,
		log:       log,
	})
}

// registration keeps a collector registered while the manager runs and leads.
type registration struct {
	collector prometheus.Collector
	registry  prometheus.Registerer
	log       logr.Logger
}

// NeedLeaderElection makes the manager start the registration only on the leader.
func (r *registration) NeedLeaderElection() bool { return true }

// Start registers the collector and unregisters it when the manager stops, so a manager
// started later in the same process (as tests do) can register its own.
func (r *registration) Start(ctx context.Context) error {
	if err := r.registry.Register(r.collector); err != nil {
		if are := (prometheus.AlreadyRegisteredError{}); errors.As(err, &are) {
			// Only when two managers run in one process at once, as a test may: the first
			// one's cache is reported, the other's not at all.
			r.log.Info("Another manager in this process already reports the status metrics; this one does not")
			<-ctx.Done()
			return nil
		}
		return fmt.Errorf("registering the status metrics: %w", err)
	}
	<-ctx.Done()
	r.registry.Unregister(r.collector)
	return nil
}

// Helpers for the sources.

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labelValues ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labelValues...)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// oneOf sends one series per value in values, 1 for current and 0 for the others, followed
// by labelValues; a current value missing from values (an enumeration grown since this
// build) still gets its series, so nothing is silently dropped.
func oneOf(ch chan<- prometheus.Metric, d *prometheus.Desc, values []string, current string, labelValues ...string) {
	with := func(v string) []string { return append(labelValues[:len(labelValues):len(labelValues)], v) }
	seen := false
	for _, v := range values {
		seen = seen || v == current
		gauge(ch, d, boolValue(v == current), with(v)...)
	}
	if !seen && current != "" {
		gauge(ch, d, 1, with(current)...)
	}
}
