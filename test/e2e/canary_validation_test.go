package e2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// canaryNamespace exists in every API server: admission needs nothing else.
const canaryNamespace = "default"

// newCanary is a valid Canary (explicit steps, both built-in metrics), changed by mutate.
func newCanary(name string, mutate func(*meshv1alpha1.CanarySpec)) *meshv1alpha1.Canary {
	c := &meshv1alpha1.Canary{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: canaryNamespace},
		Spec: meshv1alpha1.CanarySpec{
			TargetRef: meshv1alpha1.CanaryTargetRef{Name: "web"},
			Service:   meshv1alpha1.CanaryService{Port: 80},
			Analysis: meshv1alpha1.CanaryAnalysis{
				Steps: []int32{10, 25, 50, 75},
				Metrics: []meshv1alpha1.CanaryMetric{
					{Name: meshv1alpha1.MetricRequestSuccessRate, ThresholdRange: meshv1alpha1.ThresholdRange{Min: ptr.To("99")}},
					{Name: meshv1alpha1.MetricRequestDuration, ThresholdRange: meshv1alpha1.ThresholdRange{Max: ptr.To("500")}},
				},
				Prometheus: meshv1alpha1.PrometheusSource{Address: "http://prometheus.monitoring:9090"},
			},
		},
	}
	if mutate != nil {
		mutate(&c.Spec)
	}
	return c
}

func deleteCanary(name string) {
	Expect(client.IgnoreNotFound(k8s.Delete(ctx(), &meshv1alpha1.Canary{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: canaryNamespace}}))).To(Succeed())
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

var _ = Describe("Canary admission", func() {
	It("accepts a full spec and fills in the defaults", func() {
		c := newCanary("full", func(s *meshv1alpha1.CanarySpec) {
			s.Analysis.Steps = nil
			s.Analysis.StepWeight, s.Analysis.MaxWeight = ptr.To[int32](20), ptr.To[int32](50)
			s.Analysis.SettleTime = dur(0)
			s.Analysis.MinRequestCount = 100
			s.Analysis.Metrics = append(s.Analysis.Metrics, meshv1alpha1.CanaryMetric{
				Name: "error-budget", Query: `sum(rate(errors_total{app="web"}[1m]))`,
				ThresholdRange: meshv1alpha1.ThresholdRange{Min: ptr.To("-0.5"), Max: ptr.To("1.25")},
			})
			s.Analysis.Prometheus.CredentialsSecretRef = &meshv1alpha1.LocalSecretReference{Name: "prometheus-auth"}
			s.Service = meshv1alpha1.CanaryService{
				Port: 80, TargetPort: ptr.To(intstr.FromString("http-web")),
				Hosts:    []meshv1alpha1.Hostname{"web.example.com", "*.shop.example.com"},
				Gateways: []meshv1alpha1.GatewayName{"istio-ingress/public", "mesh"},
				Match: []meshv1alpha1.HTTPMatch{{
					URI:     &meshv1alpha1.StringMatch{Prefix: ptr.To("/api")},
					Headers: map[string]meshv1alpha1.StringMatch{"x-canary": {Exact: ptr.To("always")}},
				}},
				Timeout: dur(15 * time.Second),
				Retries: &meshv1alpha1.HTTPRetry{Attempts: 3, PerTryTimeout: dur(5 * time.Second), RetryOn: "5xx,connect-failure"},
			}
			s.Promotion = meshv1alpha1.PromotionGated
			s.PromoteToken = "2026-03-01 approved by ops"
		})
		Expect(k8s.Create(ctx(), c)).To(Succeed())
		DeferCleanup(deleteCanary, c.Name)

		got := &meshv1alpha1.Canary{}
		Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(c), got)).To(Succeed())
		a := got.Spec.Analysis
		Expect(a.Interval).To(Equal(dur(time.Minute)))
		Expect(a.SettleTime).To(Equal(dur(0)))
		Expect(a.ChecksPerStep).To(BeEquivalentTo(1))
		Expect(a.FailureThreshold).To(BeEquivalentTo(1))
		Expect(a.NoData).To(Equal(&meshv1alpha1.NoDataPolicy{Limit: 5, Action: meshv1alpha1.NoDataPause}))
		Expect(got.Spec.Service.PortName).To(Equal("http"))
		Expect(got.Spec.Promotion).To(Equal(meshv1alpha1.PromotionGated))

		minimal := newCanary("minimal", nil)
		Expect(k8s.Create(ctx(), minimal)).To(Succeed())
		DeferCleanup(deleteCanary, minimal.Name)
		Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(minimal), got)).To(Succeed())
		Expect(got.Spec.Promotion).To(Equal(meshv1alpha1.PromotionAutomatic))
		Expect(got.Spec.Analysis.SettleTime).To(BeNil(), "unset: one interval")
	})

	DescribeTable("rejects invalid specs with a message the user can act on",
		func(mutate func(*meshv1alpha1.CanarySpec), message string) {
			err := k8s.Create(ctx(), newCanary("invalid", mutate))
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("weights not increasing", func(s *meshv1alpha1.CanarySpec) { s.Analysis.Steps = []int32{10, 50, 25} },
			"analysis.steps must be strictly increasing percentages, for example [10, 25, 50, 75]"),
		Entry("a weight repeated", func(s *meshv1alpha1.CanarySpec) { s.Analysis.Steps = []int32{10, 10, 50} },
			"analysis.steps must be strictly increasing percentages"),
		Entry("a weight above 100", func(s *meshv1alpha1.CanarySpec) { s.Analysis.Steps = []int32{50, 101} },
			"spec.analysis.steps[1]: Invalid value: 101: spec.analysis.steps[1] in body should be less than or equal to 100"),
		Entry("a weight of 0", func(s *meshv1alpha1.CanarySpec) { s.Analysis.Steps = []int32{0, 50} },
			"spec.analysis.steps[0]: Invalid value: 0: spec.analysis.steps[0] in body should be greater than or equal to 1"),
		Entry("too many steps", func(s *meshv1alpha1.CanarySpec) {
			s.Analysis.Steps = []int32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21}
		}, "spec.analysis.steps: Too many: 21: must have at most 20 items"),
		Entry("steps and stepWeight together", func(s *meshv1alpha1.CanarySpec) {
			s.Analysis.StepWeight, s.Analysis.MaxWeight = ptr.To[int32](10), ptr.To[int32](50)
		}, "analysis must set either steps (the list of weights) or stepWeight with maxWeight, not both and not neither"),
		Entry("no weights at all", func(s *meshv1alpha1.CanarySpec) { s.Analysis.Steps = nil },
			"analysis must set either steps (the list of weights) or stepWeight with maxWeight, not both and not neither"),
		Entry("stepWeight without maxWeight", func(s *meshv1alpha1.CanarySpec) {
			s.Analysis.Steps, s.Analysis.StepWeight = nil, ptr.To[int32](10)
		}, "analysis.stepWeight and analysis.maxWeight must be set together"),
		Entry("maxWeight below stepWeight", func(s *meshv1alpha1.CanarySpec) {
			s.Analysis.Steps, s.Analysis.StepWeight, s.Analysis.MaxWeight = nil, ptr.To[int32](30), ptr.To[int32](20)
		}, "analysis.maxWeight must be at least analysis.stepWeight"),
		Entry("maxWeight above 100", func(s *meshv1alpha1.CanarySpec) {
			s.Analysis.Steps, s.Analysis.StepWeight, s.Analysis.MaxWeight = nil, ptr.To[int32](30), ptr.To[int32](120)
		}, "spec.analysis.maxWeight: Invalid value: 120: spec.analysis.maxWeight in body should be less than or equal to 100"),
		Entry("an interval below the floor", func(s *meshv1alpha1.CanarySpec) { s.Analysis.Interval = dur(5 * time.Second) },
			"analysis.interval must be at least 10s and at most 1h"),
		Entry("an interval above an hour", func(s *meshv1alpha1.CanarySpec) { s.Analysis.Interval = dur(2 * time.Hour) },
			"analysis.interval must be at least 10s and at most 1h"),
		Entry("a settle time above an hour", func(s *meshv1alpha1.CanarySpec) { s.Analysis.SettleTime = dur(90 * time.Minute) },
			"analysis.settleTime must be at most 1h"),
		Entry("zero checks per step", func(s *meshv1alpha1.CanarySpec) { s.Analysis.ChecksPerStep = -1 },
			"spec.analysis.checksPerStep: Invalid value: -1"),
		Entry("a custom metric without a query", func(s *meshv1alpha1.CanarySpec) {
			s.Analysis.Metrics[0].Name = "error-budget"
		}, "metric error-budget is not a built-in metric (request-success-rate, request-duration): give it a PromQL query"),
		Entry("a built-in metric with a query", func(s *meshv1alpha1.CanarySpec) { s.Analysis.Metrics[1].Query = "up" },
			"the built-in metrics request-success-rate and request-duration take no query; give a custom metric another name"),
		Entry("a metric listed twice", func(s *meshv1alpha1.CanarySpec) { s.Analysis.Metrics[1].Name = s.Analysis.Metrics[0].Name },
			`spec.analysis.metrics[1]: Duplicate value: {"name":"request-success-rate"}`),
		Entry("no metrics", func(s *meshv1alpha1.CanarySpec) { s.Analysis.Metrics = []meshv1alpha1.CanaryMetric{} },
			"spec.analysis.metrics: Invalid value: 0: spec.analysis.metrics in body should have at least 1 items"),
		Entry("a threshold range without bounds", func(s *meshv1alpha1.CanarySpec) {
			s.Analysis.Metrics[0].ThresholdRange = meshv1alpha1.ThresholdRange{}
		}, "thresholdRange must set min, max or both"),
		Entry("a threshold minimum above the maximum", func(s *meshv1alpha1.CanarySpec) {
			s.Analysis.Metrics[0].ThresholdRange = meshv1alpha1.ThresholdRange{Min: ptr.To("99.5"), Max: ptr.To("99")}
		}, "thresholdRange.min must not exceed thresholdRange.max"),
		Entry("a threshold that is not a number", func(s *meshv1alpha1.CanarySpec) {
			s.Analysis.Metrics[0].ThresholdRange.Min = ptr.To("99%")
		}, "spec.analysis.metrics[0].thresholdRange.min: Invalid value"),
		Entry("a Prometheus address that is not an http(s) URL", func(s *meshv1alpha1.CanarySpec) {
			s.Analysis.Prometheus.Address = "prometheus:9090"
		}, "spec.analysis.prometheus.address: Invalid value"),
		Entry("an unknown no-data action", func(s *meshv1alpha1.CanarySpec) {
			s.Analysis.NoData = &meshv1alpha1.NoDataPolicy{Action: "Ignore"}
		}, `spec.analysis.noData.action: Unsupported value: "Ignore": supported values: "Pause", "Rollback", "Pass"`),
		Entry("an unknown promotion mode", func(s *meshv1alpha1.CanarySpec) { s.Promotion = "Manual" },
			`spec.promotion: Unsupported value: "Manual": supported values: "Automatic", "Gated"`),
		Entry("a token with a control character", func(s *meshv1alpha1.CanarySpec) { s.RetryToken = "again\n" },
			"spec.retryToken: Invalid value"),
		Entry("a string match with two ways", func(s *meshv1alpha1.CanarySpec) {
			s.Service.Match = []meshv1alpha1.HTTPMatch{{URI: &meshv1alpha1.StringMatch{Exact: ptr.To("/"), Prefix: ptr.To("/")}}}
		}, "a string match must set exactly one of exact, prefix or regex"),
		Entry("an uppercase header name", func(s *meshv1alpha1.CanarySpec) {
			s.Service.Match = []meshv1alpha1.HTTPMatch{{Headers: map[string]meshv1alpha1.StringMatch{"X-Canary": {Exact: ptr.To("1")}}}}
		}, "match.headers keys must be lowercase HTTP header names"),
		Entry("a target port out of range", func(s *meshv1alpha1.CanarySpec) { s.Service.TargetPort = ptr.To(intstr.FromInt32(70000)) },
			"targetPort must be a port number from 1 to 65535 or a port name"),
		Entry("a service port of 0", func(s *meshv1alpha1.CanarySpec) { s.Service.Port = 0 },
			"spec.service.port: Invalid value: 0: spec.service.port in body should be greater than or equal to 1"),
		Entry("a host that is not a DNS name", func(s *meshv1alpha1.CanarySpec) { s.Service.Hosts = []meshv1alpha1.Hostname{"web_shop"} },
			"spec.service.hosts[0]: Invalid value"),
		Entry("a route timeout of 0", func(s *meshv1alpha1.CanarySpec) { s.Service.Timeout = dur(0) },
			"service.timeout must be more than 0s and at most 1h"),
		Entry("a target that is not a Deployment name", func(s *meshv1alpha1.CanarySpec) { s.TargetRef.Name = "Web" },
			"spec.targetRef.name: Invalid value"),
	)

	It("keeps targetRef immutable", func() {
		c := newCanary("immutable", nil)
		Expect(k8s.Create(ctx(), c)).To(Succeed())
		DeferCleanup(deleteCanary, c.Name)
		// A patch without a resourceVersion: the Canary controller writes this Canary too.
		orig := c.DeepCopy()
		c.Spec.TargetRef.Name = "api"
		err := k8s.Patch(ctx(), c, client.MergeFrom(orig))
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("targetRef is immutable; create another Canary for another Deployment"))
	})

	It("stores a status the state machine writes", func() {
		c := newCanary("with-status", nil)
		Expect(k8s.Create(ctx(), c)).To(Succeed())
		DeferCleanup(deleteCanary, c.Name)
		now := metav1.NewTime(time.Now().Truncate(time.Second))
		// The Canary controller writes this Canary too (its target does not exist): patch
		// without a resourceVersion, so the write does not race the controller's.
		orig := c.DeepCopy()
		c.Status = meshv1alpha1.CanaryStatus{
			Phase: meshv1alpha1.CanaryProgressing, Reason: meshv1alpha1.ReasonStepAdvanced, StableRevision: "5d8f7c", CanaryRevision: "7b9c4d",
			StepIndex: 1, TargetWeight: 25, AppliedWeight: ptr.To[int32](25), StepStartTime: &now, SettleStartTime: &now, NextCheckTime: &now,
			Analysis: meshv1alpha1.CanaryAnalysisStatus{Passed: 1, NoData: 1, ConsecutiveNoData: 0},
			Checks: []meshv1alpha1.CanaryCheck{{Time: now, Revision: "7b9c4d", StepIndex: 1, Weight: 25, Outcome: meshv1alpha1.CheckNoData,
				Message: "no data for request-duration", Metrics: []meshv1alpha1.CanaryMetricResult{
					{Name: meshv1alpha1.MetricRequestSuccessRate, Value: "99.95", Outcome: meshv1alpha1.CheckPassed},
					{Name: meshv1alpha1.MetricRequestDuration, Outcome: meshv1alpha1.CheckNoData, Message: "no data"},
				}}},
			Conditions: []metav1.Condition{{Type: meshv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: meshv1alpha1.ReasonStepAdvanced, LastTransitionTime: now}},
		}
		Expect(k8s.Status().Patch(ctx(), c, client.MergeFrom(orig))).To(Succeed())
		got := &meshv1alpha1.Canary{}
		Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(c), got)).To(Succeed())
		Expect(got.Status.Checks).To(HaveLen(1))
		Expect(got.Status.NextCheckTime.Equal(&now)).To(BeTrue(), "whole seconds survive the round trip")
	})
})
