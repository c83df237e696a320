package canary

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

func TestHealthyCanaryIsPromotedAutomatically(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, newSpec())
	w.converge()
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryStable))
	g.Expect(w.targetScaledUp).To(BeFalse(), "the target is scaled down once the primary serves everything")

	w.newRevision(revA)
	w.converge()
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryProgressing))
	for range 4 * 2 { // four steps, two checks each
		w.untilDue()
	}
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanarySucceeded))
	g.Expect(w.st.StableRevision).To(Equal(revA))
	g.Expect(w.primaryRev).To(Equal(revA))
	g.Expect(w.targetScaledUp).To(BeFalse())
	g.Expect(w.weights).To(Equal([]int32{100, 0, 10, 25, 50, 75, 0}))
	g.Expect(w.checksRun).To(Equal(8))
	g.Expect(w.reasons()).To(Equal([]string{
		meshv1alpha1.ReasonInitializing, meshv1alpha1.ReasonInitialized,
		meshv1alpha1.ReasonNewRevision,
		meshv1alpha1.ReasonStepAdvanced, meshv1alpha1.ReasonStepAdvanced, meshv1alpha1.ReasonStepAdvanced,
		meshv1alpha1.ReasonPromoting, meshv1alpha1.ReasonPromoted, meshv1alpha1.ReasonSucceeded,
	}))
	g.Expect(condition(w.st, meshv1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(condition(w.st, meshv1alpha1.ConditionProgressing).Status).To(Equal(metav1.ConditionFalse))
	g.Expect(w.st.Checks).To(HaveLen(8))
	g.Expect(w.last.RequeueAfter).To(BeZero())
}

func TestStepWeightAndMaxWeight(t *testing.T) {
	for _, tc := range []struct {
		step, max int32
		want      []int32
	}{
		{10, 50, []int32{10, 20, 30, 40, 50}},
		{20, 50, []int32{20, 40, 50}},
		{25, 100, []int32{25, 50, 75, 100}},
		{60, 60, []int32{60}},
	} {
		a := meshv1alpha1.CanaryAnalysis{StepWeight: ptr.To(tc.step), MaxWeight: ptr.To(tc.max)}
		NewWithT(t).Expect(Weights(&a)).To(Equal(tc.want), "stepWeight %d, maxWeight %d", tc.step, tc.max)
	}
}

// TestMeasuresOnlyAfterSettling: settling starts once the VirtualService reads back the
// weight with the canary ready, and no check is due before the settle time has passed.
func TestMeasuresOnlyAfterSettling(t *testing.T) {
	g := NewWithT(t)
	w := stableWorld(t, newSpec(func(s *meshv1alpha1.CanarySpec) { s.Analysis.SettleTime = &metav1.Duration{Duration: 30 * time.Second} }))
	w.newRevision(revA)
	w.targetRolledOut = false
	w.converge()
	g.Expect(w.last.Weight).To(BeZero(), "no traffic to a canary that is not ready")
	g.Expect(w.st.StepStartTime).To(BeNil())

	w.advance(time.Minute)
	g.Expect(Due(w.spec, w.st, w.now)).To(BeFalse())
	w.targetRolledOut = true
	w.pass() // the weight is written; the VirtualService carries it from the next pass on
	g.Expect(w.last.Weight).To(BeEquivalentTo(10))
	g.Expect(w.st.SettleStartTime).To(BeNil(), "the VirtualService did not carry 10% yet")
	w.now = w.now.Add(3 * time.Second)
	w.pass()
	g.Expect(w.st.SettleStartTime.Time).To(BeTemporally("==", w.now))
	g.Expect(w.st.NextCheckTime.Time).To(BeTemporally("==", w.now.Add(30*time.Second)))

	for _, d := range []time.Duration{time.Second, 10 * time.Second, 29 * time.Second} {
		g.Expect(Due(w.spec, w.st, w.st.SettleStartTime.Add(d))).To(BeFalse(), "due %s after settling began", d)
		// Even a check the controller ran anyway is not taken.
		st, _ := Step(w.spec, w.st, func() Observations { o := w.observe(); o.Check = failing(); return o }(), w.st.SettleStartTime.Add(d))
		g.Expect(st.Checks).To(BeEmpty())
	}
	g.Expect(w.last.RequeueAfter).To(Equal(30 * time.Second))
	w.untilDue()
	g.Expect(w.st.Checks).To(HaveLen(1))
	g.Expect(w.st.Checks[0].Time.Time).To(BeTemporally("==", w.st.SettleStartTime.Add(30*time.Second)))
}

// TestResumesExactlyAfterRestart kills the operator at every moment of a rollout (it makes
// no passes for a while) and compares what a fresh operator does from the stored status
// with an operator that never stopped: the same checks, none repeated, none skipped.
func TestResumesExactlyAfterRestart(t *testing.T) {
	g := NewWithT(t)

	// Reference: an operator that never stops, checked every interval.
	ref := stableWorld(t, newSpec())
	ref.newRevision(revA)
	ref.converge()
	for ref.st.Phase == meshv1alpha1.CanaryProgressing {
		ref.untilDue()
	}
	g.Expect(ref.st.Phase).To(Equal(meshv1alpha1.CanarySucceeded))

	for down := range 8 {
		w := stableWorld(t, newSpec())
		w.newRevision(revA)
		w.converge()
		// Run to the down-th check, then stop the operator for 25s (two and a half
		// intervals): nothing runs, the check due meanwhile is late.
		for range down {
			w.untilDue()
		}
		stored := w.st.DeepCopy()
		w.now = w.now.Add(25 * time.Second)
		// A new process: nothing but the stored status survives.
		w.st = roundTrip(t, stored)
		checksBefore := len(w.st.Checks)
		w.converge()
		if w.st.Phase == meshv1alpha1.CanaryProgressing || len(w.st.Checks) > checksBefore {
			g.Expect(len(w.st.Checks)).To(BeNumerically("<=", checksBefore+1), "restart after check %d: one late check, not one per missed interval", down)
		}
		// Calling again at the same moment changes nothing.
		again, a := Step(w.spec, w.st, w.observe(), w.now)
		g.Expect(again).To(Equal(w.st))
		g.Expect(a.Events).To(BeEmpty())

		for w.st.Phase == meshv1alpha1.CanaryProgressing {
			w.untilDue()
		}
		g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanarySucceeded), "restart after check %d", down)
		g.Expect(w.checksRun).To(Equal(ref.checksRun), "restart after check %d: no check repeated or skipped", down)
		g.Expect(w.reasons()).To(Equal(ref.reasons()), "restart after check %d", down)
		g.Expect(w.weights).To(Equal(ref.weights), "restart after check %d", down)
		for i, c := range w.st.Checks {
			g.Expect(c.StepIndex).To(Equal(ref.st.Checks[i].StepIndex))
		}
	}
}

// TestDueCheckRunsOnceAcrossRestarts: a check falls due, the operator dies before
// recording it (its status patch was lost), comes back much later: the check runs once.
// A restart just after recording it does not run it again.
func TestDueCheckRunsOnceAcrossRestarts(t *testing.T) {
	g := NewWithT(t)
	w := stableWorld(t, newSpec())
	w.newRevision(revA)
	w.converge()
	due := w.st.NextCheckTime.Time
	before := w.st.DeepCopy()

	// The pass at the due time records the check, but its status patch is lost.
	w.now = due
	w.pass()
	g.Expect(w.st.Checks).To(HaveLen(1))
	w.st = roundTrip(t, before)

	// Back a minute later: the check is still due, and runs once.
	w.now = due.Add(time.Minute)
	w.converge()
	g.Expect(w.st.Checks).To(HaveLen(1))
	g.Expect(w.st.Checks[0].Time.Time).To(BeTemporally("==", w.now))
	g.Expect(w.st.NextCheckTime.Time).To(BeTemporally("==", w.now.Add(10*time.Second)), "the next check is an interval after this one ran")

	// Dies right after recording (patch kept): a new process does not repeat the check.
	kept := roundTrip(t, w.st)
	w.st = kept
	w.now = w.now.Add(2 * time.Second)
	w.converge()
	g.Expect(w.st.Checks).To(HaveLen(1))
	g.Expect(w.checksRun).To(Equal(2), "one check lost with its patch, one recorded")
}

// TestDesiredWeightIgnoresTheVirtualService: a hand edit of the VirtualService changes
// neither the desired weight nor the step; it is reported, corrected, and measurements wait
// for the corrected weight to settle.
func TestDesiredWeightIgnoresTheVirtualService(t *testing.T) {
	g := NewWithT(t)
	w := stableWorld(t, newSpec())
	w.newRevision(revA)
	w.converge()
	w.untilDue()
	w.untilDue()
	g.Expect(w.st.StepIndex).To(BeEquivalentTo(1))
	w.advance(6 * time.Second)
	g.Expect(w.st.SettleStartTime).NotTo(BeNil())
	w.events = nil

	w.vs = ptr.To[int32](70) // someone edits the VirtualService
	w.now = w.now.Add(time.Second)
	a := w.pass()
	g.Expect(a.Weight).To(BeEquivalentTo(25), "the desired weight comes from the spec and the step")
	g.Expect(w.st.StepIndex).To(BeEquivalentTo(1))
	g.Expect(w.st.AppliedWeight).To(Equal(ptr.To[int32](70)), "status reports the weight read back")
	g.Expect(w.st.SettleStartTime).To(BeNil(), "settling restarts at the corrected weight")
	g.Expect(Due(w.spec, w.st, w.now.Add(time.Hour))).To(BeFalse())
	g.Expect(w.reasons()).To(Equal([]string{meshv1alpha1.ReasonWeightDrift}))

	w.converge() // the corrected weight reads back
	g.Expect(w.st.AppliedWeight).To(Equal(ptr.To[int32](25)))
	g.Expect(w.st.SettleStartTime.Time).To(BeTemporally("==", w.now))
}

// TestNoDataHoldsTheStep: checks without data are neither passes nor failures; the step
// holds until the limit, then the policy acts.
func TestNoDataHoldsTheStep(t *testing.T) {
	for _, tc := range []struct {
		action meshv1alpha1.NoDataAction
		phase  meshv1alpha1.CanaryPhase
		step   int32
	}{
		{meshv1alpha1.NoDataPause, meshv1alpha1.CanaryPaused, 0},
		{meshv1alpha1.NoDataRollback, meshv1alpha1.CanaryFailed, 0},
		{meshv1alpha1.NoDataPass, meshv1alpha1.CanaryProgressing, 0},
	} {
		t.Run(string(tc.action), func(t *testing.T) {
			g := NewWithT(t)
			w := stableWorld(t, newSpec(noData(tc.action)))
			w.newRevision(revA)
			w.converge()
			w.checks = empty
			w.untilDue()
			w.untilDue()
			g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryProgressing))
			g.Expect(w.st.Analysis).To(Equal(meshv1alpha1.CanaryAnalysisStatus{NoData: 2, ConsecutiveNoData: 2}))
			g.Expect(w.st.Checks[1].Outcome).To(Equal(meshv1alpha1.CheckNoData))
			g.Expect(w.last.Weight).To(BeEquivalentTo(10), "the step holds")

			w.untilDue() // the limit (3)
			g.Expect(w.st.Phase).To(Equal(tc.phase))
			g.Expect(w.st.Analysis.Failed).To(BeZero(), "no data is not a failure")
			if tc.action == meshv1alpha1.NoDataPause {
				g.Expect(w.last.Weight).To(BeEquivalentTo(10), "paused at its weight")
				g.Expect(w.st.NextCheckTime).To(BeNil())
				g.Expect(Due(w.spec, w.st, w.now.Add(time.Hour))).To(BeFalse())
				stalled := condition(w.st, meshv1alpha1.ConditionStalled)
				g.Expect(stalled.Status).To(Equal(metav1.ConditionTrue))
				g.Expect(stalled.Message).To(Equal("Paused at step 1/4 (10%): 3 checks in a row found no data, noData.limit is 3 " +
					"(last: no data for request-success-rate, request-duration); set a new spec.retryToken to resume the step"))
			}
			if tc.action == meshv1alpha1.NoDataPass {
				g.Expect(w.st.Analysis.Passed).To(BeEquivalentTo(1))
				w.checks = healthy
				w.untilDue()
				g.Expect(w.st.StepIndex).To(BeEquivalentTo(1), "the passed no-data check and one real pass complete the step")
			}
		})
	}
}

func TestDataResetsTheNoDataRun(t *testing.T) {
	g := NewWithT(t)
	w := stableWorld(t, newSpec(func(s *meshv1alpha1.CanarySpec) { s.Analysis.ChecksPerStep = 5 }))
	w.newRevision(revA)
	w.converge()
	for _, c := range []func() *Check{empty, empty, healthy, empty, broken, empty, healthy} {
		w.checks = c
		w.untilDue()
	}
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryProgressing), "never three no-data checks in a row")
	g.Expect(w.st.Analysis).To(Equal(meshv1alpha1.CanaryAnalysisStatus{Passed: 2, NoData: 4, Errors: 1}))
}

// TestQueryErrorIsNotAFailedCheck: an error holds the step, is retried at the next
// interval, and after three in a row says so in Stalled.
func TestQueryErrorIsNotAFailedCheck(t *testing.T) {
	g := NewWithT(t)
	w := stableWorld(t, newSpec())
	w.newRevision(revA)
	w.converge()
	w.checks = broken
	for range 3 {
		w.untilDue()
	}
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryProgressing))
	g.Expect(w.st.Analysis).To(Equal(meshv1alpha1.CanaryAnalysisStatus{Errors: 3, ConsecutiveErrors: 3}))
	g.Expect(w.st.Checks[2].Outcome).To(Equal(meshv1alpha1.CheckError))
	g.Expect(w.st.Checks[2].Metrics[0].Message).To(ContainSubstring("connection refused"))
	stalled := condition(w.st, meshv1alpha1.ConditionStalled)
	g.Expect(stalled.Status).To(Equal(metav1.ConditionTrue))
	g.Expect(stalled.Reason).To(Equal(meshv1alpha1.ReasonMetricQueryFailed))
	g.Expect(stalled.Message).To(ContainSubstring("connection refused"))
	g.Expect(w.last.RequeueAfter).To(Equal(10 * time.Second))

	w.checks = healthy
	w.untilDue()
	w.untilDue()
	g.Expect(w.st.StepIndex).To(BeEquivalentTo(1))
	g.Expect(condition(w.st, meshv1alpha1.ConditionStalled).Status).To(Equal(metav1.ConditionFalse))
}

// TestFailureThreshold counts failed checks per step.
func TestFailureThreshold(t *testing.T) {
	g := NewWithT(t)
	w := stableWorld(t, newSpec(func(s *meshv1alpha1.CanarySpec) { s.Analysis.FailureThreshold = 2 }))
	w.newRevision(revA)
	w.converge()
	w.checks = failing
	w.untilDue()
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryProgressing), "one failure of two allowed")
	g.Expect(w.st.Analysis.Failed).To(BeEquivalentTo(1))
	w.checks = healthy
	w.untilDue()
	w.untilDue()
	g.Expect(w.st.StepIndex).To(BeEquivalentTo(1))
	g.Expect(w.st.Analysis.Failed).To(BeZero(), "counters are per step")

	w.checks = failing
	w.untilDue()
	w.untilDue()
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryFailed))
	g.Expect(w.st.Reason).To(Equal(meshv1alpha1.ReasonAnalysisFailed))
	g.Expect(w.st.Message).To(Equal("Rolling back revision rev-a at step 2/4 (25%): 2 checks failed, failureThreshold is 2 " +
		"(last: request-success-rate 92.5 is below the minimum 99)"))
	g.Expect(w.weights[len(w.weights)-1]).To(BeZero())
	g.Expect(w.targetScaledUp).To(BeFalse())
	g.Expect(w.primaryRev).To(Equal(revStable), "never promoted")
	g.Expect(condition(w.st, meshv1alpha1.ConditionStalled).Message).To(ContainSubstring("Set a new spec.retryToken"))
}

// TestRetryWithoutTemplateChange: a failed revision is rolled out again after a new
// retryToken, with the same pod template.
func TestRetryWithoutTemplateChange(t *testing.T) {
	g := NewWithT(t)
	w := stableWorld(t, newSpec())
	w.newRevision(revA)
	w.converge()
	w.checks = failing
	w.untilDue()
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryFailed))

	w.advance(time.Hour)
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryFailed), "a failed revision stays failed")

	w.spec.RetryToken = "try-2"
	w.checks = healthy
	w.converge()
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryProgressing))
	g.Expect(w.st.CanaryRevision).To(Equal(revA))
	g.Expect(w.st.LastRetryToken).To(Equal("try-2"))
	for w.st.Phase == meshv1alpha1.CanaryProgressing {
		w.untilDue()
	}
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanarySucceeded))

	// The same token again does nothing; a token outside Failed and Paused is ignored, once.
	w.events = nil
	w.spec.RetryToken = "try-3"
	w.converge()
	w.converge()
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanarySucceeded))
	g.Expect(w.reasons()).To(Equal([]string{meshv1alpha1.ReasonTokenIgnored}))
}

// TestSupersedeStepsTrafficBackGradually: a new revision at 75% goes back down the
// configured weights, one per settle time with the primary ready, then the analysis
// restarts from the first step. No check runs meanwhile.
func TestSupersedeStepsTrafficBackGradually(t *testing.T) {
	g := NewWithT(t)
	w := stableWorld(t, newSpec())
	w.newRevision(revA)
	w.converge()
	for w.st.StepIndex < 3 {
		w.untilDue()
	}
	w.advance(6 * time.Second) // settled at 75%
	g.Expect(w.st.SettleStartTime).NotTo(BeNil())
	w.weights, w.events = nil, nil
	checks := w.checksRun

	w.newRevision(revB)
	w.converge()
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryRestarting))
	g.Expect(w.st.CanaryRevision).To(Equal(revB))
	g.Expect(w.weights).To(Equal([]int32{50}), "the first step down is at once")
	g.Expect(w.last.RequeueAfter).To(Equal(5 * time.Second))

	w.primaryReady = false
	w.advance(time.Minute)
	g.Expect(w.weights).To(Equal([]int32{50}), "stepping down waits for the primary")
	g.Expect(w.last.RequeueAfter).To(BeZero(), "the primary's readiness is watched, not polled")
	w.primaryReady = true
	w.converge()
	g.Expect(w.weights).To(Equal([]int32{50, 25}))
	w.advance(4 * time.Second)
	g.Expect(w.weights).To(Equal([]int32{50, 25}), "25% has not settled yet")
	w.advance(time.Second)
	g.Expect(w.weights).To(Equal([]int32{50, 25, 10}))
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryProgressing), "back at the first weight: the analysis restarts")
	g.Expect(w.st.StepIndex).To(BeZero())
	g.Expect(w.checksRun).To(Equal(checks), "no check while stepping down")
	g.Expect(w.reasons()).To(Equal([]string{
		meshv1alpha1.ReasonSuperseded, meshv1alpha1.ReasonSuperseded, meshv1alpha1.ReasonSuperseded, meshv1alpha1.ReasonRestarted,
	}))

	for w.st.Phase == meshv1alpha1.CanaryProgressing {
		w.untilDue()
	}
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanarySucceeded))
	g.Expect(w.primaryRev).To(Equal(revB))
	g.Expect(w.checksRun-checks).To(Equal(8), "the new revision passed every step itself")
}

// TestSupersedeWaitsForTheNewRevision: at the first step the new revision's pods roll out
// before the settle time starts.
func TestSupersedeWaitsForTheNewRevision(t *testing.T) {
	g := NewWithT(t)
	w := stableWorld(t, newSpec())
	w.newRevision(revA)
	w.converge()
	w.untilDue()
	g.Expect(w.st.Analysis.Passed).To(BeEquivalentTo(1))

	w.newRevision(revB)
	w.targetRolledOut = false
	w.now = w.now.Add(time.Second)
	w.converge()
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryProgressing))
	g.Expect(w.st.Analysis).To(BeZero())
	g.Expect(w.st.SettleStartTime).To(BeNil())
	g.Expect(w.last.Weight).To(BeEquivalentTo(10))
	w.advance(time.Minute)
	g.Expect(w.st.Checks).To(HaveLen(1), "no check of a revision still rolling out")
	w.targetRolledOut = true
	w.converge()
	g.Expect(w.st.SettleStartTime.Time).To(BeTemporally("==", w.now))
}

// TestGatedPromotionWaitsForToken: a Gated canary waits at its final weight, still
// checked; a token set before it waits is ignored; a new one promotes.
func TestGatedPromotionWaitsForToken(t *testing.T) {
	g := NewWithT(t)
	w := stableWorld(t, newSpec(gated))
	w.newRevision(revA)
	w.converge()
	w.spec.PromoteToken = "early"
	w.converge()
	g.Expect(w.reasons()).To(ContainElement(meshv1alpha1.ReasonTokenIgnored))
	for w.st.Phase == meshv1alpha1.CanaryProgressing {
		w.untilDue()
	}
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryAwaitingPromotion))
	for range 5 {
		w.untilDue()
	}
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryAwaitingPromotion), "no promotion without a new token")
	g.Expect(w.last.Weight).To(BeEquivalentTo(75))
	g.Expect(w.st.Analysis.Passed).To(BeEquivalentTo(7), "checks go on while waiting")
	g.Expect(w.primaryRev).To(Equal(revStable))

	w.spec.PromoteToken = "approved"
	w.converge()
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanarySucceeded))
	g.Expect(w.primaryRev).To(Equal(revA))
	g.Expect(w.st.LastPromoteToken).To(Equal("approved"))
}

func TestGatedCanaryFailingWhileWaitingRollsBack(t *testing.T) {
	g := NewWithT(t)
	w := stableWorld(t, newSpec(gated))
	w.newRevision(revA)
	w.converge()
	for w.st.Phase == meshv1alpha1.CanaryProgressing {
		w.untilDue()
	}
	w.checks = failing
	w.untilDue()
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryFailed))
	g.Expect(w.primaryRev).To(Equal(revStable))
}

// TestAbortRollsBack: abort sends all traffic to the primary at once, keeps new revisions
// from starting while set, and a new revision starts once it is cleared.
func TestAbortRollsBack(t *testing.T) {
	g := NewWithT(t)
	w := stableWorld(t, newSpec())
	w.newRevision(revA)
	w.converge()
	for w.st.StepIndex < 2 {
		w.untilDue()
	}
	w.advance(time.Second)
	w.weights = nil

	w.spec.Abort = true
	g.Expect(Due(w.spec, w.st, w.now.Add(time.Hour))).To(BeFalse(), "no query for a canary being aborted")
	w.converge()
	g.Expect(w.weights).To(Equal([]int32{0}), "at once, not gradually")
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryFailed))
	g.Expect(w.st.Reason).To(Equal(meshv1alpha1.ReasonAborted))
	g.Expect(w.targetScaledUp).To(BeFalse())

	w.newRevision(revB)
	w.advance(time.Minute)
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryFailed), "abort holds new revisions back")
	g.Expect(condition(w.st, meshv1alpha1.ConditionStalled).Message).To(ContainSubstring("revision rev-b"))

	w.spec.Abort = false
	w.converge()
	g.Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryProgressing))
	g.Expect(w.st.CanaryRevision).To(Equal(revB))
}

func TestRequeueAfterIsTheNextDueTime(t *testing.T) {
	g := NewWithT(t)
	w := stableWorld(t, newSpec())
	g.Expect(w.last.RequeueAfter).To(BeZero(), "nothing time-based while stable")
	w.newRevision(revA)
	w.converge()
	g.Expect(w.last.RequeueAfter).To(Equal(5*time.Second), "the settle time")
	w.now = w.now.Add(1500 * time.Millisecond)
	w.converge()
	g.Expect(w.last.RequeueAfter).To(Equal(3500 * time.Millisecond))
	w.untilDue()
	g.Expect(w.last.RequeueAfter).To(Equal(10 * time.Second))
	// Due but not run (the controller skipped it): retried soon, not in a hot loop.
	w.checks = nil
	w.now = w.st.NextCheckTime.Add(time.Second)
	w.converge()
	g.Expect(w.last.RequeueAfter).To(Equal(time.Second))
}

func TestTimestampsAreWholeSecondsRoundedUp(t *testing.T) {
	g := NewWithT(t)
	w := stableWorld(t, newSpec())
	w.newRevision(revA)
	w.now = w.now.Add(1200 * time.Millisecond)
	w.converge()
	start := w.st.SettleStartTime.Time
	g.Expect(start).To(BeTemporally("==", t0.Add(2*time.Second)))
	g.Expect(w.st.NextCheckTime.Time).To(BeTemporally("==", start.Add(5*time.Second)))
	g.Expect(Due(w.spec, w.st, t0.Add(1200*time.Millisecond+5*time.Second))).To(BeFalse(), "never before the settle time has fully passed")
}
