package canary

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	objects "github.com/meshplane/meshplane/internal/render/canary"
)

var _ = Describe("A Canary", func() {
	It("promotes a healthy canary automatically, then makes no writes", func() {
		ns := newNamespace("healthy")
		setTraffic(ns, "web", healthy)
		applyTarget(ns, "web", 2, "v1")
		c := newCanary(ns, "web", nil)

		By("initializing: the primary runs the target's revision and serves all traffic; the target is scaled to zero")
		got := waitStable(c, meshv1alpha1.CanaryStable)
		v1 := revisionOf(Default, ns, "web")
		Expect(got.Status.StableRevision).To(Equal(v1))
		primary := deployment(Default, ns, "web-primary")
		Expect(primary.Spec.Replicas).To(Equal(ptr.To[int32](2)), "the primary mirrors the user's replicas")
		Expect(primary.Annotations).To(HaveKeyWithValue(objects.AnnotationRevision, v1))
		Expect(primary.Spec.Template.Labels).To(HaveKeyWithValue("app", "web-primary"))
		Expect(objects.DeploymentReady(primary)).To(BeTrue())
		apex := &corev1.Service{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "web"}, apex)).To(Succeed())
		Expect(apex.Spec.Selector).To(Equal(map[string]string{"app": "web-primary"}))
		Expect(vsWeights(Default, ns, "web")).To(Equal([]int32{100, 0}))

		By("a new revision: scaled up, checked at 50%, promoted, scaled down")
		release(ns, "web", "v2")
		v2 := revisionOf(Default, ns, "web")
		got = waitStable(c, meshv1alpha1.CanarySucceeded)
		Expect(got.Status.StableRevision).To(Equal(v2))
		Expect(got.Status.CanaryRevision).To(Equal(v2))
		Expect(got.Status.Checks).To(HaveLen(1))
		check := got.Status.Checks[0]
		Expect(check.Outcome).To(Equal(meshv1alpha1.CheckPassed), check.Message)
		Expect(check.Weight).To(BeEquivalentTo(50))
		Expect(check.Revision).To(Equal(v2))
		Expect(check.Requests).NotTo(BeEmpty(), "the request count is measured at every check")
		Expect(check.Metrics).To(HaveLen(2))
		Expect(check.Metrics[0].Value).To(Equal("100"))
		primary = deployment(Default, ns, "web-primary")
		Expect(primary.Annotations).To(HaveKeyWithValue(objects.AnnotationRevision, v2))
		Expect(primary.Spec.Template.Annotations).To(HaveKeyWithValue("example.com/version", "v2"))
		Expect(eventReasons(Default, got)).To(ContainElements(
			meshv1alpha1.ReasonInitializing, meshv1alpha1.ReasonInitialized, meshv1alpha1.ReasonNewRevision,
			meshv1alpha1.ReasonPromoting, meshv1alpha1.ReasonPromoted, meshv1alpha1.ReasonSucceeded))

		By("steady state: no writes, through resyncs (every " + syncPeriod.String() + ")")
		expectNoWrites(ns, 3*syncPeriod)
	})
})

var _ = Describe("A Canary's analysis", func() {
	It("rolls back a canary answering 5xx, and retries the same revision with a retryToken", func() {
		ns := newNamespace("failing")
		setTraffic(ns, "web", healthy)
		applyTarget(ns, "web", 2, "v1")
		c := newCanary(ns, "web", nil)
		v1 := waitStable(c, meshv1alpha1.CanaryStable).Status.StableRevision

		By("a revision answering half its requests with 503")
		setTraffic(ns, "web", failing)
		waitSuccessRate(ns, "web", 0, 90)
		release(ns, "web", "v2")
		v2 := revisionOf(Default, ns, "web")
		got := waitStable(c, meshv1alpha1.CanaryFailed)
		Expect(got.Status.Reason).To(Equal(meshv1alpha1.ReasonAnalysisFailed))
		Expect(got.Status.CanaryRevision).To(Equal(v2))
		Expect(got.Status.StableRevision).To(Equal(v1))
		Expect(got.Status.Checks).To(HaveLen(1))
		Expect(got.Status.Checks[0].Outcome).To(Equal(meshv1alpha1.CheckFailed))
		Expect(got.Status.Checks[0].Message).To(ContainSubstring("request-success-rate"))
		Expect(condition(got, meshv1alpha1.ConditionStalled).Status).To(BeEquivalentTo("True"))
		Expect(condition(got, meshv1alpha1.ConditionStalled).Message).To(ContainSubstring("Set a new spec.retryToken"))
		Expect(deployment(Default, ns, "web-primary").Annotations).To(HaveKeyWithValue(objects.AnnotationRevision, v1),
			"the failed revision never reached the primary")
		Expect(eventReasons(Default, got)).To(ContainElements(meshv1alpha1.ReasonCheckFailed, meshv1alpha1.ReasonAnalysisFailed, meshv1alpha1.ReasonRolledBack))
		By("failed is a steady state too: the primary keeps the template it had, without writes")
		expectNoWrites(ns, 2*syncPeriod)

		By("the cause fixed outside the pod template (say, a dependency), a retryToken rolls the same revision out again")
		setTraffic(ns, "web", healthy)
		waitSuccessRate(ns, "web", 100, 100)
		updateCanary(c, func(s *meshv1alpha1.CanarySpec) { s.RetryToken = "after-fixing-the-db" })
		got = waitStable(c, meshv1alpha1.CanarySucceeded)
		Expect(got.Status.StableRevision).To(Equal(v2))
		Expect(got.Status.LastRetryToken).To(Equal("after-fixing-the-db"))
		Expect(got.Status.Checks).To(HaveLen(2))
		Expect(got.Status.Checks[1].Outcome).To(Equal(meshv1alpha1.CheckPassed))
		Expect(got.Status.Checks[1].Revision).To(Equal(v2))
		Expect(eventReasons(Default, got)).To(ContainElement(meshv1alpha1.ReasonRetried))
	})

	It("holds the step while there is no traffic, pauses per the noData policy, and resumes with a retryToken", func() {
		ns := newNamespace("quiet")
		applyTarget(ns, "web", 1, "v1")
		c := newCanary(ns, "web", func(s *meshv1alpha1.CanarySpec) {
			s.Analysis.NoData = &meshv1alpha1.NoDataPolicy{Limit: 2, Action: meshv1alpha1.NoDataPause}
		})
		waitStable(c, meshv1alpha1.CanaryStable)

		By("a revision nobody calls: the first check finds no data and holds the step")
		release(ns, "web", "v2")
		var got *meshv1alpha1.Canary
		Eventually(func(g Gomega) {
			got = getCanary(g, c)
			g.Expect(got.Status.Checks).To(HaveLen(1))
		}, rollout, poll).Should(Succeed())
		Expect(got.Status.Phase).To(Equal(meshv1alpha1.CanaryProgressing))
		Expect(got.Status.Checks[0].Outcome).To(Equal(meshv1alpha1.CheckNoData))
		Expect(got.Status.Analysis.ConsecutiveNoData).To(BeEquivalentTo(1))
		Expect(got.Status.Analysis.Failed).To(BeZero(), "no data is not a failure")
		Expect(vsWeights(Default, ns, "web")).To(Equal([]int32{50, 50}))

		By("the second check without data pauses the canary at its weight")
		got = waitPhase(c, meshv1alpha1.CanaryPaused, interval+rollout)
		Expect(got.Status.Reason).To(Equal(meshv1alpha1.ReasonNoData))
		Expect(got.Status.Checks).To(HaveLen(2))
		Expect(got.Status.TargetWeight).To(BeEquivalentTo(50))
		Expect(vsWeights(Default, ns, "web")).To(Equal([]int32{50, 50}))
		Expect(condition(got, meshv1alpha1.ConditionStalled).Reason).To(Equal(meshv1alpha1.ReasonNoData))

		By("traffic arrives; a retryToken resumes the step, which passes")
		setTraffic(ns, "web", healthy)
		waitSuccessRate(ns, "web", 100, 100)
		updateCanary(c, func(s *meshv1alpha1.CanarySpec) { s.RetryToken = "traffic-is-back" })
		got = waitStable(c, meshv1alpha1.CanarySucceeded)
		Expect(got.Status.Checks).To(HaveLen(3))
		Expect(got.Status.Checks[2].Outcome).To(Equal(meshv1alpha1.CheckPassed))
	})

	It("waits for the promoteToken of a gated canary, and corrects a hand-edited weight meanwhile", func() {
		ns := newNamespace("gated")
		setTraffic(ns, "web", healthy)
		applyTarget(ns, "web", 1, "v1")
		c := newCanary(ns, "web", func(s *meshv1alpha1.CanarySpec) { s.Promotion = meshv1alpha1.PromotionGated })
		waitStable(c, meshv1alpha1.CanaryStable)

		release(ns, "web", "v2")
		got := waitPhase(c, meshv1alpha1.CanaryAwaitingPromotion, rollout)
		Expect(got.Status.Checks).To(HaveLen(1))
		Expect(vsWeights(Default, ns, "web")).To(Equal([]int32{50, 50}))

		By("someone edits the VirtualService's weights by hand")
		settled := got.Status.SettleStartTime
		Eventually(func(g Gomega) {
			vs := virtualService(g, ns, "web")
			vs.Spec.Http[0].Route[0].Weight, vs.Spec.Http[0].Route[1].Weight = 90, 10
			g.Expect(k8s.Update(ctx(), vs)).To(Succeed())
		}, 10*time.Second, poll).Should(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(vsWeights(g, ns, "web")).To(Equal([]int32{50, 50}))
			got = getCanary(g, c)
			g.Expect(got.Status.AppliedWeight).To(Equal(ptr.To[int32](50)))
			g.Expect(got.Status.SettleStartTime).NotTo(BeNil())
			g.Expect(got.Status.SettleStartTime.After(settled.Time)).To(BeTrue(), "measuring waits for the weight to settle again")
			g.Expect(eventReasons(g, got)).To(ContainElement(meshv1alpha1.ReasonWeightDrift))
		}, rollout, poll).Should(Succeed())

		By("still awaiting promotion, and still checked, until the token comes")
		Eventually(func(g Gomega) {
			got = getCanary(g, c)
			g.Expect(got.Status.Checks).To(HaveLen(2))
		}, interval+rollout, poll).Should(Succeed())
		Expect(got.Status.Phase).To(Equal(meshv1alpha1.CanaryAwaitingPromotion))
		Expect(got.Status.Checks[1].Outcome).To(Equal(meshv1alpha1.CheckPassed))
		updateCanary(c, func(s *meshv1alpha1.CanarySpec) { s.PromoteToken = "CHG-1234" })
		got = waitStable(c, meshv1alpha1.CanarySucceeded)
		Expect(got.Status.LastPromoteToken).To(Equal("CHG-1234"))
		Expect(got.Status.StableRevision).To(Equal(revisionOf(Default, ns, "web")))
	})

	It("restarts the analysis from the first step when a new revision arrives mid-rollout", func() {
		ns := newNamespace("superseded")
		setTraffic(ns, "web", healthy)
		applyTarget(ns, "web", 1, "v1")
		c := newCanary(ns, "web", func(s *meshv1alpha1.CanarySpec) {
			s.Analysis.Steps = []int32{20, 60}
			// Long enough to catch the second step before its check.
			s.Analysis.SettleTime = &metav1.Duration{Duration: 5 * time.Second}
		})
		waitStable(c, meshv1alpha1.CanaryStable)

		release(ns, "web", "v2")
		v2 := revisionOf(Default, ns, "web")
		Eventually(func(g Gomega) {
			got := getCanary(g, c)
			g.Expect(got.Status.StepIndex).To(BeEquivalentTo(1))
			g.Expect(got.Status.AppliedWeight).To(Equal(ptr.To[int32](60)))
		}, rollout, poll).Should(Succeed())

		By("v3 replaces v2 at 60%: traffic steps back to 20% and the analysis restarts there")
		release(ns, "web", "v3")
		v3 := revisionOf(Default, ns, "web")
		got := waitStable(c, meshv1alpha1.CanarySucceeded)
		Expect(got.Status.StableRevision).To(Equal(v3))
		var seen []string
		for _, ch := range got.Status.Checks {
			seen = append(seen, fmt.Sprintf("%s@%d%%", map[string]string{v2: "v2", v3: "v3"}[ch.Revision], ch.Weight))
			Expect(ch.Outcome).To(Equal(meshv1alpha1.CheckPassed))
		}
		Expect(seen).To(Equal([]string{"v2@20%", "v3@20%", "v3@60%"}), "v3 is judged from the first step")
		Expect(eventReasons(Default, got)).To(ContainElements(meshv1alpha1.ReasonSuperseded, meshv1alpha1.ReasonRestarted))
	})
})
