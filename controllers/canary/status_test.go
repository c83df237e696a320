package canary

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

var (
	earlier = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	now     = earlier.Add(time.Hour)
)

// machineStatus is what the state machine leaves for a Stable, Ready canary.
func machineStatus() meshv1alpha1.CanaryStatus {
	st := meshv1alpha1.CanaryStatus{Phase: meshv1alpha1.CanaryStable, ObservedGeneration: 1}
	for _, c := range []metav1.Condition{
		{Type: meshv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: meshv1alpha1.ReasonInitialized, Message: "web-primary serves revision a"},
		{Type: meshv1alpha1.ConditionProgressing, Status: metav1.ConditionFalse, Reason: meshv1alpha1.ReasonInitialized},
		{Type: meshv1alpha1.ConditionStalled, Status: metav1.ConditionFalse, Reason: meshv1alpha1.ReasonNoProblems},
	} {
		c.ObservedGeneration, c.LastTransitionTime = 2, metav1.NewTime(now)
		meta.SetStatusCondition(&st.Conditions, c)
	}
	return st
}

func TestComputeStatus(t *testing.T) {
	tests := []struct {
		name  string
		facts facts
		// want are the conditions' status and reason, and whether observedGeneration moves.
		want        map[string][2]string
		wantMessage map[string]string
		observed    bool
	}{
		{
			name:  "a clean pass",
			facts: facts{},
			want: map[string][2]string{
				meshv1alpha1.ConditionReconciled: {"True", meshv1alpha1.ReasonApplied},
				meshv1alpha1.ConditionReady:      {"True", meshv1alpha1.ReasonInitialized},
				meshv1alpha1.ConditionStalled:    {"False", meshv1alpha1.ReasonNoProblems},
			},
			observed: true,
		},
		{
			name:  "the user's apex Service is reported, not a problem",
			facts: facts{externalApex: true, apexName: "web"},
			want: map[string][2]string{
				meshv1alpha1.ConditionReconciled: {"True", meshv1alpha1.ReasonServiceNotManaged},
				meshv1alpha1.ConditionReady:      {"True", meshv1alpha1.ReasonInitialized},
			},
			wantMessage: map[string]string{meshv1alpha1.ConditionReconciled: "Service web was not created by meshplane"},
			observed:    true,
		},
		{
			name:  "a foreign object stalls the Canary and shows in Ready",
			facts: facts{conflicts: []string{"VirtualService shop/web already exists and is not managed by this resource"}},
			want: map[string][2]string{
				meshv1alpha1.ConditionReconciled: {"False", meshv1alpha1.ReasonResourceConflict},
				meshv1alpha1.ConditionReady:      {"False", meshv1alpha1.ReasonResourceConflict},
				meshv1alpha1.ConditionStalled:    {"True", meshv1alpha1.ReasonResourceConflict},
			},
			wantMessage: map[string]string{meshv1alpha1.ConditionStalled: "VirtualService shop/web already exists"},
		},
		{
			name:  "a failed write is retried: not stalled",
			facts: facts{applyErrors: []string{"applying Service shop/web-canary: the server is unavailable"}},
			want: map[string][2]string{
				meshv1alpha1.ConditionReconciled: {"False", meshv1alpha1.ReasonApplyFailed},
				meshv1alpha1.ConditionReady:      {"False", meshv1alpha1.ReasonApplyFailed},
				meshv1alpha1.ConditionStalled:    {"False", meshv1alpha1.ReasonNoProblems},
			},
		},
		{
			name:  "an unusable target",
			facts: facts{invalidTarget: `Service name "web.v2" is invalid`},
			want: map[string][2]string{
				meshv1alpha1.ConditionReconciled: {"False", meshv1alpha1.ReasonInvalidTarget},
				meshv1alpha1.ConditionReady:      {"False", meshv1alpha1.ReasonInvalidTarget},
				meshv1alpha1.ConditionStalled:    {"True", meshv1alpha1.ReasonInvalidTarget},
			},
		},
		{
			name:  "a missing target: the state machine's Ready and Stalled stand",
			facts: facts{targetMissing: true, targetName: "web"},
			want: map[string][2]string{
				meshv1alpha1.ConditionReconciled: {"False", meshv1alpha1.ReasonTargetNotFound},
				meshv1alpha1.ConditionReady:      {"True", meshv1alpha1.ReasonInitialized},
			},
			wantMessage: map[string]string{meshv1alpha1.ConditionReconciled: "Deployment web does not exist"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			st := machineStatus()
			computeStatus(nil, &st, 2, tt.facts, now)
			for typ, want := range tt.want {
				c := meta.FindStatusCondition(st.Conditions, typ)
				g.Expect(c).NotTo(BeNil(), typ)
				g.Expect([2]string{string(c.Status), c.Reason}).To(Equal(want), typ)
				g.Expect(c.ObservedGeneration).To(BeEquivalentTo(2))
			}
			for typ, msg := range tt.wantMessage {
				g.Expect(meta.FindStatusCondition(st.Conditions, typ).Message).To(ContainSubstring(msg))
			}
			g.Expect(st.ObservedGeneration).To(BeEquivalentTo(2), "the conditions describe this generation, whatever the verdict")
			reconciling := meta.FindStatusCondition(st.Conditions, meshv1alpha1.ConditionReconciling)
			g.Expect(reconciling).NotTo(BeNil())
			if meta.IsStatusConditionTrue(st.Conditions, meshv1alpha1.ConditionStalled) {
				g.Expect(reconciling.Status).To(Equal(metav1.ConditionFalse), "never Reconciling and Stalled together")
			}
			if tt.observed {
				g.Expect(meta.IsStatusConditionTrue(st.Conditions, meshv1alpha1.ConditionReady)).To(Equal(reconciling.Status == metav1.ConditionFalse))
			}
		})
	}
}

// A problem the controller reports every pass over the state machine's Ready=True must not
// move lastTransitionTime each pass: the status would change, and be written, every time.
func TestComputeStatusKeepsTransitionTimes(t *testing.T) {
	g := NewWithT(t)
	f := facts{conflicts: []string{"Service shop/web-canary already exists and is not managed by this resource"}}
	first := machineStatus()
	computeStatus(nil, &first, 2, f, earlier)
	ready := meta.FindStatusCondition(first.Conditions, meshv1alpha1.ConditionReady)
	g.Expect(ready.LastTransitionTime.Time).To(Equal(earlier))

	// The next pass: the machine sets Ready=True again (stamped with its own time), the
	// controller sets it False again.
	next := machineStatus()
	computeStatus(first.Conditions, &next, 2, f, now)
	g.Expect(next.Conditions).To(Equal(first.Conditions))

	// Once fixed, Ready goes True: a transition.
	fixed := machineStatus()
	computeStatus(next.Conditions, &fixed, 2, facts{}, now)
	g.Expect(meta.FindStatusCondition(fixed.Conditions, meshv1alpha1.ConditionReady).LastTransitionTime.Time).To(Equal(now))
	g.Expect(meta.FindStatusCondition(fixed.Conditions, meshv1alpha1.ConditionStalled).LastTransitionTime.Time).To(Equal(now))
}

func TestReconciledEvents(t *testing.T) {
	cond := func(status metav1.ConditionStatus, reason string) []metav1.Condition {
		return []metav1.Condition{{Type: meshv1alpha1.ConditionReconciled, Status: status, Reason: reason, Message: "m"}}
	}
	tests := []struct {
		name          string
		before, after []metav1.Condition
		want          []transition
	}{
		{"first clean pass", nil, cond(metav1.ConditionTrue, meshv1alpha1.ReasonApplied), nil},
		{"a conflict appears", cond(metav1.ConditionTrue, meshv1alpha1.ReasonApplied), cond(metav1.ConditionFalse, meshv1alpha1.ReasonResourceConflict),
			[]transition{{corev1.EventTypeWarning, meshv1alpha1.ReasonResourceConflict, "m"}}},
		{"the conflict persists", cond(metav1.ConditionFalse, meshv1alpha1.ReasonResourceConflict), cond(metav1.ConditionFalse, meshv1alpha1.ReasonResourceConflict), nil},
		{"the user's Service is found", nil, cond(metav1.ConditionTrue, meshv1alpha1.ReasonServiceNotManaged),
			[]transition{{corev1.EventTypeWarning, meshv1alpha1.ReasonServiceNotManaged, "m"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(reconciledEvents(tt.before, tt.after)).To(Equal(tt.want))
		})
	}
}

func TestWriteTrackerSeesEveryReplacedVersionAsStale(t *testing.T) {
	g := NewWithT(t)
	c := &meshv1alpha1.Canary{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}
	key := client.ObjectKeyFromObject(c)
	var w writeTracker
	at := func(rv string) bool { c.ResourceVersion = rv; return w.stale(c) }

	g.Expect(at("5")).To(BeFalse(), "nothing written")
	w.wrote(key, "5") // the finalizer: 5 -> 6
	w.wrote(key, "6") // the status: 6 -> 7
	g.Expect(at("5")).To(BeTrue(), "older than both writes")
	g.Expect(at("6")).To(BeTrue())
	g.Expect(at("7")).To(BeFalse(), "caught up")
	g.Expect(at("6")).To(BeFalse(), "forgotten once caught up")
	w.wrote(key, "9")
	g.Expect(at("12")).To(BeFalse(), "someone else wrote after us: newer, not stale")
}
