package prom

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestBuiltinQueries(t *testing.T) {
	canary := Target{Namespace: "shop", Workload: "web"}
	const sel = `reporter="destination",destination_workload_namespace="shop",destination_workload="web"`
	for _, tc := range []struct {
		name    string
		build   func(Target, time.Duration) (string, error)
		target  Target
		window  time.Duration
		want    string
		wantErr string
	}{
		{
			name: "success rate", build: RequestSuccessRateQuery, target: canary, window: time.Minute,
			want: `(sum(rate(istio_requests_total{` + sel + `,response_code!~"5.."}[1m])) or vector(0))` +
				` / sum(rate(istio_requests_total{` + sel + `}[1m]))`,
		},
		{
			name: "p99 duration", build: RequestDurationP99Query, target: canary, window: 90 * time.Second,
			want: `histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{` + sel + `}[1m30s])))`,
		},
		{
			name: "request count", build: RequestCountQuery, target: canary, window: 30 * time.Second,
			want: `sum(increase(istio_requests_total{` + sel + `}[30s]))`,
		},
		{
			name: "label values are quoted as PromQL strings", build: RequestCountQuery,
			target: Target{Namespace: `a"b`, Workload: `c\d`}, window: time.Second,
			want: `sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="a\"b",destination_workload="c\\d"}[1s]))`,
		},
		{name: "no namespace", build: RequestCountQuery, target: Target{Workload: "web"}, window: time.Minute, wantErr: "query target: no namespace"},
		{name: "no workload", build: RequestSuccessRateQuery, target: Target{Namespace: "shop"}, window: time.Minute, wantErr: "query target: no workload"},
		{name: "no window", build: RequestDurationP99Query, target: canary, wantErr: "window 0s: PromQL takes a positive whole number of milliseconds"},
		{name: "sub-millisecond window", build: RequestDurationP99Query, target: canary, window: 1500 * time.Microsecond, wantErr: "window 1.5ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := tc.build(tc.target, tc.window)
			if tc.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

func TestDuration(t *testing.T) {
	g := NewWithT(t)
	for d, want := range map[time.Duration]string{
		time.Millisecond: "1ms", 500 * time.Millisecond: "500ms", 10 * time.Second: "10s",
		time.Minute: "1m", 61 * time.Second: "1m1s", 2 * time.Hour: "2h", 24 * time.Hour: "1d",
	} {
		got, err := Duration(d)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got).To(Equal(want), "%s", d)
	}
	_, err := Duration(-time.Second)
	g.Expect(err).To(HaveOccurred())
}
