package canary

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// BenchmarkStep measures one state-machine pass: the cost the controller pays per
// reconcile on top of its reads and writes.
//
//   - steady: a Stable canary with nothing to do (most reconciles);
//   - check: a canary at a step recording a due check, with a full history of checks;
//   - advance: a due check that completes the step and moves to the next weight.
func BenchmarkStep(b *testing.B) {
	spec := newSpec()
	history := make([]meshv1alpha1.CanaryCheck, maxChecks)
	for i := range history {
		history[i] = meshv1alpha1.CanaryCheck{Time: metav1.Time{Time: t0.Add(time.Duration(i-maxChecks) * 10 * time.Second)},
			Revision: revA, StepIndex: 1, Weight: 25, Outcome: meshv1alpha1.CheckPassed, Requests: "500",
			Metrics: []meshv1alpha1.CanaryMetricResult{
				{Name: meshv1alpha1.MetricRequestSuccessRate, Value: "99.9", Outcome: meshv1alpha1.CheckPassed},
				{Name: meshv1alpha1.MetricRequestDuration, Value: "120", Outcome: meshv1alpha1.CheckPassed},
			}}
	}
	stable, _ := Step(spec, at(meshv1alpha1.CanaryStable, 0), observed(revStable, 0), t0)
	checking := at(meshv1alpha1.CanaryProgressing, 1, settledDue, func(st *meshv1alpha1.CanaryStatus) { st.Checks = history })
	checking, _ = Step(spec, checking, observed(revA, 25), t0.Add(-time.Second)) // conditions in place
	advancing := checking.DeepCopy()
	advancing.Analysis.Passed = 1

	for _, bc := range []struct {
		name   string
		status *meshv1alpha1.CanaryStatus
		obs    Observations
	}{
		{"steady", stable, observed(revStable, 0)},
		{"check", checking, observed(revA, 25, withCheck(healthy()))},
		{"advance", advancing, observed(revA, 25, withCheck(healthy()))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Step(spec, bc.status, bc.obs, t0)
			}
		})
	}
}
