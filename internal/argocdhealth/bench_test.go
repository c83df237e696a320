package argocdhealth

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// BenchmarkCheck is the cost of one health evaluation as Argo CD pays it on every change of
// a MeshControlPlane or Canary: a fresh Lua state, the object converted, the script run
// (Argo CD allows a second).
func BenchmarkCheck(b *testing.B) {
	cond := func(t string, s metav1.ConditionStatus) metav1.Condition {
		return metav1.Condition{Type: t, Status: s, Reason: "Reason", Message: "A sentence about " + t, ObservedGeneration: 1}
	}
	conditions := []metav1.Condition{cond("Ready", "True"), cond("Reconciled", "True"), cond("Progressing", "False"),
		cond("Stalled", "False"), cond("Reconciling", "False")}
	for _, tc := range []struct {
		kind string
		obj  runtime.Object
	}{
		{"MeshControlPlane", &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "default", Generation: 1},
			Status: meshv1alpha1.MeshControlPlaneStatus{ObservedGeneration: 1, Conditions: conditions}}},
		{"Canary", &meshv1alpha1.Canary{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Generation: 1},
			Status: meshv1alpha1.CanaryStatus{ObservedGeneration: 1, Phase: meshv1alpha1.CanaryStable, Conditions: conditions}}},
	} {
		b.Run(tc.kind, func(b *testing.B) {
			for b.Loop() {
				if h, err := Check(tc.obj); err != nil || h.Status != Healthy {
					b.Fatalf("%v %v", h, err)
				}
			}
		})
	}
}
