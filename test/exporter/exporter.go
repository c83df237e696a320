// Package exporter is a synthetic source of Istio's standard request metrics for tests:
// istio_requests_total and istio_request_duration_milliseconds (a histogram) for any number
// of destination workloads, typically a Canary's primary and canary, each with a request
// rate, error ratio and p99 latency that tests change while it runs.
//
// Nothing is sampled at random: the counters are the integral of the configured rates over
// time, computed when scraped, so Prometheus reads exactly the configured values back:
// rate(istio_requests_total) is the request rate, the share of 5xx is the error ratio, and
// histogram_quantile(0.99, ...) over the duration buckets is the p99 latency. Counts are
// exact, so fractional (Prometheus takes float samples): whole requests would make a p99
// carried by 1% of 10 requests/s jump between buckets from one scrape to the next. Like
// Envoy, a series appears with the first request that would be counted in it.
//
// Embed it in a test (New, Set, Handler behind an httptest.Server) or run it alone
// (test/exporter/cmd/istio-exporter) and change the traffic over HTTP (PUT /traffic).
package exporter

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// DurationBuckets are the upper bounds, in milliseconds, of Istio's
// istio_request_duration_milliseconds histogram (Envoy's default buckets).
var DurationBuckets = []float64{
	0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
}

// MaxP99Latency is the largest p99 latency the histogram can express (its last finite bucket).
const MaxP99Latency = time.Hour

// ErrorCode is the response code of the simulated failed requests.
const ErrorCode = 503

// Workload identifies a destination workload, as Istio labels it.
type Workload struct {
	Namespace string // destination_workload_namespace, destination_service_namespace
	Name      string // destination_workload: the Deployment's name
	// Service is destination_service_name, destination_app and destination_canonical_service;
	// the host destination_service is <Service>.<Namespace>.svc.cluster.local. Default: Name.
	// A Canary's primary and canary share their service.
	Service string
	// Version is destination_version and destination_canonical_revision. Default: "latest".
	Version string
}

// Traffic is what one workload receives.
type Traffic struct {
	// RequestsPerSecond is the request rate; 0 stops the traffic (the series stay, as Envoy's do).
	RequestsPerSecond float64
	// ErrorRatio is the share of requests answered with ErrorCode, from 0 to 1.
	ErrorRatio float64
	// P99Latency is what histogram_quantile(0.99, rate(..._bucket)) reads back, at most
	// MaxP99Latency. Most requests are faster: they land in the bucket below. Values up to
	// the first bucket's bound (0.5ms) read back as 0.495ms, the histogram's resolution there.
	P99Latency time.Duration
}

// Validate says what is wrong with t, if anything.
func (t Traffic) Validate() error {
	var errs []error
	if t.RequestsPerSecond < 0 || math.IsNaN(t.RequestsPerSecond) || math.IsInf(t.RequestsPerSecond, 0) {
		errs = append(errs, fmt.Errorf("requests per second %v: must be a finite number >= 0", t.RequestsPerSecond))
	}
	if !(t.ErrorRatio >= 0 && t.ErrorRatio <= 1) {
		errs = append(errs, fmt.Errorf("error ratio %v: must be between 0 and 1", t.ErrorRatio))
	}
	if t.P99Latency < 0 || t.P99Latency > MaxP99Latency {
		errs = append(errs, fmt.Errorf("p99 latency %s: must be between 0 and %s", t.P99Latency, MaxP99Latency))
	}
	return errors.Join(errs...)
}

func (w Workload) withDefaults() Workload {
	if w.Service == "" {
		w.Service = w.Name
	}
	if w.Version == "" {
		w.Version = "latest"
	}
	return w
}

// Exporter simulates the traffic and serves the metrics. It is a prometheus.Collector.
type Exporter struct {
	now func() time.Time

	mu    sync.Mutex
	flows map[Workload]*flow
}

// flow is one workload's traffic and what it has accumulated so far.
type flow struct {
	traffic Traffic
	dist    distribution
	since   time.Time // accumulated up to here
	// tallies by response code, created with the first request they count.
	tallies map[int]*tally
}

// tally accumulates requests of one response code.
type tally struct {
	requests   float64
	cumBuckets []float64 // cumulative, one per DurationBuckets entry
	sumMs      float64
}

// Option configures New.
type Option func(*Exporter)

// WithClock replaces time.Now, for tests of the exporter itself.
func WithClock(now func() time.Time) Option { return func(e *Exporter) { e.now = now } }

// New returns an exporter with no workloads.
func New(opts ...Option) *Exporter {
	e := &Exporter{now: time.Now, flows: map[Workload]*flow{}}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Set starts or changes w's traffic from now on; what was counted before stays counted.
func (e *Exporter) Set(w Workload, t Traffic) error {
	if w.Namespace == "" || w.Name == "" {
		return fmt.Errorf("workload %q in namespace %q: both names are required", w.Name, w.Namespace)
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("traffic for %s/%s: %w", w.Namespace, w.Name, err)
	}
	w = w.withDefaults()
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	f, ok := e.flows[w]
	if !ok {
		f = &flow{since: now, tallies: map[int]*tally{}}
		e.flows[w] = f
	}
	f.advance(now)
	f.traffic = t
	f.dist = newDistribution(float64(t.P99Latency) / float64(time.Millisecond))
	return nil
}

// MustSet is Set for tests' fixed values: it panics on invalid input.
func (e *Exporter) MustSet(w Workload, t Traffic) {
	if err := e.Set(w, t); err != nil {
		panic(err)
	}
}

// Traffic returns w's current traffic, and whether w is known.
func (e *Exporter) Traffic(w Workload) (Traffic, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f, ok := e.flows[w.withDefaults()]
	if !ok {
		return Traffic{}, false
	}
	return f.traffic, true
}

// advance adds the requests between f.since and now at the current traffic.
func (f *flow) advance(now time.Time) {
	dt := now.Sub(f.since).Seconds()
	if dt <= 0 {
		return
	}
	f.since = now
	n := f.traffic.RequestsPerSecond * dt
	if n <= 0 {
		return
	}
	for _, share := range []struct {
		code  int
		ratio float64
	}{{200, 1 - f.traffic.ErrorRatio}, {ErrorCode, f.traffic.ErrorRatio}} {
		if share.ratio <= 0 {
			continue
		}
		t, ok := f.tallies[share.code]
		if !ok {
			t = &tally{cumBuckets: make([]float64, len(DurationBuckets))}
			f.tallies[share.code] = t
		}
		c := n * share.ratio
		t.requests += c
		for i, frac := range f.dist.cumulative {
			t.cumBuckets[i] += c * frac
		}
		t.sumMs += c * f.dist.meanMs
	}
}

// distribution spreads requests over the duration buckets so that histogram_quantile(0.99)
// interpolates to exactly the p99 latency.
type distribution struct {
	cumulative []float64 // share of requests at or below each DurationBuckets bound
	meanMs     float64
}

// newDistribution places the requests in at most two adjacent buckets. With p99 in bucket
// (lo, hi] at r = (p99-lo)/(hi-lo) of its width, histogram_quantile returns
// lo + (hi-lo)*(0.99-below)/inside, so:
//   - r <= 0.99: a share p = 0.01/(1-r) inside, the rest at lo (the bucket below);
//   - r > 0.99: a share 0.99/r inside, the rest in the bucket above.
func newDistribution(p99 float64) distribution {
	k := sort.SearchFloat64s(DurationBuckets, p99) // first bound >= p99
	if k == len(DurationBuckets) {
		k = len(DurationBuckets) - 1 // Validate keeps p99 within range; stay safe anyway
	}
	lo, hi := 0.0, DurationBuckets[k]
	if k > 0 {
		lo = DurationBuckets[k-1]
	}
	r := (p99 - lo) / (hi - lo)
	shares := make([]float64, len(DurationBuckets)+1) // last: +Inf
	var mean float64
	switch {
	case k == 0: // nothing lies below the first bucket
		shares[0] = 1
		mean = p99
	case r <= 0.99:
		p := 0.01 / (1 - r)
		shares[k], shares[k-1] = p, 1-p
		mean = p*p99 + (1-p)*lo
	default:
		q := 0.99 / r
		shares[k], shares[k+1] = q, 1-q
		above := 2 * hi // beyond the last finite bound
		if k+1 < len(DurationBuckets) {
			above = DurationBuckets[k+1]
		}
		mean = q*p99 + (1-q)*above
	}
	d := distribution{cumulative: make([]float64, len(DurationBuckets)), meanMs: mean}
	top := 0 // the highest bucket holding requests (len(DurationBuckets): +Inf)
	for i, s := range shares {
		if s > 0 {
			top = i
		}
	}
	var cum float64
	for i := range DurationBuckets {
		cum += shares[i]
		if i >= top {
			cum = 1 // exactly, so these buckets' counts equal the total count
		}
		d.cumulative[i] = cum
	}
	return d
}

// Istio's standard metric names and labels.
const (
	requestsTotalName = "istio_requests_total"
	durationName      = "istio_request_duration_milliseconds"
)

var istioLabels = []string{
	"reporter",
	"source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
	"source_cluster", "source_canonical_service", "source_canonical_revision",
	"destination_workload", "destination_workload_namespace", "destination_principal", "destination_app",
	"destination_version", "destination_service", "destination_service_name", "destination_service_namespace",
	"destination_canonical_service", "destination_canonical_revision", "destination_cluster",
	"request_protocol", "response_code", "grpc_response_status", "response_flags", "connection_security_policy",
}

var (
	requestsTotalDesc = prometheus.NewDesc(requestsTotalName, "Requests seen by the proxies (synthetic).", istioLabels, nil)
	durationDesc      = prometheus.NewDesc(durationName, "Request durations in milliseconds (synthetic).", istioLabels, nil)
)

// sourceWorkload is the client every simulated request comes from.
const sourceWorkload = "loadgen"

// labelValues follows istioLabels' order.
func labelValues(w Workload, reporter string, code int) []string {
	mtls := "mutual_tls"
	if reporter == "source" {
		mtls = "unknown" // as Envoy reports it on the client side
	}
	return []string{
		reporter,
		sourceWorkload, w.Namespace, "spiffe://cluster.local/ns/" + w.Namespace + "/sa/" + sourceWorkload, sourceWorkload, "unknown",
		"Kubernetes", sourceWorkload, "latest",
		w.Name, w.Namespace, "spiffe://cluster.local/ns/" + w.Namespace + "/sa/" + w.Service, w.Service,
		w.Version, w.Service + "." + w.Namespace + ".svc.cluster.local", w.Service, w.Namespace,
		w.Service, w.Version, "Kubernetes",
		"http", strconv.Itoa(code), "", "-", mtls,
	}
}

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	ch <- requestsTotalDesc
	ch <- durationDesc
}

// Collect implements prometheus.Collector: it accumulates up to now and emits every series,
// as both the destination's and the source's proxy would report it.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	for w, f := range e.flows {
		f.advance(now)
		for code, t := range f.tallies {
			buckets := make(map[float64]uint64, len(DurationBuckets))
			for _, b := range DurationBuckets {
				buckets[b] = 0 // floatCounts writes the values
			}
			for _, reporter := range []string{"destination", "source"} {
				lv := labelValues(w, reporter, code)
				ch <- prometheus.MustNewConstMetric(requestsTotalDesc, prometheus.CounterValue, t.requests, lv...)
				h := prometheus.MustNewConstHistogram(durationDesc, 0, t.sumMs, buckets, lv...)
				ch <- floatCounts{Metric: h, count: t.requests, cumulative: slices.Clone(t.cumBuckets)}
			}
		}
	}
}

// floatCounts is a classic histogram with fractional counts: client_golang's constant
// histograms take whole numbers, the exposition format takes any.
type floatCounts struct {
	prometheus.Metric
	count      float64
	cumulative []float64 // by DurationBuckets
}

func (h floatCounts) Write(m *dto.Metric) error {
	if err := h.Metric.Write(m); err != nil {
		return err
	}
	hist := m.GetHistogram()
	if hist == nil || len(hist.GetBucket()) != len(h.cumulative) {
		return fmt.Errorf("%s: expected a histogram with %d buckets", durationName, len(h.cumulative))
	}
	hist.SampleCount, hist.SampleCountFloat = nil, &h.count
	for i, b := range hist.GetBucket() { // sorted by bound, as DurationBuckets
		b.CumulativeCount, b.CumulativeCountFloat = nil, &h.cumulative[i]
	}
	return nil
}

// Handler serves GET /metrics (the Prometheus text format) and /traffic: GET lists every
// workload with its traffic, PUT or POST sets one, as JSON:
//
//	{"namespace":"shop","name":"web","service":"web","requestsPerSecond":100,"errorRatio":0.05,"p99Latency":"250ms"}
func (e *Exporter) Handler() http.Handler {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	mux.HandleFunc("GET /traffic", e.listTraffic)
	mux.HandleFunc("PUT /traffic", e.setTraffic)
	mux.HandleFunc("POST /traffic", e.setTraffic)
	return mux
}

// TrafficSetting is one workload's traffic in /traffic's JSON.
type TrafficSetting struct {
	Namespace         string  `json:"namespace"`
	Name              string  `json:"name"`
	Service           string  `json:"service,omitempty"`
	Version           string  `json:"version,omitempty"`
	RequestsPerSecond float64 `json:"requestsPerSecond"`
	ErrorRatio        float64 `json:"errorRatio"`
	P99Latency        string  `json:"p99Latency"` // a Go duration: "250ms", "1.5s"
}

func (e *Exporter) listTraffic(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	list := make([]TrafficSetting, 0, len(e.flows))
	for wl, f := range e.flows {
		list = append(list, TrafficSetting{
			Namespace: wl.Namespace, Name: wl.Name, Service: wl.Service, Version: wl.Version,
			RequestsPerSecond: f.traffic.RequestsPerSecond, ErrorRatio: f.traffic.ErrorRatio,
			P99Latency: f.traffic.P99Latency.String(),
		})
	}
	e.mu.Unlock()
	sort.Slice(list, func(i, j int) bool {
		if list[i].Namespace != list[j].Namespace {
			return list[i].Namespace < list[j].Namespace
		}
		return list[i].Name < list[j].Name
	})
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(list)
}

func (e *Exporter) setTraffic(w http.ResponseWriter, r *http.Request) {
	var s TrafficSetting
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		http.Error(w, "decoding traffic setting: "+err.Error(), http.StatusBadRequest)
		return
	}
	var p99 time.Duration
	if s.P99Latency != "" {
		var err error
		if p99, err = time.ParseDuration(s.P99Latency); err != nil {
			http.Error(w, "p99Latency: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	wl := Workload{Namespace: s.Namespace, Name: s.Name, Service: s.Service, Version: s.Version}
	if err := e.Set(wl, Traffic{RequestsPerSecond: s.RequestsPerSecond, ErrorRatio: s.ErrorRatio, P99Latency: p99}); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
