package canary

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// conditions sets Ready, Progressing, Stalled and Reconciling from the final status and
// observations. Messages come from the status (set at transitions) so they change only when
// it does.
func (m *machine) conditions() {
	st := m.st
	set := func(t string, ok bool, reason, message string) {
		status := metav1.ConditionFalse
		if ok {
			status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: t, Status: status, Reason: reason, Message: truncate(message, 32768),
			ObservedGeneration: m.obs.Generation, LastTransitionTime: metav1.Time{Time: m.stamp},
		})
	}
	// The status now describes this generation, whatever its verdict: kstatus reads a stale
	// observedGeneration as "not seen yet", which would hide a Stalled one.
	st.ObservedGeneration = m.obs.Generation
	// kstatus' Reconciling, from Ready and Stalled once they are set: True while the operator
	// still has work to do (InProgress), never together with Stalled (Failed), since kstatus
	// takes whichever of the two comes first in the list.
	defer func() {
		ready := meta.FindStatusCondition(st.Conditions, meshv1alpha1.ConditionReady)
		stalled := meta.FindStatusCondition(st.Conditions, meshv1alpha1.ConditionStalled)
		switch {
		case stalled.Status == metav1.ConditionTrue:
			set(meshv1alpha1.ConditionReconciling, false, stalled.Reason, "Waiting for a change by the user: see Stalled")
		case ready.Status == metav1.ConditionTrue:
			set(meshv1alpha1.ConditionReconciling, false, meshv1alpha1.ReasonUpToDate, "Nothing to do until the target's pod template changes")
		default:
			set(meshv1alpha1.ConditionReconciling, true, ready.Reason, ready.Message)
		}
	}()

	if len(m.cfg.weights) == 0 {
		msg := "spec.analysis sets no weights: set steps, or stepWeight and maxWeight"
		set(meshv1alpha1.ConditionReady, false, meshv1alpha1.ReasonInvalidSpec, msg)
		set(meshv1alpha1.ConditionProgressing, false, meshv1alpha1.ReasonInvalidSpec, msg)
		set(meshv1alpha1.ConditionStalled, true, meshv1alpha1.ReasonInvalidSpec, msg)
		return
	}
	if !m.obs.Target.Found {
		msg := fmt.Sprintf("Deployment %s does not exist; the Canary keeps its state and routing until it does", m.spec.TargetRef.Name)
		set(meshv1alpha1.ConditionReady, false, meshv1alpha1.ReasonTargetNotFound, msg)
		set(meshv1alpha1.ConditionProgressing, false, meshv1alpha1.ReasonTargetNotFound, msg)
		set(meshv1alpha1.ConditionStalled, true, meshv1alpha1.ReasonTargetNotFound, msg)
		return
	}

	reason := st.Reason
	if reason == "" {
		reason = string(st.Phase)
	}
	idle := st.Phase == meshv1alpha1.CanaryStable || st.Phase == meshv1alpha1.CanarySucceeded
	// A new revision held back by spec.abort.
	held := (idle || st.Phase == meshv1alpha1.CanaryFailed) && m.spec.Abort &&
		m.obs.Target.Revision != st.StableRevision && m.obs.Target.Revision != st.CanaryRevision
	heldMsg := fmt.Sprintf("spec.abort is true: revision %s of Deployment %s is not rolled out until it is cleared",
		m.obs.Target.Revision, m.spec.TargetRef.Name)

	switch {
	case idle && held:
		set(meshv1alpha1.ConditionReady, false, meshv1alpha1.ReasonAborted, heldMsg)
	case idle && !m.obs.Primary.Ready:
		set(meshv1alpha1.ConditionReady, false, meshv1alpha1.ReasonPrimaryNotReady, fmt.Sprintf("%s is not ready", m.primaryName()))
	case idle && !m.applied(0):
		set(meshv1alpha1.ConditionReady, false, meshv1alpha1.ReasonRoutingPending, fmt.Sprintf(
			"Waiting for the VirtualService to send all traffic to %s", m.primaryName()))
	default:
		set(meshv1alpha1.ConditionReady, idle, reason, st.Message)
	}

	switch st.Phase {
	case meshv1alpha1.CanaryStable, meshv1alpha1.CanarySucceeded, meshv1alpha1.CanaryFailed, meshv1alpha1.CanaryPaused:
		set(meshv1alpha1.ConditionProgressing, false, reason, st.Message)
	default:
		set(meshv1alpha1.ConditionProgressing, true, reason, st.Message)
	}

	analysing := st.Phase == meshv1alpha1.CanaryProgressing || st.Phase == meshv1alpha1.CanaryAwaitingPromotion
	switch {
	case st.Phase == meshv1alpha1.CanaryFailed && held:
		set(meshv1alpha1.ConditionStalled, true, meshv1alpha1.ReasonAborted, heldMsg)
	case st.Phase == meshv1alpha1.CanaryFailed:
		advice := "Set a new spec.retryToken to retry it, or change the pod template."
		if m.spec.Abort {
			advice = "Clear spec.abort, then set a new spec.retryToken or change the pod template."
		}
		set(meshv1alpha1.ConditionStalled, true, reason, st.Message+". "+advice)
	case st.Phase == meshv1alpha1.CanaryPaused:
		set(meshv1alpha1.ConditionStalled, true, reason, st.Message)
	case analysing && st.Analysis.ConsecutiveErrors >= stalledAfterErrors:
		set(meshv1alpha1.ConditionStalled, true, meshv1alpha1.ReasonMetricQueryFailed, fmt.Sprintf(
			"The last %d checks could not query Prometheus (last: %s); the step holds until queries succeed",
			st.Analysis.ConsecutiveErrors, m.lastMessage(meshv1alpha1.CheckError)))
	case idle && held:
		set(meshv1alpha1.ConditionStalled, true, meshv1alpha1.ReasonAborted, heldMsg)
	default:
		set(meshv1alpha1.ConditionStalled, false, meshv1alpha1.ReasonNoProblems, "")
	}
}
