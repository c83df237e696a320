package canary

import (
	"errors"
	"math"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

func TestEvaluate(t *testing.T) {
	const rate, p99, custom = meshv1alpha1.MetricRequestSuccessRate, meshv1alpha1.MetricRequestDuration, "queue-depth"
	analysis := func(minRequests int32) *meshv1alpha1.CanaryAnalysis {
		return &meshv1alpha1.CanaryAnalysis{MinRequestCount: minRequests, Metrics: []meshv1alpha1.CanaryMetric{
			{Name: rate, ThresholdRange: meshv1alpha1.ThresholdRange{Min: ptr.To("99")}},
			{Name: p99, ThresholdRange: meshv1alpha1.ThresholdRange{Max: ptr.To("500")}},
			{Name: custom, Query: "sum(queue)", ThresholdRange: meshv1alpha1.ThresholdRange{Min: ptr.To("-1.5"), Max: ptr.To("10")}},
		}}
	}
	check := func(requests Result, r, l, c Result) *Check {
		return &Check{Requests: requests, Metrics: map[string]Result{rate: r, p99: l, custom: c}}
	}
	down := errors.New("dial tcp: connection refused")
	cases := []struct {
		name     string
		min      int32
		check    *Check
		outcome  meshv1alpha1.CheckOutcome
		summary  string
		requests string
		values   []string
	}{
		{name: "within every threshold, bounds included", check: check(Measured(1200.4), Measured(99), Measured(500), Measured(-1.5)),
			outcome: meshv1alpha1.CheckPassed, requests: "1200", values: []string{"99", "500", "-1.5"}},
		{name: "below a minimum", check: check(Measured(10), Measured(98.9999), Measured(20), Measured(0)),
			outcome: meshv1alpha1.CheckFailed, summary: "request-success-rate 98.9999 is below the minimum 99", values: []string{"98.9999", "20", "0"}},
		{name: "above a maximum", check: check(Measured(10), Measured(100), Measured(731.25), Measured(11)),
			outcome: meshv1alpha1.CheckFailed, summary: "request-duration 731.25 is above the maximum 500; queue-depth 11 is above the maximum 10"},
		{name: "latency beyond the last bucket is a value, and fails", check: check(Measured(10), Measured(100), Measured(math.Inf(1)), Measured(1)),
			outcome: meshv1alpha1.CheckFailed, summary: "request-duration +Inf is above the maximum 500"},
		{name: "NaN is no data", check: check(Measured(0), Measured(math.NaN()), Measured(20), Measured(1)),
			outcome: meshv1alpha1.CheckNoData, summary: "no data for request-success-rate", values: []string{"", "20", "1"}},
		{name: "an empty result is no data", check: check(NoData(), Measured(100), NoData(), Measured(1)),
			outcome: meshv1alpha1.CheckNoData, summary: "no data for request-duration"},
		{name: "a metric missing from the check is no data", check: &Check{Metrics: map[string]Result{rate: Measured(100), p99: Measured(1)}},
			outcome: meshv1alpha1.CheckNoData, summary: "no data for queue-depth"},
		{name: "a query error is an error, not a failure", check: check(Measured(10), QueryFailed(down), Measured(20), NoData()),
			outcome: meshv1alpha1.CheckError, summary: "request-success-rate query failed: dial tcp: connection refused"},
		{name: "a failure wins over an error: it is evidence", check: check(Measured(10), QueryFailed(down), Measured(900), Measured(1)),
			outcome: meshv1alpha1.CheckFailed, summary: "request-duration 900 is above the maximum 500"},
		{name: "too few requests is no data, even with failing metrics", min: 100, check: check(Measured(42), Measured(50), Measured(20), Measured(1)),
			outcome: meshv1alpha1.CheckNoData, summary: "the canary served 42 requests, fewer than minRequestCount 100", requests: "42"},
		{name: "uncounted requests are no data", min: 100, check: check(NoData(), Measured(100), Measured(20), Measured(1)),
			outcome: meshv1alpha1.CheckNoData, summary: "the canary's requests could not be counted (minRequestCount 100)"},
		{name: "a failed request count is an error", min: 100, check: check(QueryFailed(down), Measured(50), Measured(20), Measured(1)),
			outcome: meshv1alpha1.CheckError, summary: "counting the canary's requests failed: dial tcp: connection refused"},
		{name: "enough requests: the metrics judge", min: 100, check: check(Measured(100), Measured(50), Measured(20), Measured(1)),
			outcome: meshv1alpha1.CheckFailed, summary: "request-success-rate 50 is below the minimum 99"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			v := evaluate(analysis(tc.min), tc.check)
			g.Expect(v.outcome).To(Equal(tc.outcome))
			g.Expect(v.summary).To(Equal(tc.summary))
			if tc.requests != "" {
				g.Expect(v.requests).To(Equal(tc.requests))
			}
			g.Expect(v.metrics).To(HaveLen(3))
			for i, m := range v.metrics {
				g.Expect(m.Name).To(Equal(analysis(0).Metrics[i].Name), "metrics in spec order")
				if tc.values != nil {
					g.Expect(m.Value).To(Equal(tc.values[i]))
				}
				g.Expect(len(m.Message)).To(BeNumerically("<=", 256))
			}
		})
	}
}

func TestFormatValue(t *testing.T) {
	g := NewWithT(t)
	for v, want := range map[float64]string{
		99.95: "99.95", 99.99951: "99.99951", 0.0004: "0.0004", 100 * (1 - 3.0/7): "57.142857142857146", -2: "-2", 0: "0",
		math.Inf(1): "+Inf", 3e15: "3e+15", 1e-9: "1e-09", -1.2345678901234567e-100: "-1.2345678901234567e-100",
	} {
		g.Expect(formatValue(v)).To(Equal(want), "%v", v)
		g.Expect(len(formatValue(v))).To(BeNumerically("<=", 32), "fits status.checks[].metrics[].value")
	}
	g.Expect(truncate("héllo", 2)).To(Equal("h"), "never half a rune")
}
