package canary

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

const (
	// maxChecks is how many checks status.checks keeps.
	maxChecks = 10
	// stalledAfterErrors is how many checks in a row with a query error set Stalled.
	stalledAfterErrors = 3
	// maxPasses bounds the rules applied in one Step. A pass changes the state or ends the
	// loop, and no rollout needs more than a handful in a row; the bound only guards a bug.
	maxPasses = 32
	// minRequeue is the shortest RequeueAfter: a check due now that the controller did not
	// run is retried this soon, not in a hot loop.
	minRequeue = time.Second

	defaultInterval     = time.Minute
	defaultNoDataLimit  = 5
	defaultNoDataAction = meshv1alpha1.NoDataPause
)

// Weights returns the canary's weight at each step: spec.analysis.steps, or stepWeight,
// 2×stepWeight, … below maxWeight, then maxWeight.
func Weights(a *meshv1alpha1.CanaryAnalysis) []int32 {
	if len(a.Steps) > 0 {
		return a.Steps
	}
	if a.StepWeight == nil || a.MaxWeight == nil || *a.StepWeight <= 0 || *a.MaxWeight <= 0 {
		return nil
	}
	var w []int32
	for x := *a.StepWeight; x < *a.MaxWeight; x += *a.StepWeight {
		w = append(w, x)
	}
	return append(w, min(*a.MaxWeight, 100))
}

// DesiredWeight is the canary's traffic percentage the status calls for: a function of the
// spec and the persisted phase and step, never of the weight the VirtualService carries.
func DesiredWeight(spec *meshv1alpha1.CanarySpec, status *meshv1alpha1.CanaryStatus) int32 {
	return desiredWeight(Weights(&spec.Analysis), status)
}

func desiredWeight(w []int32, st *meshv1alpha1.CanaryStatus) int32 {
	if len(w) == 0 {
		return 0
	}
	i := clampStep(st.StepIndex, w)
	switch st.Phase {
	case meshv1alpha1.CanaryInitializing:
		return 100
	case meshv1alpha1.CanaryProgressing:
		if st.StepStartTime != nil {
			return w[i]
		}
		// The step waits for the canary to be ready: the previous step's weight holds.
		if i == 0 {
			return 0
		}
		return w[i-1]
	case meshv1alpha1.CanaryRestarting, meshv1alpha1.CanaryPaused,
		meshv1alpha1.CanaryAwaitingPromotion, meshv1alpha1.CanaryPromoting:
		return w[i]
	default:
		return 0
	}
}

// Due reports whether a metrics check is due: the canary is being analysed, it has
// settled at its weight, and nextCheckTime has passed. The controller queries Prometheus
// only when it is.
func Due(spec *meshv1alpha1.CanarySpec, status *meshv1alpha1.CanaryStatus, now time.Time) bool {
	switch status.Phase {
	case meshv1alpha1.CanaryProgressing, meshv1alpha1.CanaryAwaitingPromotion:
	default:
		return false
	}
	return !spec.Abort && status.SettleStartTime != nil && status.NextCheckTime != nil &&
		!now.Before(status.NextCheckTime.Time)
}

// Step advances the Canary: it applies the transition rules (see the package
// documentation) until none fires and returns the new status and the actions that carry
// it out. It does not modify its arguments. Calling it again with the returned status and
// the same observations and time returns the same status and no events.
func Step(spec *meshv1alpha1.CanarySpec, status *meshv1alpha1.CanaryStatus, obs Observations, now time.Time) (*meshv1alpha1.CanaryStatus, Actions) {
	m := &machine{
		spec:  spec,
		cfg:   resolve(spec),
		st:    status.DeepCopy(),
		obs:   obs,
		now:   now,
		stamp: ceilSecond(now),
		// A check measures what happened before this call: it counts only if it was due
		// then, not if settling started (with a zero settle time) during the call.
		checkDue: Due(spec, status, now),
	}
	m.run()
	return m.st, m.actions()
}

// config is the spec with its defaults resolved.
type config struct {
	weights          []int32
	interval         time.Duration
	settle           time.Duration
	checksPerStep    int32
	failureThreshold int32
	noDataLimit      int32
	noDataAction     meshv1alpha1.NoDataAction
	gated            bool
}

func resolve(spec *meshv1alpha1.CanarySpec) config {
	a := &spec.Analysis
	c := config{
		weights:          Weights(a),
		interval:         defaultInterval,
		checksPerStep:    max(a.ChecksPerStep, 1),
		failureThreshold: max(a.FailureThreshold, 1),
		noDataLimit:      defaultNoDataLimit,
		noDataAction:     defaultNoDataAction,
		gated:            spec.Promotion == meshv1alpha1.PromotionGated,
	}
	if a.Interval != nil && a.Interval.Duration > 0 {
		c.interval = a.Interval.Duration
	}
	c.settle = c.interval
	if a.SettleTime != nil {
		// At least a second: the first check is due strictly after settling began, so a
		// measurement taken before then can never count.
		c.settle = max(a.SettleTime.Duration, time.Second)
	}
	if n := a.NoData; n != nil {
		if n.Limit > 0 {
			c.noDataLimit = n.Limit
		}
		if n.Action != "" {
			c.noDataAction = n.Action
		}
	}
	return c
}

type machine struct {
	spec *meshv1alpha1.CanarySpec
	cfg  config
	st   *meshv1alpha1.CanaryStatus
	obs  Observations
	now  time.Time
	// stamp is now as stored in status: rounded up to the second, as the API server keeps
	// metav1.Time, so timers computed from it never end early and survive a round trip.
	stamp time.Time

	events []Event
	// promoteRequested and retryRequested are new tokens that arrived in a phase that uses
	// them, until a rule acts on them.
	promoteRequested, retryRequested bool
	// checkDue is whether a check was due as the call began; checked is set once one has
	// been recorded: one per Step at most.
	checkDue, checked bool
}

func (m *machine) run() {
	if len(m.cfg.weights) > 0 {
		m.st.StepIndex = clampStep(m.st.StepIndex, m.cfg.weights)
		if m.obs.Target.Found {
			m.tokens()
			for range maxPasses {
				if !m.pass() {
					break
				}
			}
		}
	}
	m.st.TargetWeight = desiredWeight(m.cfg.weights, m.st)
	if m.obs.AppliedWeight != nil {
		m.st.AppliedWeight = ptr.To(*m.obs.AppliedWeight)
	} else {
		m.st.AppliedWeight = nil
	}
	m.conditions()
}

// tokens records new promote and retry tokens, judged against the phase the Canary is in
// as this call begins: they act there or nowhere.
func (m *machine) tokens() {
	phase := m.st.Phase
	if phase == "" {
		phase = meshv1alpha1.CanaryInitializing
	}
	if t := m.spec.PromoteToken; t != "" && t != m.st.LastPromoteToken {
		m.st.LastPromoteToken = t
		if phase == meshv1alpha1.CanaryAwaitingPromotion {
			m.promoteRequested = true
		} else {
			m.warn(meshv1alpha1.ReasonTokenIgnored, fmt.Sprintf(
				"promoteToken %q ignored: the Canary is %s; a promoteToken only promotes a canary in AwaitingPromotion, set a new one then", t, phase))
		}
	}
	if t := m.spec.RetryToken; t != "" && t != m.st.LastRetryToken {
		m.st.LastRetryToken = t
		switch {
		case m.spec.Abort:
			m.warn(meshv1alpha1.ReasonTokenIgnored, fmt.Sprintf(
				"retryToken %q ignored: spec.abort is true; clear it, then set a new retryToken", t))
		case phase == meshv1alpha1.CanaryFailed || phase == meshv1alpha1.CanaryPaused:
			m.retryRequested = true
		default:
			m.warn(meshv1alpha1.ReasonTokenIgnored, fmt.Sprintf(
				"retryToken %q ignored: the Canary is %s; a retryToken only restarts a Failed or Paused canary", t, phase))
		}
	}
}

// pass applies the first rule that fires and reports whether one did.
func (m *machine) pass() bool {
	st := m.st
	switch st.Phase {
	case "":
		m.setPhase(meshv1alpha1.CanaryInitializing, corev1.EventTypeNormal, meshv1alpha1.ReasonInitializing,
			fmt.Sprintf("Creating %s from Deployment %s, which serves all traffic until then", m.primaryName(), m.spec.TargetRef.Name))
		return true
	case meshv1alpha1.CanaryInitializing:
		return m.initializing()
	case meshv1alpha1.CanaryStable, meshv1alpha1.CanarySucceeded, meshv1alpha1.CanaryFailed:
		return m.idle()
	}

	// A rollout is in flight.
	switch st.Phase {
	case meshv1alpha1.CanaryProgressing, meshv1alpha1.CanaryRestarting,
		meshv1alpha1.CanaryAwaitingPromotion, meshv1alpha1.CanaryPaused:
		if m.spec.Abort {
			m.rollback(meshv1alpha1.ReasonAborted, fmt.Sprintf("Rolling back revision %s at %d%%: spec.abort is true", st.CanaryRevision, desiredWeight(m.cfg.weights, st)))
			return true
		}
	}
	if m.obs.Target.Revision != st.CanaryRevision {
		return m.targetChanged()
	}
	switch st.Phase {
	case meshv1alpha1.CanaryProgressing:
		return m.track() || m.judge(true)
	case meshv1alpha1.CanaryAwaitingPromotion:
		return m.track() || m.judge(false) || m.awaitPromotion()
	case meshv1alpha1.CanaryPaused:
		return m.paused()
	case meshv1alpha1.CanaryRestarting:
		return m.restarting()
	case meshv1alpha1.CanaryPromoting:
		if m.obs.Primary.Ready && m.obs.Primary.Revision == st.CanaryRevision {
			st.StableRevision = st.CanaryRevision
			m.setPhase(meshv1alpha1.CanaryFinalizing, corev1.EventTypeNormal, meshv1alpha1.ReasonPromoted,
				fmt.Sprintf("%s runs revision %s: sending all traffic back to it", m.primaryName(), st.CanaryRevision))
			return true
		}
	case meshv1alpha1.CanaryFinalizing:
		if m.applied(0) {
			m.setPhase(meshv1alpha1.CanarySucceeded, corev1.EventTypeNormal, meshv1alpha1.ReasonSucceeded,
				fmt.Sprintf("Revision %s is promoted and %s serves all traffic", st.CanaryRevision, m.primaryName()))
			return true
		}
	case meshv1alpha1.CanaryRollingBack:
		if m.applied(0) {
			// Failed keeps the cause (reason and message) of the rollback.
			st.Phase = meshv1alpha1.CanaryFailed
			m.warn(meshv1alpha1.ReasonRolledBack, fmt.Sprintf("%s serves all traffic again: %s", m.primaryName(), st.Message))
			return true
		}
	}
	return false
}

func (m *machine) initializing() bool {
	p, t := m.obs.Primary, m.obs.Target
	if !p.Found || !p.Ready || p.Revision != t.Revision {
		return false
	}
	m.st.StableRevision, m.st.CanaryRevision = t.Revision, ""
	m.resetStep(0)
	m.setPhase(meshv1alpha1.CanaryStable, corev1.EventTypeNormal, meshv1alpha1.ReasonInitialized,
		fmt.Sprintf("%s serves revision %s", m.primaryName(), t.Revision))
	return true
}

// idle handles Stable, Succeeded and Failed: a rollout starts on a new revision.
func (m *machine) idle() bool {
	st, rev := m.st, m.obs.Target.Revision
	switch {
	case rev == st.StableRevision:
		if st.Phase == meshv1alpha1.CanaryFailed {
			m.revert()
			return true
		}
		return false
	case st.Phase == meshv1alpha1.CanaryFailed && rev == st.CanaryRevision:
		if !m.retryRequested {
			return false
		}
		m.retryRequested = false
		m.startRollout(rev, meshv1alpha1.ReasonRetried, fmt.Sprintf(
			"retryToken %q: rolling out revision %s again from step 1/%d", m.st.LastRetryToken, rev, len(m.cfg.weights)))
		return true
	case m.spec.Abort:
		return false
	}
	m.retryRequested = false
	m.startRollout(rev, meshv1alpha1.ReasonNewRevision, fmt.Sprintf(
		"Rolling out revision %s in %d steps (%s%%), replacing %s", rev, len(m.cfg.weights), joinWeights(m.cfg.weights), st.StableRevision))
	return true
}

// targetChanged handles a target whose revision is not the canary's during a rollout.
func (m *machine) targetChanged() bool {
	st, rev := m.st, m.obs.Target.Revision
	if st.Phase == meshv1alpha1.CanaryPromoting && m.obs.Primary.Revision == st.CanaryRevision {
		// The primary's template is the canary's already: that revision is the stable one
		// now, whatever replaces it.
		st.StableRevision = st.CanaryRevision
	}
	switch {
	case rev == st.StableRevision:
		m.revert()
	case m.spec.Abort:
		if st.Phase == meshv1alpha1.CanaryRollingBack {
			return false
		}
		m.rollback(meshv1alpha1.ReasonAborted, fmt.Sprintf(
			"Rolling back: revision %s replaced %s while spec.abort is true", rev, st.CanaryRevision))
	case st.Phase == meshv1alpha1.CanaryRollingBack || st.Phase == meshv1alpha1.CanaryFinalizing:
		m.startRollout(rev, meshv1alpha1.ReasonNewRevision, fmt.Sprintf(
			"Rolling out revision %s in %d steps (%s%%), replacing %s", rev, len(m.cfg.weights), joinWeights(m.cfg.weights), st.StableRevision))
	default:
		m.supersede(rev)
	}
	return true
}

// supersede restarts the analysis for a new revision, bringing traffic back down the
// configured weights gradually (see the package documentation).
func (m *machine) supersede(rev string) {
	st, w := m.st, m.cfg.weights
	old, cur := st.CanaryRevision, desiredWeight(w, st)
	j := -1 // the step whose weight is the current one
	for k, x := range w {
		if x <= cur {
			j = k
		}
	}
	m.resetStep(0)
	st.CanaryRevision = rev
	if j <= 0 {
		if j == 0 {
			st.StepStartTime = m.stampTime() // the first step's weight holds
		}
		m.setPhase(meshv1alpha1.CanaryProgressing, corev1.EventTypeNormal, meshv1alpha1.ReasonSuperseded, fmt.Sprintf(
			"Revision %s replaced %s mid-rollout: restarting the analysis from step 1/%d", rev, old, len(w)))
		return
	}
	st.StepIndex, st.StepStartTime = int32(j-1), m.stampTime()
	m.setPhase(meshv1alpha1.CanaryRestarting, corev1.EventTypeNormal, meshv1alpha1.ReasonSuperseded, fmt.Sprintf(
		"Revision %s replaced %s mid-rollout at %d%%: stepping traffic back to %d%% one step per settle time, then restarting the analysis from step 1/%d",
		rev, old, cur, w[0], len(w)))
}

func (m *machine) revert() {
	old := m.st.CanaryRevision
	m.st.CanaryRevision = ""
	m.resetStep(0)
	m.setPhase(meshv1alpha1.CanaryStable, corev1.EventTypeNormal, meshv1alpha1.ReasonReverted, fmt.Sprintf(
		"Deployment %s is back at the stable revision %s: the rollout of %s ends and %s serves all traffic",
		m.spec.TargetRef.Name, m.st.StableRevision, old, m.primaryName()))
}

func (m *machine) startRollout(rev, reason, message string) {
	m.st.CanaryRevision = rev
	m.resetStep(0)
	m.setPhase(meshv1alpha1.CanaryProgressing, corev1.EventTypeNormal, reason, message)
}

func (m *machine) rollback(reason, message string) {
	m.st.NextCheckTime = nil
	m.setPhase(meshv1alpha1.CanaryRollingBack, corev1.EventTypeWarning, reason, message)
}

func (m *machine) promote(message string) {
	m.st.NextCheckTime = nil
	m.setPhase(meshv1alpha1.CanaryPromoting, corev1.EventTypeNormal, meshv1alpha1.ReasonPromoting, message)
}

// track moves a step through its timers (Progressing and AwaitingPromotion): start when
// the canary is ready, settle once the weight reads back, then record due checks.
func (m *machine) track() bool {
	st := m.st
	w := m.cfg.weights[st.StepIndex]
	switch {
	case st.StepStartTime == nil:
		// Raising the weight waits for the canary: no traffic to pods that cannot serve it.
		if !m.obs.Target.Ready {
			return false
		}
		st.StepStartTime = m.stampTime()
		return true
	case st.SettleStartTime == nil:
		if !m.applied(w) || !m.obs.Target.Ready {
			return false
		}
		st.SettleStartTime = m.stampTime()
		st.NextCheckTime = &metav1.Time{Time: ceilSecond(m.stamp.Add(m.cfg.settle))}
		return true
	case !m.applied(w):
		return m.drift(w)
	}
	return m.record()
}

// drift restarts the settle time when the VirtualService stops carrying the wanted weight
// (a hand edit): the controller applies the wanted weight again, and measurements wait
// until it has settled.
func (m *machine) drift(w int32) bool {
	m.st.SettleStartTime, m.st.NextCheckTime = nil, nil
	carried := "no weight"
	if m.obs.AppliedWeight != nil {
		carried = fmt.Sprintf("%d%%", *m.obs.AppliedWeight)
	}
	m.warn(meshv1alpha1.ReasonWeightDrift, fmt.Sprintf(
		"The VirtualService carries %s for the canary instead of %d%%: restoring it and restarting the settle time", carried, w))
	return true
}

// record takes the check the controller ran, when one is due.
func (m *machine) record() bool {
	st := m.st
	if m.obs.Check == nil || !m.checkDue || m.checked || !Due(m.spec, st, m.now) {
		return false
	}
	m.checked = true
	v := evaluate(&m.spec.Analysis, m.obs.Check)
	st.Checks = append(st.Checks, meshv1alpha1.CanaryCheck{
		Time:      metav1.Time{Time: m.stamp},
		Revision:  st.CanaryRevision,
		StepIndex: st.StepIndex,
		Weight:    desiredWeight(m.cfg.weights, st),
		Outcome:   v.outcome,
		Message:   truncate(v.summary, 512),
		Requests:  v.requests,
		Metrics:   v.metrics,
	})
	if n := len(st.Checks); n > maxChecks {
		st.Checks = append([]meshv1alpha1.CanaryCheck(nil), st.Checks[n-maxChecks:]...)
	}
	a := &st.Analysis
	switch v.outcome {
	case meshv1alpha1.CheckPassed:
		a.Passed++
		a.ConsecutiveNoData, a.ConsecutiveErrors = 0, 0
	case meshv1alpha1.CheckFailed:
		a.Failed++
		a.ConsecutiveNoData, a.ConsecutiveErrors = 0, 0
		m.warn(meshv1alpha1.ReasonCheckFailed, fmt.Sprintf("Check failed at %s: %s", m.position(), v.summary))
	case meshv1alpha1.CheckNoData:
		a.NoData++
		a.ConsecutiveNoData++
		a.ConsecutiveErrors = 0
	case meshv1alpha1.CheckError:
		// Neither data nor its absence: a run of checks without data goes on through it.
		a.Errors++
		a.ConsecutiveErrors++
	}
	st.LastCheckTime = m.stampTime()
	st.NextCheckTime = &metav1.Time{Time: ceilSecond(m.stamp.Add(m.cfg.interval))}
	return true
}

// judge applies the step's counters: failures roll back, no data acts per policy, and
// enough passed checks advance (when advance is set: not while awaiting promotion).
func (m *machine) judge(advance bool) bool {
	a, c := &m.st.Analysis, m.cfg
	switch {
	case a.Failed >= c.failureThreshold:
		m.rollback(meshv1alpha1.ReasonAnalysisFailed, fmt.Sprintf(
			"Rolling back revision %s at %s: %s failed, failureThreshold is %d (last: %s)",
			m.st.CanaryRevision, m.position(), countChecks(a.Failed), c.failureThreshold, m.lastMessage(meshv1alpha1.CheckFailed)))
		return true
	case a.ConsecutiveNoData >= c.noDataLimit:
		why := fmt.Sprintf("%s in a row found no data, noData.limit is %d (last: %s)",
			countChecks(a.ConsecutiveNoData), c.noDataLimit, m.lastMessage(meshv1alpha1.CheckNoData))
		switch c.noDataAction {
		case meshv1alpha1.NoDataRollback:
			m.rollback(meshv1alpha1.ReasonNoData, fmt.Sprintf("Rolling back revision %s at %s: %s", m.st.CanaryRevision, m.position(), why))
		case meshv1alpha1.NoDataPass:
			a.Passed++
			a.ConsecutiveNoData = 0
			m.event(corev1.EventTypeNormal, meshv1alpha1.ReasonNoData, fmt.Sprintf(
				"Counting a check as passed at %s: %s, and noData.action is Pass", m.position(), why))
		default:
			m.st.NextCheckTime = nil
			m.setPhase(meshv1alpha1.CanaryPaused, corev1.EventTypeWarning, meshv1alpha1.ReasonNoData, fmt.Sprintf(
				"Paused at %s: %s; set a new spec.retryToken to resume the step", m.position(), why))
		}
		return true
	case advance && a.Passed >= c.checksPerStep:
		m.advance()
		return true
	}
	return false
}

func (m *machine) advance() {
	st, w := m.st, m.cfg.weights
	i := int(st.StepIndex)
	if i+1 < len(w) {
		passed := m.position()
		m.resetStep(i + 1)
		st.Reason = meshv1alpha1.ReasonStepAdvanced
		st.Message = fmt.Sprintf("Passed %s; next: %s", passed, m.position())
		m.event(corev1.EventTypeNormal, st.Reason, st.Message)
		return
	}
	if m.cfg.gated {
		m.setPhase(meshv1alpha1.CanaryAwaitingPromotion, corev1.EventTypeNormal, meshv1alpha1.ReasonAwaitingPromotion, fmt.Sprintf(
			"Revision %s passed every step; it stays at %d%%, still checked, until spec.promoteToken changes", st.CanaryRevision, w[i]))
		return
	}
	m.promote(fmt.Sprintf("Revision %s passed every step: promoting it to %s", st.CanaryRevision, m.primaryName()))
}

func (m *machine) awaitPromotion() bool {
	switch {
	case !m.cfg.gated:
		m.promote(fmt.Sprintf("Promotion is Automatic now: promoting revision %s to %s", m.st.CanaryRevision, m.primaryName()))
	case m.promoteRequested:
		m.promoteRequested = false
		m.promote(fmt.Sprintf("promoteToken %q: promoting revision %s to %s", m.st.LastPromoteToken, m.st.CanaryRevision, m.primaryName()))
	default:
		return false
	}
	return true
}

func (m *machine) paused() bool {
	if !m.retryRequested {
		return false
	}
	m.retryRequested = false
	st := m.st
	st.SettleStartTime, st.NextCheckTime = nil, nil
	st.Analysis = meshv1alpha1.CanaryAnalysisStatus{}
	m.setPhase(meshv1alpha1.CanaryProgressing, corev1.EventTypeNormal, meshv1alpha1.ReasonRetried, fmt.Sprintf(
		"retryToken %q: resuming the analysis of revision %s at %s", st.LastRetryToken, st.CanaryRevision, m.position()))
	return true
}

// restarting steps the weight down one configured weight at a time: each once the
// previous one reads back, has settled and the primary is ready.
func (m *machine) restarting() bool {
	st, w := m.st, m.cfg.weights
	i := st.StepIndex
	switch {
	case st.SettleStartTime == nil:
		if !m.applied(w[i]) {
			return false
		}
		st.SettleStartTime = m.stampTime()
		return true
	case !m.applied(w[i]):
		return m.drift(w[i])
	case i == 0:
		// Settle again at the first step, once the new revision is ready, before checking it.
		st.SettleStartTime, st.NextCheckTime = nil, nil
		m.setPhase(meshv1alpha1.CanaryProgressing, corev1.EventTypeNormal, meshv1alpha1.ReasonRestarted, fmt.Sprintf(
			"Traffic is back at %d%%: restarting the analysis of revision %s from step 1/%d", w[0], st.CanaryRevision, len(w)))
		return true
	case !m.obs.Primary.Ready || m.now.Before(st.SettleStartTime.Add(m.cfg.settle)):
		return false
	}
	st.StepIndex--
	st.StepStartTime, st.SettleStartTime = m.stampTime(), nil
	st.Message = fmt.Sprintf("Stepping traffic back from %d%% to %d%% before revision %s restarts from step 1/%d",
		w[i], w[i-1], st.CanaryRevision, len(w))
	m.event(corev1.EventTypeNormal, meshv1alpha1.ReasonSuperseded, st.Message)
	return true
}

// actions turns the final status into what the controller must do.
func (m *machine) actions() Actions {
	st := m.st
	a := Actions{Weight: st.TargetWeight, ScaleTarget: ScaleUp, Events: m.events}
	if m.obs.Target.Found {
		switch st.Phase {
		case meshv1alpha1.CanaryInitializing:
			a.Promote = true
		case meshv1alpha1.CanaryPromoting:
			a.Promote = m.obs.Target.Revision == st.CanaryRevision
		}
	}
	switch st.Phase {
	case meshv1alpha1.CanaryStable, meshv1alpha1.CanarySucceeded, meshv1alpha1.CanaryFailed:
		if m.applied(0) {
			a.ScaleTarget = ScaleDown
		}
	case meshv1alpha1.CanaryProgressing, meshv1alpha1.CanaryAwaitingPromotion:
		if st.NextCheckTime != nil && !m.spec.Abort {
			a.RequeueAfter = max(st.NextCheckTime.Sub(m.now), minRequeue)
		}
	case meshv1alpha1.CanaryRestarting:
		if st.SettleStartTime != nil && st.StepIndex > 0 && m.obs.Primary.Ready {
			a.RequeueAfter = max(st.SettleStartTime.Add(m.cfg.settle).Sub(m.now), 0)
		}
	}
	return a
}

// resetStep moves to step i with fresh timers and counters.
func (m *machine) resetStep(i int) {
	st := m.st
	st.StepIndex = int32(i)
	st.StepStartTime, st.SettleStartTime, st.NextCheckTime = nil, nil, nil
	st.Analysis = meshv1alpha1.CanaryAnalysisStatus{}
}

func (m *machine) setPhase(p meshv1alpha1.CanaryPhase, eventType, reason, message string) {
	m.st.Phase, m.st.Reason, m.st.Message = p, reason, truncate(message, 1024)
	m.event(eventType, reason, m.st.Message)
}

func (m *machine) event(eventType, reason, message string) {
	m.events = append(m.events, Event{Type: eventType, Reason: reason, Message: message})
}

func (m *machine) warn(reason, message string) { m.event(corev1.EventTypeWarning, reason, message) }

// applied reports whether the VirtualService reads back weight w for the canary.
func (m *machine) applied(w int32) bool {
	return m.obs.AppliedWeight != nil && *m.obs.AppliedWeight == w
}

func (m *machine) stampTime() *metav1.Time { return &metav1.Time{Time: m.stamp} }

func (m *machine) primaryName() string { return m.spec.TargetRef.Name + "-primary" }

// position names the current step for messages: "step 2/4 (25%)".
func (m *machine) position() string {
	w := m.cfg.weights
	return fmt.Sprintf("step %d/%d (%d%%)", m.st.StepIndex+1, len(w), w[m.st.StepIndex])
}

// lastMessage is the message of the latest recorded check with the given outcome.
func (m *machine) lastMessage(outcome meshv1alpha1.CheckOutcome) string {
	for i := len(m.st.Checks) - 1; i >= 0; i-- {
		if c := m.st.Checks[i]; c.Outcome == outcome {
			return c.Message
		}
	}
	return "none recorded"
}

func clampStep(i int32, w []int32) int32 {
	return max(0, min(i, int32(len(w))-1))
}

// ceilSecond rounds t up to a whole second, in UTC.
func ceilSecond(t time.Time) time.Time {
	s := t.Truncate(time.Second)
	if s.Before(t) {
		s = s.Add(time.Second)
	}
	return s.UTC()
}

// countChecks says "1 check" or "n checks".
func countChecks(n int32) string {
	if n == 1 {
		return "1 check"
	}
	return fmt.Sprintf("%d checks", n)
}

func joinWeights(w []int32) string {
	s := make([]string, len(w))
	for i, x := range w {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}
