package canary

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

type statusOpt func(*meshv1alpha1.CanaryStatus)

// at is a status in phase p at step i of revision revA over revStable, the step started a
// minute ago.
func at(p meshv1alpha1.CanaryPhase, i int32, opts ...statusOpt) *meshv1alpha1.CanaryStatus {
	st := &meshv1alpha1.CanaryStatus{Phase: p, Reason: "Given", StableRevision: revStable, CanaryRevision: revA, StepIndex: i}
	switch p {
	case meshv1alpha1.CanaryStable, meshv1alpha1.CanaryInitializing, "":
		st.CanaryRevision = ""
	case meshv1alpha1.CanaryProgressing, meshv1alpha1.CanaryRestarting, meshv1alpha1.CanaryPaused,
		meshv1alpha1.CanaryAwaitingPromotion, meshv1alpha1.CanaryPromoting:
		st.StepStartTime = &metav1.Time{Time: t0.Add(-time.Minute)}
	}
	for _, o := range opts {
		o(st)
	}
	return st
}

// settledDue: settling started 20s ago and a check is due now.
func settledDue(st *meshv1alpha1.CanaryStatus) {
	st.SettleStartTime = &metav1.Time{Time: t0.Add(-20 * time.Second)}
	st.NextCheckTime = &metav1.Time{Time: t0}
}

func waiting(st *meshv1alpha1.CanaryStatus) { st.StepStartTime = nil }

func counts(a meshv1alpha1.CanaryAnalysisStatus) statusOpt {
	return func(st *meshv1alpha1.CanaryStatus) { st.Analysis = a }
}

func tokens(promote, retry string) statusOpt {
	return func(st *meshv1alpha1.CanaryStatus) { st.LastPromoteToken, st.LastRetryToken = promote, retry }
}

type obsOpt func(*Observations)

// observed: the target at rev, ready; the primary at revStable, ready; the VirtualService
// carrying weight.
func observed(rev string, weight int32, opts ...obsOpt) Observations {
	o := Observations{
		Generation:    3,
		Target:        Workload{Found: true, Revision: rev, Ready: true},
		Primary:       Workload{Found: true, Revision: revStable, Ready: true},
		AppliedWeight: ptr.To(weight),
	}
	for _, f := range opts {
		f(&o)
	}
	return o
}

func withCheck(c *Check) obsOpt       { return func(o *Observations) { o.Check = c } }
func targetNotReady(o *Observations)  { o.Target.Ready = false }
func primaryNotReady(o *Observations) { o.Primary.Ready = false }
func primaryAt(rev string) obsOpt     { return func(o *Observations) { o.Primary.Revision = rev } }

func abort(s *meshv1alpha1.CanarySpec) { s.Abort = true }
func promoteToken(t string) func(*meshv1alpha1.CanarySpec) {
	return func(s *meshv1alpha1.CanarySpec) { s.PromoteToken = t }
}
func retryToken(t string) func(*meshv1alpha1.CanarySpec) {
	return func(s *meshv1alpha1.CanarySpec) { s.RetryToken = t }
}
func noData(action meshv1alpha1.NoDataAction) func(*meshv1alpha1.CanarySpec) {
	return func(s *meshv1alpha1.CanarySpec) { s.Analysis.NoData.Action = action }
}

// TestTransitions covers each row of the transition table in the package documentation
// with one Step from a given status.
func TestTransitions(t *testing.T) {
	cases := []struct {
		name    string
		spec    *meshv1alpha1.CanarySpec
		status  *meshv1alpha1.CanaryStatus
		obs     Observations
		phase   meshv1alpha1.CanaryPhase
		weight  int32
		reasons []string
		promote bool
		scale   Scale
		check   func(g Gomega, st *meshv1alpha1.CanaryStatus)
	}{
		{
			name:   "a new Canary initializes: the target keeps all traffic while the primary is created",
			status: &meshv1alpha1.CanaryStatus{}, obs: observed(revStable, 0, func(o *Observations) { o.Primary = Workload{}; o.AppliedWeight = nil }),
			phase: meshv1alpha1.CanaryInitializing, weight: 100, reasons: []string{meshv1alpha1.ReasonInitializing}, promote: true, scale: ScaleUp,
		},
		{
			name:   "initializing waits for the primary to be ready",
			status: at(meshv1alpha1.CanaryInitializing, 0), obs: observed(revStable, 100, primaryNotReady),
			phase: meshv1alpha1.CanaryInitializing, weight: 100, promote: true, scale: ScaleUp,
		},
		{
			name:   "initializing ends once the primary runs the target's revision",
			status: at(meshv1alpha1.CanaryInitializing, 0), obs: observed(revStable, 100),
			phase: meshv1alpha1.CanaryStable, weight: 0, reasons: []string{meshv1alpha1.ReasonInitialized}, scale: ScaleUp,
		},
		{
			name:   "stable scales the target down once no traffic reaches it",
			status: at(meshv1alpha1.CanaryStable, 0), obs: observed(revStable, 0),
			phase: meshv1alpha1.CanaryStable, weight: 0, scale: ScaleDown,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) {
				g.Expect(condition(st, meshv1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
			},
		},
		{
			name:   "a new revision starts a rollout at the first weight",
			status: at(meshv1alpha1.CanaryStable, 0), obs: observed(revA, 0),
			phase: meshv1alpha1.CanaryProgressing, weight: 10, reasons: []string{meshv1alpha1.ReasonNewRevision}, scale: ScaleUp,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) {
				g.Expect(st.CanaryRevision).To(Equal(revA))
				g.Expect(st.StepStartTime).NotTo(BeNil())
			},
		},
		{
			name:   "a new revision that is not ready gets no traffic yet",
			status: at(meshv1alpha1.CanaryStable, 0), obs: observed(revA, 0, targetNotReady),
			phase: meshv1alpha1.CanaryProgressing, weight: 0, reasons: []string{meshv1alpha1.ReasonNewRevision}, scale: ScaleUp,
		},
		{
			name: "abort holds a new revision back",
			spec: newSpec(abort), status: at(meshv1alpha1.CanaryStable, 0), obs: observed(revA, 0),
			phase: meshv1alpha1.CanaryStable, weight: 0, scale: ScaleDown,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) {
				g.Expect(condition(st, meshv1alpha1.ConditionStalled).Reason).To(Equal(meshv1alpha1.ReasonAborted))
				g.Expect(condition(st, meshv1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
			},
		},
		{
			name:   "settling starts when the VirtualService reads back the weight",
			status: at(meshv1alpha1.CanaryProgressing, 0), obs: observed(revA, 10),
			phase: meshv1alpha1.CanaryProgressing, weight: 10, scale: ScaleUp,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) {
				g.Expect(st.SettleStartTime.Time).To(BeTemporally("==", t0))
				g.Expect(st.NextCheckTime.Time).To(BeTemporally("==", t0.Add(5*time.Second)))
			},
		},
		{
			name:   "with no settle time, the first check is due a second after settling began",
			spec:   newSpec(func(s *meshv1alpha1.CanarySpec) { s.Analysis.SettleTime = &metav1.Duration{} }),
			status: at(meshv1alpha1.CanaryProgressing, 0), obs: observed(revA, 10, withCheck(failing())),
			phase: meshv1alpha1.CanaryProgressing, weight: 10, scale: ScaleUp,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) {
				g.Expect(st.NextCheckTime.Time).To(BeTemporally("==", t0.Add(time.Second)))
				g.Expect(st.Checks).To(BeEmpty())
			},
		},
		{
			name:   "a check offered before it is due is ignored",
			status: at(meshv1alpha1.CanaryProgressing, 0, settledDue, func(st *meshv1alpha1.CanaryStatus) { st.NextCheckTime.Time = t0.Add(time.Second) }),
			obs:    observed(revA, 10, withCheck(failing())),
			phase:  meshv1alpha1.CanaryProgressing, weight: 10, scale: ScaleUp,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) {
				g.Expect(st.Checks).To(BeEmpty())
				g.Expect(st.Analysis).To(BeZero())
			},
		},
		{
			name:   "the step's last passing check advances to the next weight",
			status: at(meshv1alpha1.CanaryProgressing, 0, settledDue, counts(meshv1alpha1.CanaryAnalysisStatus{Passed: 1})),
			obs:    observed(revA, 10, withCheck(healthy())),
			phase:  meshv1alpha1.CanaryProgressing, weight: 25, reasons: []string{meshv1alpha1.ReasonStepAdvanced}, scale: ScaleUp,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) {
				g.Expect(st.StepIndex).To(BeEquivalentTo(1))
				g.Expect(st.Analysis).To(BeZero())
				g.Expect(st.SettleStartTime).To(BeNil())
				g.Expect(st.Checks).To(HaveLen(1))
			},
		},
		{
			name:   "the next step waits for the canary to be ready before raising the weight",
			status: at(meshv1alpha1.CanaryProgressing, 0, settledDue, counts(meshv1alpha1.CanaryAnalysisStatus{Passed: 1})),
			obs:    observed(revA, 10, withCheck(healthy()), targetNotReady),
			phase:  meshv1alpha1.CanaryProgressing, weight: 10, reasons: []string{meshv1alpha1.ReasonStepAdvanced}, scale: ScaleUp,
		},
		{
			name:   "a failed check at the threshold rolls back at once",
			status: at(meshv1alpha1.CanaryProgressing, 2, settledDue), obs: observed(revA, 50, withCheck(failing())),
			phase: meshv1alpha1.CanaryRollingBack, weight: 0, reasons: []string{meshv1alpha1.ReasonCheckFailed, meshv1alpha1.ReasonAnalysisFailed}, scale: ScaleUp,
		},
		{
			name:   "rolling back ends when the VirtualService reads back 0",
			status: at(meshv1alpha1.CanaryRollingBack, 2), obs: observed(revA, 0),
			phase: meshv1alpha1.CanaryFailed, weight: 0, reasons: []string{meshv1alpha1.ReasonRolledBack}, scale: ScaleDown,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) {
				g.Expect(st.Reason).To(Equal("Given"), "Failed keeps the cause of the rollback")
				g.Expect(condition(st, meshv1alpha1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))
			},
		},
		{
			name: "a failed canary is retried from the first step by a new retryToken",
			spec: newSpec(retryToken("again")), status: at(meshv1alpha1.CanaryFailed, 2), obs: observed(revA, 0, targetNotReady),
			phase: meshv1alpha1.CanaryProgressing, weight: 0, reasons: []string{meshv1alpha1.ReasonRetried}, scale: ScaleUp,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) {
				g.Expect(st.StepIndex).To(BeZero())
				g.Expect(st.LastRetryToken).To(Equal("again"))
			},
		},
		{
			name: "a handled retryToken does not retry again",
			spec: newSpec(retryToken("again")), status: at(meshv1alpha1.CanaryFailed, 2, tokens("", "again")), obs: observed(revA, 0),
			phase: meshv1alpha1.CanaryFailed, weight: 0, scale: ScaleDown,
		},
		{
			name:   "a failed canary whose target returns to the stable revision is stable",
			status: at(meshv1alpha1.CanaryFailed, 2), obs: observed(revStable, 0),
			phase: meshv1alpha1.CanaryStable, weight: 0, reasons: []string{meshv1alpha1.ReasonReverted}, scale: ScaleDown,
		},
		{
			name:   "a failed canary replaced by a new revision rolls that out",
			status: at(meshv1alpha1.CanaryFailed, 2), obs: observed(revB, 0),
			phase: meshv1alpha1.CanaryProgressing, weight: 10, reasons: []string{meshv1alpha1.ReasonNewRevision}, scale: ScaleUp,
		},
		{
			name: "abort rolls back a progressing canary at once",
			spec: newSpec(abort), status: at(meshv1alpha1.CanaryProgressing, 2, settledDue), obs: observed(revA, 50),
			phase: meshv1alpha1.CanaryRollingBack, weight: 0, reasons: []string{meshv1alpha1.ReasonAborted}, scale: ScaleUp,
		},
		{
			name: "abort is ignored once the promotion has begun",
			spec: newSpec(abort), status: at(meshv1alpha1.CanaryPromoting, 3), obs: observed(revA, 75, primaryNotReady),
			phase: meshv1alpha1.CanaryPromoting, weight: 75, promote: true, scale: ScaleUp,
		},
		{
			name: "the last step of a gated canary awaits promotion at its final weight",
			spec: newSpec(gated), status: at(meshv1alpha1.CanaryProgressing, 3, settledDue, counts(meshv1alpha1.CanaryAnalysisStatus{Passed: 1})),
			obs:   observed(revA, 75, withCheck(healthy())),
			phase: meshv1alpha1.CanaryAwaitingPromotion, weight: 75, reasons: []string{meshv1alpha1.ReasonAwaitingPromotion}, scale: ScaleUp,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) {
				g.Expect(st.NextCheckTime).NotTo(BeNil(), "checks go on while awaiting promotion")
			},
		},
		{
			name:   "the last step of an automatic canary promotes",
			status: at(meshv1alpha1.CanaryProgressing, 3, settledDue, counts(meshv1alpha1.CanaryAnalysisStatus{Passed: 1})),
			obs:    observed(revA, 75, withCheck(healthy())),
			phase:  meshv1alpha1.CanaryPromoting, weight: 75, reasons: []string{meshv1alpha1.ReasonPromoting}, promote: true, scale: ScaleUp,
		},
		{
			name: "a new promoteToken promotes a canary awaiting promotion",
			spec: newSpec(gated, promoteToken("go")), status: at(meshv1alpha1.CanaryAwaitingPromotion, 3, settledDue, func(st *meshv1alpha1.CanaryStatus) { st.NextCheckTime.Time = t0.Add(time.Second) }),
			obs:   observed(revA, 75),
			phase: meshv1alpha1.CanaryPromoting, weight: 75, reasons: []string{meshv1alpha1.ReasonPromoting}, promote: true, scale: ScaleUp,
		},
		{
			name:   "switching a waiting canary to Automatic promotes it",
			status: at(meshv1alpha1.CanaryAwaitingPromotion, 3), obs: observed(revA, 75),
			phase: meshv1alpha1.CanaryPromoting, weight: 75, reasons: []string{meshv1alpha1.ReasonPromoting}, promote: true, scale: ScaleUp,
		},
		{
			name:   "promotion finishes when the primary runs the canary's revision; traffic returns to it",
			status: at(meshv1alpha1.CanaryPromoting, 3), obs: observed(revA, 75, primaryAt(revA)),
			phase: meshv1alpha1.CanaryFinalizing, weight: 0, reasons: []string{meshv1alpha1.ReasonPromoted}, scale: ScaleUp,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) { g.Expect(st.StableRevision).To(Equal(revA)) },
		},
		{
			name:   "finalizing succeeds when the VirtualService reads back 0",
			status: at(meshv1alpha1.CanaryFinalizing, 3, func(st *meshv1alpha1.CanaryStatus) { st.StableRevision = revA }),
			obs:    observed(revA, 0, primaryAt(revA)),
			phase:  meshv1alpha1.CanarySucceeded, weight: 0, reasons: []string{meshv1alpha1.ReasonSucceeded}, scale: ScaleDown,
		},
		{
			name: "a paused canary resumes its step with a new retryToken",
			spec: newSpec(retryToken("resume")), status: at(meshv1alpha1.CanaryPaused, 1, settledDue, counts(meshv1alpha1.CanaryAnalysisStatus{NoData: 3, ConsecutiveNoData: 3})),
			obs:   observed(revA, 25),
			phase: meshv1alpha1.CanaryProgressing, weight: 25, reasons: []string{meshv1alpha1.ReasonRetried}, scale: ScaleUp,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) {
				g.Expect(st.StepIndex).To(BeEquivalentTo(1))
				g.Expect(st.Analysis).To(BeZero())
				g.Expect(st.SettleStartTime.Time).To(BeTemporally("==", t0), "the step settles again")
			},
		},
		{
			name:   "no data up to the limit pauses (action Pause)",
			status: at(meshv1alpha1.CanaryProgressing, 1, settledDue, counts(meshv1alpha1.CanaryAnalysisStatus{NoData: 2, ConsecutiveNoData: 2})),
			obs:    observed(revA, 25, withCheck(empty())),
			phase:  meshv1alpha1.CanaryPaused, weight: 25, reasons: []string{meshv1alpha1.ReasonNoData}, scale: ScaleUp,
		},
		{
			name:   "no data up to the limit rolls back (action Rollback)",
			spec:   newSpec(noData(meshv1alpha1.NoDataRollback)),
			status: at(meshv1alpha1.CanaryProgressing, 1, settledDue, counts(meshv1alpha1.CanaryAnalysisStatus{NoData: 2, ConsecutiveNoData: 2})),
			obs:    observed(revA, 25, withCheck(empty())),
			phase:  meshv1alpha1.CanaryRollingBack, weight: 0, reasons: []string{meshv1alpha1.ReasonNoData}, scale: ScaleUp,
		},
		{
			name:   "no data up to the limit counts as passed (action Pass)",
			spec:   newSpec(noData(meshv1alpha1.NoDataPass)),
			status: at(meshv1alpha1.CanaryProgressing, 1, settledDue, counts(meshv1alpha1.CanaryAnalysisStatus{NoData: 2, ConsecutiveNoData: 2})),
			obs:    observed(revA, 25, withCheck(empty())),
			phase:  meshv1alpha1.CanaryProgressing, weight: 25, reasons: []string{meshv1alpha1.ReasonNoData}, scale: ScaleUp,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) {
				g.Expect(st.Analysis).To(Equal(meshv1alpha1.CanaryAnalysisStatus{Passed: 1, NoData: 3}))
			},
		},
		{
			name:   "a new revision above the first weight steps traffic back gradually",
			status: at(meshv1alpha1.CanaryProgressing, 2, settledDue), obs: observed(revB, 50),
			phase: meshv1alpha1.CanaryRestarting, weight: 25, reasons: []string{meshv1alpha1.ReasonSuperseded}, scale: ScaleUp,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) {
				g.Expect(st.CanaryRevision).To(Equal(revB))
				g.Expect(st.Analysis).To(BeZero())
			},
		},
		{
			name:   "a new revision at the first weight restarts the analysis there",
			status: at(meshv1alpha1.CanaryProgressing, 0, settledDue, counts(meshv1alpha1.CanaryAnalysisStatus{Passed: 1})),
			obs:    observed(revB, 10),
			phase:  meshv1alpha1.CanaryProgressing, weight: 10, reasons: []string{meshv1alpha1.ReasonSuperseded}, scale: ScaleUp,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) {
				g.Expect(st.Analysis).To(BeZero())
				g.Expect(st.SettleStartTime.Time).To(BeTemporally("==", t0), "settles afresh for the new revision")
			},
		},
		{
			name:   "the target reverted to the stable revision mid-rollout ends the rollout",
			status: at(meshv1alpha1.CanaryProgressing, 2, settledDue), obs: observed(revStable, 50),
			phase: meshv1alpha1.CanaryStable, weight: 0, reasons: []string{meshv1alpha1.ReasonReverted}, scale: ScaleUp,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) { g.Expect(st.CanaryRevision).To(BeEmpty()) },
		},
		{
			name:   "restarting at the first weight hands over to the analysis",
			status: at(meshv1alpha1.CanaryRestarting, 0, func(st *meshv1alpha1.CanaryStatus) { st.SettleStartTime = &metav1.Time{Time: t0} }),
			obs:    observed(revA, 10, targetNotReady),
			phase:  meshv1alpha1.CanaryProgressing, weight: 10, reasons: []string{meshv1alpha1.ReasonRestarted}, scale: ScaleUp,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) {
				g.Expect(st.SettleStartTime).To(BeNil(), "settling waits for the new revision to be ready")
			},
		},
		{
			name:   "a new revision during promotion: the promoted revision is stable, the new one starts over",
			status: at(meshv1alpha1.CanaryPromoting, 3), obs: observed(revB, 75, primaryAt(revA), primaryNotReady),
			phase: meshv1alpha1.CanaryRestarting, weight: 50, reasons: []string{meshv1alpha1.ReasonSuperseded}, scale: ScaleUp,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) {
				g.Expect(st.StableRevision).To(Equal(revA))
				g.Expect(st.CanaryRevision).To(Equal(revB))
			},
		},
		{
			name:   "a missing target holds everything",
			status: at(meshv1alpha1.CanaryProgressing, 2, settledDue), obs: observed(revA, 50, func(o *Observations) { o.Target = Workload{} }),
			phase: meshv1alpha1.CanaryProgressing, weight: 50, scale: ScaleUp,
			check: func(g Gomega, st *meshv1alpha1.CanaryStatus) {
				g.Expect(condition(st, meshv1alpha1.ConditionStalled).Reason).To(Equal(meshv1alpha1.ReasonTargetNotFound))
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			spec := tc.spec
			if spec == nil {
				spec = newSpec()
			}
			before := tc.status.DeepCopy()
			st, a := Step(spec, tc.status, tc.obs, t0)
			g.Expect(tc.status).To(Equal(before), "Step must not modify its input")
			g.Expect(st.Phase).To(Equal(tc.phase))
			g.Expect(a.Weight).To(Equal(tc.weight))
			g.Expect(st.TargetWeight).To(Equal(tc.weight))
			reasons := []string{}
			for _, e := range a.Events {
				reasons = append(reasons, e.Reason)
			}
			if tc.reasons == nil {
				tc.reasons = []string{}
			}
			g.Expect(reasons).To(Equal(tc.reasons))
			g.Expect(a.Promote).To(Equal(tc.promote))
			g.Expect(a.ScaleTarget).To(Equal(tc.scale))
			g.Expect(st.StepIndex).To(And(BeNumerically(">=", 0), BeNumerically("<", len(Weights(&spec.Analysis)))))
			for _, c := range st.Conditions {
				g.Expect(c.ObservedGeneration).To(BeEquivalentTo(3))
				g.Expect(c.Reason).To(MatchRegexp(`^[A-Z][A-Za-z]*$`))
			}
			if tc.check != nil {
				tc.check(g, st)
			}
			// And again: nothing more happens.
			again, a2 := Step(spec, st, tc.obs, t0)
			g.Expect(again).To(Equal(st))
			g.Expect(a2.Events).To(BeEmpty())
		})
	}
}
