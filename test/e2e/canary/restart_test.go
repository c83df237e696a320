package canary

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

var _ = Describe("An operator restarted mid-analysis", Serial, func() {
	It("resumes exactly: no extra step, no repeated check, no skipped check", func(sctx SpecContext) {
		ns := newNamespace("restart")
		setTraffic(ns, "web", healthy)
		applyTarget(ns, "web", 1, "v1")
		c := newCanary(ns, "web", func(s *meshv1alpha1.CanarySpec) { s.Analysis.ChecksPerStep = 2 })
		waitStable(c, meshv1alpha1.CanaryStable)

		release(ns, "web", "v2")
		var before *meshv1alpha1.Canary
		Eventually(func(g Gomega) {
			before = getCanary(g, c)
			g.Expect(before.Status.Checks).To(HaveLen(1))
		}, rollout, poll).Should(Succeed())
		Expect(before.Status.Checks[0].Outcome).To(Equal(meshv1alpha1.CheckPassed))

		By("the operator stops after the first of two checks, and stays down past the second's due time")
		Expect(cluster.StopOperator()).To(Succeed())
		due := before.Status.NextCheckTime.Time
		Expect(due.Sub(before.Status.Checks[0].Time.Time)).To(Equal(interval))
		// Nobody else writes the Canary: its status stays as the operator left it while the
		// second check falls due.
		Consistently(func(g Gomega) {
			g.Expect(getCanary(g, c).ResourceVersion).To(Equal(before.ResourceVersion))
		}, time.Until(due)+2*time.Second, 500*time.Millisecond).Should(Succeed())

		By("a new operator, knowing nothing but the cluster, takes over")
		restarted := time.Now()
		Expect(cluster.StartOperator(sctx)).To(Succeed())
		got := waitStable(c, meshv1alpha1.CanarySucceeded)

		checks := got.Status.Checks
		Expect(checks).To(HaveLen(2), "one check per due time: none repeated, none added")
		Expect(checks[0]).To(Equal(before.Status.Checks[0]), "the first check is the one recorded before the restart")
		Expect(checks[1].StepIndex).To(BeZero())
		Expect(checks[1].Outcome).To(Equal(meshv1alpha1.CheckPassed))
		Expect(checks[1].Time.Time).To(BeTemporally(">=", due), "not early")
		Expect(checks[1].Time.Time).To(BeTemporally("<", restarted.Add(5*time.Second)),
			"the overdue check runs as the operator comes back, not an interval later")
		Expect(got.Status.StepIndex).To(BeZero(), "no extra step")
		reasons := eventReasons(Default, got)
		Expect(count(reasons, meshv1alpha1.ReasonPromoting)).To(Equal(1))
		Expect(count(reasons, meshv1alpha1.ReasonNewRevision)).To(Equal(1))
	})
})

func count(items []string, item string) int {
	n := 0
	for _, i := range items {
		if i == item {
			n++
		}
	}
	return n
}
