package exporter

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakeClock is a settable time source.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time            { return c.t }
func (c *fakeClock) step(d time.Duration)      { c.t = c.t.Add(d) }
func newClock() *fakeClock                     { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }
func labelsOf(m *dto.Metric) map[string]string { return labelMap(m.GetLabel()) }

func labelMap(pairs []*dto.LabelPair) map[string]string {
	out := map[string]string{}
	for _, p := range pairs {
		out[p.GetName()] = p.GetValue()
	}
	return out
}

// series is one gathered series, keyed by the labels tests look at.
type series struct {
	reporter, workload, code string
	value                    float64 // the counter, or the histogram's count
	hist                     *dto.Histogram
}

func gather(t *testing.T, e *Exporter) map[string][]series {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(e); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string][]series{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			l := labelsOf(m)
			s := series{reporter: l["reporter"], workload: l["destination_workload"], code: l["response_code"]}
			if h := m.GetHistogram(); h != nil {
				s.hist, s.value = h, h.GetSampleCountFloat()
			} else {
				s.value = m.GetCounter().GetValue()
			}
			out[mf.GetName()] = append(out[mf.GetName()], s)
		}
	}
	for _, l := range out {
		sort.Slice(l, func(i, j int) bool {
			a, b := l[i], l[j]
			if a.workload != b.workload {
				return a.workload < b.workload
			}
			if a.code != b.code {
				return a.code < b.code
			}
			return a.reporter < b.reporter
		})
	}
	return out
}

// histogramQuantile is Prometheus's histogram_quantile over one histogram's cumulative
// buckets (promql's bucketQuantile), so the distribution can be checked without a server.
func histogramQuantile(q float64, bounds, cum []float64, count float64) float64 {
	rank := q * count
	b := sort.Search(len(cum), func(i int) bool { return cum[i] >= rank })
	if b == len(cum) {
		return bounds[len(bounds)-1]
	}
	start, end, n := 0.0, bounds[b], cum[b]
	if b > 0 {
		start = bounds[b-1]
		n -= cum[b-1]
		rank -= cum[b-1]
	}
	return start + (end-start)*(rank/n)
}

func TestDistributionReadsBackTheP99(t *testing.T) {
	for _, tc := range []struct {
		p99  float64 // ms
		want float64
	}{
		{0, 0.495}, {0.3, 0.495}, // below the first bound: the histogram's resolution
		{0.5, 0.495}, {0.7, 0.7}, {1, 1}, {3, 3}, {40, 40}, {100, 100},
		{248, 248}, {249.5, 249.5}, {250, 250}, // r <= 0.99, r > 0.99, on the bound
		{300, 300}, {999, 999}, {1500, 1500}, {3_599_999, 3_599_999}, {3_600_000, 3_600_000},
	} {
		d := newDistribution(tc.p99)
		const count = 1e6
		cum := make([]float64, len(d.cumulative))
		for i, c := range d.cumulative {
			cum[i] = c * count
			if i > 0 && d.cumulative[i] < d.cumulative[i-1] {
				t.Errorf("p99 %v: cumulative shares decrease at bucket %v: %v", tc.p99, DurationBuckets[i], d.cumulative)
			}
		}
		got := histogramQuantile(0.99, DurationBuckets, cum, count)
		if math.Abs(got-tc.want) > 1e-3*math.Max(tc.want, 1) {
			t.Errorf("p99 %vms: histogram_quantile reads %v, want %v (shares %v)", tc.p99, got, tc.want, d.cumulative)
		}
		if d.meanMs < 0 || d.meanMs > math.Max(tc.p99, 0.5)*2 {
			t.Errorf("p99 %vms: implausible mean %v", tc.p99, d.meanMs)
		}
	}
}

func TestCountsFollowTheConfiguredRates(t *testing.T) {
	g := NewWithT(t)
	clock := newClock()
	e := New(WithClock(clock.now))
	primary := Workload{Namespace: "shop", Name: "web-primary", Service: "web"}
	canary := Workload{Namespace: "shop", Name: "web", Service: "web"}
	idle := Workload{Namespace: "shop", Name: "idle"}

	g.Expect(e.Set(primary, Traffic{RequestsPerSecond: 100, P99Latency: 40 * time.Millisecond})).To(Succeed())
	g.Expect(e.Set(canary, Traffic{RequestsPerSecond: 50, ErrorRatio: 0.1, P99Latency: 300 * time.Millisecond})).To(Succeed())
	g.Expect(e.Set(idle, Traffic{})).To(Succeed())
	g.Expect(gather(t, e)).To(BeEmpty(), "no series before the first request, as with Envoy")

	clock.step(10 * time.Second)
	got := gather(t, e)
	g.Expect(got[requestsTotalName]).To(Equal([]series{
		{reporter: "destination", workload: "web", code: "200", value: 450},
		{reporter: "source", workload: "web", code: "200", value: 450},
		{reporter: "destination", workload: "web", code: "503", value: 50},
		{reporter: "source", workload: "web", code: "503", value: 50},
		{reporter: "destination", workload: "web-primary", code: "200", value: 1000},
		{reporter: "source", workload: "web-primary", code: "200", value: 1000},
	}), "no series for the idle workload nor for the primary's errors")

	hists := got[durationName]
	g.Expect(hists).To(HaveLen(6))
	for _, h := range hists {
		counter := 0.0
		for _, c := range got[requestsTotalName] {
			if c.workload == h.workload && c.code == h.code && c.reporter == h.reporter {
				counter = c.value
			}
		}
		g.Expect(h.value).To(Equal(counter), "histogram count equals the counter")
		bounds, cum := []float64{}, []float64{}
		for _, b := range h.hist.GetBucket() {
			bounds = append(bounds, b.GetUpperBound())
			cum = append(cum, b.GetCumulativeCountFloat())
		}
		g.Expect(bounds).To(Equal(DurationBuckets))
		want := map[string]float64{"web": 300, "web-primary": 40}[h.workload]
		g.Expect(histogramQuantile(0.99, bounds, cum, h.value)).To(BeNumerically("~", want, want*1e-6),
			"p99 of %s/%s", h.workload, h.code)
	}
}

func TestChangesApplyFromThenOn(t *testing.T) {
	g := NewWithT(t)
	clock := newClock()
	e := New(WithClock(clock.now))
	w := Workload{Namespace: "shop", Name: "web"}
	count := func(code string) float64 {
		for _, s := range gather(t, e)[requestsTotalName] {
			if s.reporter == "destination" && s.code == code {
				return s.value
			}
		}
		return -1
	}

	e.MustSet(w, Traffic{RequestsPerSecond: 100})
	clock.step(10 * time.Second)
	g.Expect(count("200")).To(Equal(1000.0))

	e.MustSet(w, Traffic{}) // traffic stops: the series stays, flat
	clock.step(5 * time.Second)
	g.Expect(count("200")).To(Equal(1000.0))

	e.MustSet(w, Traffic{RequestsPerSecond: 50, ErrorRatio: 1})
	clock.step(10 * time.Second)
	g.Expect(count("200")).To(Equal(1000.0))
	g.Expect(count("503")).To(Equal(500.0))

	tr, ok := e.Traffic(w)
	g.Expect(ok).To(BeTrue())
	g.Expect(tr).To(Equal(Traffic{RequestsPerSecond: 50, ErrorRatio: 1}))
}

func TestSetRejectsNonsense(t *testing.T) {
	g := NewWithT(t)
	e := New()
	w := Workload{Namespace: "shop", Name: "web"}
	g.Expect(e.Set(Workload{Name: "web"}, Traffic{})).To(MatchError(ContainSubstring("both names are required")))
	g.Expect(e.Set(w, Traffic{RequestsPerSecond: -1})).To(MatchError(ContainSubstring("requests per second -1")))
	g.Expect(e.Set(w, Traffic{RequestsPerSecond: math.NaN()})).To(MatchError(ContainSubstring("requests per second NaN")))
	g.Expect(e.Set(w, Traffic{ErrorRatio: 1.5})).To(MatchError(ContainSubstring("error ratio 1.5")))
	g.Expect(e.Set(w, Traffic{P99Latency: 2 * time.Hour})).To(MatchError(ContainSubstring("p99 latency 2h0m0s")))
	_, ok := e.Traffic(w)
	g.Expect(ok).To(BeFalse(), "a rejected setting registers nothing")
}

func TestHandler(t *testing.T) {
	g := NewWithT(t)
	clock := newClock()
	e := New(WithClock(clock.now))
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()

	put := func(body string) (int, string) {
		req, err := http.NewRequest(http.MethodPut, srv.URL+"/traffic", strings.NewReader(body))
		g.Expect(err).NotTo(HaveOccurred())
		resp, err := http.DefaultClient.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	get := func(path string) string {
		resp, err := http.Get(srv.URL + path)
		g.Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}

	code, _ := put(`{"namespace":"shop","name":"web","service":"web","requestsPerSecond":10,"errorRatio":0.5,"p99Latency":"250ms"}`)
	g.Expect(code).To(Equal(http.StatusNoContent))
	clock.step(2 * time.Second)
	metrics := get("/metrics")
	g.Expect(metrics).To(ContainSubstring(`istio_requests_total{connection_security_policy="mutual_tls",destination_app="web",destination_canonical_revision="latest",destination_canonical_service="web",destination_cluster="Kubernetes",destination_principal="spiffe://cluster.local/ns/shop/sa/web",destination_service="web.shop.svc.cluster.local",destination_service_name="web",destination_service_namespace="shop",destination_version="latest",destination_workload="web",destination_workload_namespace="shop",grpc_response_status="",reporter="destination",request_protocol="http",response_code="503",response_flags="-",source_app="loadgen",source_canonical_revision="latest",source_canonical_service="loadgen",source_cluster="Kubernetes",source_principal="spiffe://cluster.local/ns/shop/sa/loadgen",source_version="unknown",source_workload="loadgen",source_workload_namespace="shop"} 10`))
	g.Expect(metrics).To(ContainSubstring(`istio_request_duration_milliseconds_bucket{`))
	g.Expect(get("/traffic")).To(MatchJSON(`[{"namespace":"shop","name":"web","service":"web","version":"latest","requestsPerSecond":10,"errorRatio":0.5,"p99Latency":"250ms"}]`))

	code, body := put(`{"namespace":"shop","name":"web","errorRatio":2}`)
	g.Expect(code).To(Equal(http.StatusBadRequest))
	g.Expect(body).To(ContainSubstring("error ratio 2: must be between 0 and 1"))
	code, body = put(`{"namespace":"shop","name":"web","p99Latency":"soon"}`)
	g.Expect(code).To(Equal(http.StatusBadRequest))
	g.Expect(body).To(ContainSubstring("p99Latency"))
	code, body = put(`{"namespace":"shop","name":"web","rps":3}`)
	g.Expect(code).To(Equal(http.StatusBadRequest))
	g.Expect(body).To(ContainSubstring(`unknown field "rps"`))
}
