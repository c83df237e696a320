package canary

import (
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// facts are what one reconcile observed and did, beyond what the state machine decides;
// computeStatus derives the controller's conditions from them alone.
type facts struct {
	// targetMissing: the Deployment of spec.targetRef does not exist.
	targetMissing bool
	// targetName and apexName name them in messages.
	targetName, apexName string
	// invalidTarget says why the target cannot be rolled out as it is.
	invalidTarget string
	// conflicts are objects the Canary needs that exist and are someone else's.
	conflicts []string
	// applyErrors are failed reads and writes; the pass is retried.
	applyErrors []string
	// externalApex: the Service named after the target is the user's; it is left alone.
	externalApex bool
	// primaryMissing says why the primary could not be created again.
	primaryMissing string
	// writes counts the objects written in this pass.
	writes int
}

func (f *facts) healthy() bool {
	return !f.targetMissing && f.invalidTarget == "" && len(f.conflicts) == 0 && len(f.applyErrors) == 0
}

// computeStatus completes the state machine's status: the Reconciled condition,
// observedGeneration, Ready and Stalled when the pass could not apply what the machine
// asked for, and Reconciling to match them. prev are the conditions before the pass: a
// condition whose status did not change keeps its lastTransitionTime. Messages are
// deterministic, so an unchanged world yields an unchanged status and no write.
func computeStatus(prev []metav1.Condition, st *meshv1alpha1.CanaryStatus, generation int64, f facts, now time.Time) {
	set := func(t string, s metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: generation,
			LastTransitionTime: metav1.NewTime(now.Truncate(time.Second)),
		})
	}
	problem := func(reason, msg string, stalled bool) {
		set(meshv1alpha1.ConditionReconciled, metav1.ConditionFalse, reason, msg)
		set(meshv1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
		if stalled {
			set(meshv1alpha1.ConditionStalled, metav1.ConditionTrue, reason, msg)
		}
	}
	switch {
	case f.targetMissing:
		// The state machine reports it in Ready and Stalled.
		set(meshv1alpha1.ConditionReconciled, metav1.ConditionFalse, meshv1alpha1.ReasonTargetNotFound,
			"Deployment "+f.targetName+" does not exist: nothing is applied until it does")
	case f.invalidTarget != "":
		problem(meshv1alpha1.ReasonInvalidTarget, f.invalidTarget, true)
	case len(f.conflicts) > 0:
		problem(meshv1alpha1.ReasonResourceConflict, joinSorted(f.conflicts)+
			"; delete or rename the existing object(s): a Canary creates and owns them, and never takes over another's", true)
	case len(f.applyErrors) > 0:
		problem(meshv1alpha1.ReasonApplyFailed, joinSorted(f.applyErrors), false)
	case f.primaryMissing != "":
		problem(meshv1alpha1.ReasonPrimaryNotReady, f.primaryMissing, false)
	case f.externalApex:
		set(meshv1alpha1.ConditionReconciled, metav1.ConditionTrue, meshv1alpha1.ReasonServiceNotManaged,
			"Service "+f.apexName+" was not created by meshplane and is left as it is: the VirtualService routes its host for clients in the mesh, "+
				"while clients outside the mesh reach the pods it selects, not "+f.apexName+"-primary")
	default:
		set(meshv1alpha1.ConditionReconciled, metav1.ConditionTrue, meshv1alpha1.ReasonApplied,
			"The primary Deployment, the Services, the DestinationRules and the VirtualService are applied")
	}
	// The conditions describe this generation whatever the verdict (kstatus reads a stale
	// observedGeneration as "not seen yet", which would hide a Stalled Canary), and
	// Reconciling follows the final Ready and Stalled: never True together with Stalled.
	st.ObservedGeneration = generation
	ready := meta.FindStatusCondition(st.Conditions, meshv1alpha1.ConditionReady)
	stalled := meta.FindStatusCondition(st.Conditions, meshv1alpha1.ConditionStalled)
	switch {
	case stalled != nil && stalled.Status == metav1.ConditionTrue:
		set(meshv1alpha1.ConditionReconciling, metav1.ConditionFalse, stalled.Reason, "Waiting for a change by the user: see Stalled")
	case ready != nil && ready.Status == metav1.ConditionTrue:
		set(meshv1alpha1.ConditionReconciling, metav1.ConditionFalse, meshv1alpha1.ReasonUpToDate, "Nothing to do until the target's pod template changes")
	case ready != nil:
		set(meshv1alpha1.ConditionReconciling, metav1.ConditionTrue, ready.Reason, ready.Message)
	}
	keepTransitionTimes(prev, st.Conditions)
}

// deletingStatus reports a deletion waiting for the target.
func deletingStatus(prev []metav1.Condition, st *meshv1alpha1.CanaryStatus, generation int64, msg string, now time.Time) {
	for _, t := range []string{meshv1alpha1.ConditionReady, meshv1alpha1.ConditionProgressing} {
		s := metav1.ConditionFalse
		if t == meshv1alpha1.ConditionProgressing {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: t, Status: s, Reason: meshv1alpha1.ReasonDeleting, Message: msg, ObservedGeneration: generation,
			LastTransitionTime: metav1.NewTime(now.Truncate(time.Second)),
		})
	}
	keepTransitionTimes(prev, st.Conditions)
}

// keepTransitionTimes restores the lastTransitionTime of conditions whose status is the
// same as before the pass: the state machine and the controller may each set a condition
// in one pass, and only a change of status is a transition.
func keepTransitionTimes(prev, conds []metav1.Condition) {
	for i := range conds {
		if p := meta.FindStatusCondition(prev, conds[i].Type); p != nil && p.Status == conds[i].Status {
			conds[i].LastTransitionTime = p.LastTransitionTime
		}
	}
}

func joinSorted(items []string) string {
	s := append([]string(nil), items...)
	sort.Strings(s)
	return strings.Join(s, "; ")
}

type transition struct {
	eventType, reason, note string
}

// reconciledEvents announces the controller's own problems when they appear (the state
// machine announces its transitions itself).
func reconciledEvents(before, after []metav1.Condition) []transition {
	a := meta.FindStatusCondition(after, meshv1alpha1.ConditionReconciled)
	if a == nil {
		return nil
	}
	if b := meta.FindStatusCondition(before, meshv1alpha1.ConditionReconciled); b != nil && b.Status == a.Status && b.Reason == a.Reason {
		return nil
	}
	switch {
	case a.Status == metav1.ConditionFalse, a.Reason == meshv1alpha1.ReasonServiceNotManaged:
		return []transition{{corev1.EventTypeWarning, a.Reason, a.Message}}
	}
	return nil
}
