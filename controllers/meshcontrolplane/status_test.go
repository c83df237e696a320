package meshcontrolplane

import (
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

func conditions(st meshv1alpha1.MeshControlPlaneStatus) map[string]string {
	out := map[string]string{}
	for _, c := range st.Conditions {
		out[c.Type] = string(c.Status) + "/" + c.Reason
	}
	return out
}

func TestComputeStatus(t *testing.T) {
	ready := componentFacts{name: "istiod", namespace: "istio-system", component: "Pilot", exists: true, ready: true, replicas: 1, readyReplicas: 1}
	rolling := ready
	rolling.ready, rolling.readyReplicas = false, 0

	tests := []struct {
		name     string
		facts    facts
		want     map[string]string
		wantGen  int64
		wantComp []meshv1alpha1.ComponentStatus
	}{
		{
			name:  "available",
			facts: facts{components: []componentFacts{ready}, revision: "default", version: "1.31.1"},
			want: map[string]string{
				"Ready": "True/Available", "Reconciled": "True/Applied",
				"Progressing": "False/RolledOut", "Stalled": "False/NoProblems",
			},
			wantGen: 7,
			wantComp: []meshv1alpha1.ComponentStatus{{Name: "istiod", Component: "Pilot", Namespace: "istio-system",
				Ready: true, Replicas: 1, ReadyReplicas: 1}},
		},
		{
			name:  "rolling out",
			facts: facts{components: []componentFacts{rolling}, revision: "default", version: "1.31.1"},
			want: map[string]string{
				"Ready": "False/ComponentsNotReady", "Reconciled": "True/Applied",
				"Progressing": "True/RollingOut", "Stalled": "False/NoProblems",
			},
			wantGen:  7,
			wantComp: []meshv1alpha1.ComponentStatus{{Name: "istiod", Component: "Pilot", Namespace: "istio-system", Replicas: 1}},
		},
		{
			name:  "conflict stalls and does not claim the generation",
			facts: facts{conflicts: []string{"b conflict", "a conflict"}, components: []componentFacts{ready}},
			want: map[string]string{
				"Ready": "False/ResourceConflict", "Reconciled": "False/ResourceConflict",
				"Progressing": "False/ReconcileError", "Stalled": "True/ResourceConflict",
			},
			wantGen: 3,
			wantComp: []meshv1alpha1.ComponentStatus{{Name: "istiod", Component: "Pilot", Namespace: "istio-system",
				Ready: true, Replicas: 1, ReadyReplicas: 1}},
		},
		{
			name:  "apply error is retried, not stalled",
			facts: facts{applyErrors: []string{"applying Service istio-system/istiod: boom"}},
			want: map[string]string{
				"Ready": "False/ApplyFailed", "Reconciled": "False/ApplyFailed",
				"Progressing": "False/ReconcileError", "Stalled": "False/NoProblems",
			},
			wantGen: 3,
		},
		{
			name:  "invalid spec stalls and keeps the last observation",
			facts: facts{invalidSpec: `Istio version "1.2.3" is not supported`},
			want: map[string]string{
				"Ready": "False/InvalidSpec", "Reconciled": "False/InvalidSpec",
				"Progressing": "False/ReconcileError", "Stalled": "True/InvalidSpec",
			},
			wantGen:  3,
			wantComp: []meshv1alpha1.ComponentStatus{{Name: "previous"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			st := meshv1alpha1.MeshControlPlaneStatus{ObservedGeneration: 3, Components: []meshv1alpha1.ComponentStatus{{Name: "previous"}}}
			computeStatus(&st, 7, tt.facts)
			g.Expect(conditions(st)).To(Equal(tt.want))
			g.Expect(st.ObservedGeneration).To(Equal(tt.wantGen))
			g.Expect(st.Components).To(Equal(tt.wantComp))
			for _, c := range st.Conditions {
				g.Expect(c.ObservedGeneration).To(BeEquivalentTo(7))
				g.Expect(c.Message).NotTo(BeEmpty())
			}
		})
	}
}

func TestComputeStatusIsStable(t *testing.T) {
	g := NewWithT(t)
	f := facts{conflicts: []string{"ConfigMap x/istio …", "Service x/istiod …"}}
	first := meshv1alpha1.MeshControlPlaneStatus{}
	computeStatus(&first, 1, f)
	// Same facts in another order, computed again on the result: nothing changes, so the
	// controller sends no status write.
	f.conflicts = []string{"Service x/istiod …", "ConfigMap x/istio …"}
	second := *first.DeepCopy()
	computeStatus(&second, 1, f)
	g.Expect(second).To(Equal(first))
	g.Expect(meta.FindStatusCondition(first.Conditions, "Stalled").Message).To(HavePrefix("ConfigMap x/istio …; Service x/istiod …"))
}

func TestTransitionEvents(t *testing.T) {
	g := NewWithT(t)
	cond := func(typ string, s metav1.ConditionStatus, reason string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: reason}
	}
	notReady := []metav1.Condition{cond("Ready", "False", "ComponentsNotReady"), cond("Progressing", "True", "RollingOut"), cond("Stalled", "False", "NoProblems")}
	ready := []metav1.Condition{cond("Ready", "True", "Available"), cond("Progressing", "False", "RolledOut"), cond("Stalled", "False", "NoProblems")}
	conflict := []metav1.Condition{cond("Ready", "False", "ResourceConflict"), cond("Progressing", "False", "ReconcileError"), cond("Stalled", "True", "ResourceConflict")}

	reasons := func(evs []transition) []string {
		var out []string
		for _, e := range evs {
			out = append(out, e.eventType+"/"+e.reason)
		}
		return out
	}
	g.Expect(reasons(transitionEvents(nil, notReady))).To(Equal([]string{"Normal/RollingOut"}))
	g.Expect(reasons(transitionEvents(notReady, ready))).To(Equal([]string{"Normal/Ready"}))
	g.Expect(reasons(transitionEvents(ready, ready))).To(BeEmpty())
	g.Expect(reasons(transitionEvents(ready, conflict))).To(Equal([]string{"Warning/NotReady", "Warning/ResourceConflict"}))
	g.Expect(reasons(transitionEvents(conflict, conflict))).To(BeEmpty())
}
