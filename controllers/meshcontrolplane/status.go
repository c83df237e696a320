package meshcontrolplane

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// facts are what one reconcile observed; computeStatus derives the status from them alone.
type facts struct {
	invalidSpec string
	conflicts   []string
	applyErrors []string
	// writes counts the objects applied or deleted in this pass.
	writes     int
	components []componentFacts
	gateways   []gatewayFacts
	revision   string
	version    string
	// injectedPods counts the pods running this revision's sidecar.
	injectedPods int32
	ca           caFacts
}

type componentFacts struct {
	name, namespace, component string
	exists, ready              bool
	replicas, readyReplicas    int32
}

type gatewayFacts struct {
	componentFacts
	gatewayType meshv1alpha1.GatewayType
	// address is the load balancer's ingress point or the cluster IP ("" while a load
	// balancer is pending, which does not make the gateway unready).
	address string
}

// requeueAfter is the time-based wait after a clean pass: until the CA material enters its
// expiry warning (nothing else would wake the operator then), or zero.
func (f *facts) requeueAfter(now time.Time) time.Duration {
	if f.ca.nextWarning.IsZero() {
		return 0
	}
	// A second late rather than early: Validate warns from the instant on.
	return max(f.ca.nextWarning.Sub(now), 0) + time.Second
}

// computeStatus sets status from facts. Messages are deterministic (sorted, no timestamps or
// generated names) so an unchanged world yields an unchanged status and no write.
func computeStatus(st *meshv1alpha1.MeshControlPlaneStatus, generation int64, f facts) {
	set := func(t string, s metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: generation,
		})
	}
	healthy := f.invalidSpec == "" && len(f.conflicts) == 0 && len(f.applyErrors) == 0 && f.ca.reason == ""
	waitingForCA := f.ca.reason == meshv1alpha1.ReasonCertificateNotReady

	// istiod's readiness is the revision's; every gateway must be ready too for Ready.
	components := append([]componentFacts(nil), f.components...)
	istiodReady := len(f.components) > 0
	for _, c := range f.components {
		istiodReady = istiodReady && c.ready
	}
	for _, g := range f.gateways {
		components = append(components, g.componentFacts)
	}
	var notReady []string
	for _, c := range components {
		if !c.ready {
			notReady = append(notReady, c.name)
		}
	}
	sort.Strings(notReady)

	switch {
	case f.invalidSpec != "":
		set(meshv1alpha1.ConditionReconciled, metav1.ConditionFalse, meshv1alpha1.ReasonInvalidSpec, f.invalidSpec)
		set(meshv1alpha1.ConditionStalled, metav1.ConditionTrue, meshv1alpha1.ReasonInvalidSpec, f.invalidSpec)
	case len(f.conflicts) > 0:
		msg := joinSorted(f.conflicts) + "; delete or rename the existing object(s), or choose another revision or namespace"
		set(meshv1alpha1.ConditionReconciled, metav1.ConditionFalse, meshv1alpha1.ReasonResourceConflict, msg)
		set(meshv1alpha1.ConditionStalled, metav1.ConditionTrue, meshv1alpha1.ReasonResourceConflict, msg)
	case f.ca.reason != "" && len(f.applyErrors) == 0:
		set(meshv1alpha1.ConditionReconciled, metav1.ConditionFalse, f.ca.reason, f.ca.message)
		if waitingForCA {
			set(meshv1alpha1.ConditionStalled, metav1.ConditionFalse, meshv1alpha1.ReasonNoProblems, "Waiting for cert-manager")
		} else {
			set(meshv1alpha1.ConditionStalled, metav1.ConditionTrue, f.ca.reason, f.ca.message)
		}
	case len(f.applyErrors) > 0:
		set(meshv1alpha1.ConditionReconciled, metav1.ConditionFalse, meshv1alpha1.ReasonApplyFailed, joinSorted(f.applyErrors))
		set(meshv1alpha1.ConditionStalled, metav1.ConditionFalse, meshv1alpha1.ReasonNoProblems, "The operator is retrying")
	default:
		set(meshv1alpha1.ConditionReconciled, metav1.ConditionTrue, meshv1alpha1.ReasonApplied, "All objects of the control plane are applied")
		set(meshv1alpha1.ConditionStalled, metav1.ConditionFalse, meshv1alpha1.ReasonNoProblems, "No problems")
	}

	switch {
	case waitingForCA && len(f.conflicts) == 0 && len(f.applyErrors) == 0:
		set(meshv1alpha1.ConditionProgressing, metav1.ConditionTrue, f.ca.reason, f.ca.message)
	case !healthy:
		set(meshv1alpha1.ConditionProgressing, metav1.ConditionFalse, meshv1alpha1.ReasonReconcileError, "The rollout cannot proceed until the problem reported in Reconciled is fixed")
	case len(notReady) > 0:
		set(meshv1alpha1.ConditionProgressing, metav1.ConditionTrue, meshv1alpha1.ReasonRollingOut, "Rolling out: "+strings.Join(notReady, ", "))
	default:
		set(meshv1alpha1.ConditionProgressing, metav1.ConditionFalse, meshv1alpha1.ReasonRolledOut, "All components run the current spec")
	}

	switch {
	case healthy && len(notReady) == 0 && len(f.components) > 0:
		set(meshv1alpha1.ConditionReady, metav1.ConditionTrue, meshv1alpha1.ReasonAvailable, "The control plane is available")
	case healthy:
		set(meshv1alpha1.ConditionReady, metav1.ConditionFalse, meshv1alpha1.ReasonComponentsNotReady, "Not ready yet: "+strings.Join(notReady, ", "))
	default:
		reason := meta.FindStatusCondition(st.Conditions, meshv1alpha1.ConditionReconciled).Reason
		set(meshv1alpha1.ConditionReady, metav1.ConditionFalse, reason, "See the Reconciled condition")
	}

	setReconciling(st, generation, f)

	// The conditions now describe this generation, whatever their verdict: kstatus reads a
	// stale observedGeneration as "not seen yet", which would hide a Stalled generation.
	st.ObservedGeneration = generation
	if f.invalidSpec != "" {
		return // nothing was observed; keep the last observation
	}
	st.Components = st.Components[:0]
	for _, c := range components {
		st.Components = append(st.Components, meshv1alpha1.ComponentStatus{
			Name: c.name, Component: c.component, Namespace: c.namespace,
			Ready: c.ready, Replicas: c.replicas, ReadyReplicas: c.readyReplicas,
		})
	}
	if len(st.Components) == 0 {
		st.Components = nil
	}
	st.Gateways = nil
	for _, g := range f.gateways {
		st.Gateways = append(st.Gateways, meshv1alpha1.GatewayStatus{
			Name: g.name, Namespace: g.namespace, Type: g.gatewayType,
			Ready: g.ready, Replicas: g.replicas, ReadyReplicas: g.readyReplicas, Address: g.address,
		})
	}
	st.Revisions = []meshv1alpha1.RevisionStatus{{
		Name: f.revision, Version: f.version, Ready: healthy && istiodReady, InjectedPods: f.injectedPods,
	}}
	if f.ca.status != nil {
		// Otherwise keep the last valid material's: istiod still runs with it.
		st.CertificateAuthority = f.ca.status
	}
	switch {
	case f.ca.status != nil && f.ca.status.Mode == meshv1alpha1.CAModeSelfSigned, f.ca.reason != "":
		// istiod's own CA needs no attention; unusable material is reported in Reconciled.
		meta.RemoveStatusCondition(&st.Conditions, meshv1alpha1.ConditionCAWarning)
	case len(f.ca.warnings) > 0:
		set(meshv1alpha1.ConditionCAWarning, metav1.ConditionTrue, meshv1alpha1.ReasonNeedsAttention, strings.Join(f.ca.warnings, "; "))
	case f.ca.warnings != nil:
		set(meshv1alpha1.ConditionCAWarning, metav1.ConditionFalse, meshv1alpha1.ReasonNoWarnings, "The CA material needs no attention")
	}
}

// setReconciling sets kstatus' Reconciling from the other conditions: True while the operator
// still works towards this generation, False once it is done or Stalled (never both True, so
// kstatus reads InProgress or Failed whatever the order of the conditions).
func setReconciling(st *meshv1alpha1.MeshControlPlaneStatus, generation int64, f facts) {
	set := func(s metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: meshv1alpha1.ConditionReconciling, Status: s, Reason: reason, Message: msg, ObservedGeneration: generation,
		})
	}
	stalled := meta.FindStatusCondition(st.Conditions, meshv1alpha1.ConditionStalled)
	ready := meta.FindStatusCondition(st.Conditions, meshv1alpha1.ConditionReady)
	switch {
	case stalled.Status == metav1.ConditionTrue:
		set(metav1.ConditionFalse, stalled.Reason, "Stopped until the problem reported in Stalled is fixed")
	case ready.Status == metav1.ConditionTrue:
		set(metav1.ConditionFalse, meshv1alpha1.ReasonUpToDate, "Nothing left to do for this generation")
	case len(f.applyErrors) > 0:
		set(metav1.ConditionTrue, meshv1alpha1.ReasonApplyFailed, "Retrying: "+joinSorted(f.applyErrors))
	case f.ca.reason == meshv1alpha1.ReasonCertificateNotReady:
		set(metav1.ConditionTrue, f.ca.reason, f.ca.message)
	default:
		// Rolling out: Ready says what it waits for.
		set(metav1.ConditionTrue, ready.Reason, ready.Message)
	}
}

func joinSorted(items []string) string {
	s := append([]string(nil), items...)
	sort.Strings(s)
	return strings.Join(s, "; ")
}

type transition struct {
	eventType, reason, action, note string
}

// transitionEvents returns an Event for each condition change a user wants to see.
func transitionEvents(before, after []metav1.Condition) []transition {
	var out []transition
	changed := func(t string) (*metav1.Condition, bool) {
		a := meta.FindStatusCondition(after, t)
		b := meta.FindStatusCondition(before, t)
		if a == nil {
			return nil, false
		}
		return a, b == nil || b.Status != a.Status || b.Reason != a.Reason
	}
	if c, ok := changed(meshv1alpha1.ConditionReady); ok {
		if c.Status == metav1.ConditionTrue {
			out = append(out, transition{corev1.EventTypeNormal, "Ready", "Reconcile", c.Message})
		} else if b := meta.FindStatusCondition(before, meshv1alpha1.ConditionReady); b != nil && b.Status == metav1.ConditionTrue {
			out = append(out, transition{corev1.EventTypeWarning, "NotReady", "Reconcile", fmt.Sprintf("%s: %s", c.Reason, c.Message)})
		}
	}
	if c, ok := changed(meshv1alpha1.ConditionStalled); ok && c.Status == metav1.ConditionTrue {
		out = append(out, transition{corev1.EventTypeWarning, c.Reason, "Reconcile", c.Message})
	}
	if c, ok := changed(meshv1alpha1.ConditionProgressing); ok && c.Status == metav1.ConditionTrue {
		out = append(out, transition{corev1.EventTypeNormal, c.Reason, "Rollout", c.Message})
	}
	if c, ok := changed(meshv1alpha1.ConditionCAWarning); ok && c.Status == metav1.ConditionTrue {
		out = append(out, transition{corev1.EventTypeWarning, "CertificateAuthorityWarning", "Reconcile", c.Message})
	}
	return out
}
