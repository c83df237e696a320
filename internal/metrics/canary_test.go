package metrics

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

func canary(name string, st meshv1alpha1.CanaryStatus) *meshv1alpha1.Canary {
	return &meshv1alpha1.Canary{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}, Status: st}
}

// phaseSeries is every phase's series of the Canary shop/<name>, 1 for current.
func phaseSeries(name, current string) map[string]float64 {
	out := map[string]float64{}
	for _, p := range canaryPhases {
		out[`meshplane_canary_phase{canary="`+name+`",namespace="shop",phase="`+p+`"}`] = boolValue(p == current)
	}
	return out
}

func outcomeSeries(name, last string) map[string]float64 {
	out := map[string]float64{}
	for _, o := range checkOutcomes {
		out[`meshplane_canary_last_check_outcome{canary="`+name+`",namespace="shop",outcome="`+o+`"}`] = boolValue(o == last)
	}
	return out
}

func merge(ms ...map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

var checkTime = metav1.NewTime(time.Unix(1800000000, 0))

func check(o meshv1alpha1.CheckOutcome) meshv1alpha1.CanaryCheck {
	return meshv1alpha1.CanaryCheck{Time: checkTime, Outcome: o}
}

// progressingCanary is at its second step, its VirtualService carrying 25%; the last of
// several checks (oldest first) failed. Every status field the metrics read is set.
func progressingCanary() *meshv1alpha1.Canary {
	return canary("web", meshv1alpha1.CanaryStatus{
		Phase: meshv1alpha1.CanaryProgressing, Reason: meshv1alpha1.ReasonCheckFailed,
		StepIndex: 1, TargetWeight: 25, AppliedWeight: ptr.To[int32](25),
		Checks:        []meshv1alpha1.CanaryCheck{check(meshv1alpha1.CheckPassed), check(meshv1alpha1.CheckNoData), check(meshv1alpha1.CheckFailed)},
		LastCheckTime: &checkTime,
	})
}

func TestCanaryMetrics(t *testing.T) {
	tests := []struct {
		name   string
		canary *meshv1alpha1.Canary
		want   map[string]float64
	}{{
		// Created a moment ago: no status yet, so no phase is current and no check ran.
		name:   "new",
		canary: canary("web", meshv1alpha1.CanaryStatus{}),
		want: merge(phaseSeries("web", ""), outcomeSeries("web", ""), map[string]float64{
			`meshplane_canary_target_weight{canary="web",namespace="shop"}`: 0,
		}),
	}, {
		name:   "progressing",
		canary: progressingCanary(),
		want: merge(phaseSeries("web", "Progressing"), outcomeSeries("web", "Failed"), map[string]float64{
			`meshplane_canary_status_reason{canary="web",namespace="shop",reason="CheckFailed"}`: 1,
			`meshplane_canary_target_weight{canary="web",namespace="shop"}`:                      25,
			`meshplane_canary_applied_weight{canary="web",namespace="shop"}`:                     25,
			`meshplane_canary_last_check_timestamp_seconds{canary="web",namespace="shop"}`:       1800000000,
		}),
	}, {
		name: "rolled back",
		canary: canary("web", meshv1alpha1.CanaryStatus{
			Phase: meshv1alpha1.CanaryFailed, Reason: meshv1alpha1.ReasonAnalysisFailed,
			TargetWeight: 0, AppliedWeight: ptr.To[int32](0),
			Checks:        []meshv1alpha1.CanaryCheck{check(meshv1alpha1.CheckFailed)},
			LastCheckTime: &checkTime,
		}),
		want: merge(phaseSeries("web", "Failed"), outcomeSeries("web", "Failed"), map[string]float64{
			`meshplane_canary_status_reason{canary="web",namespace="shop",reason="AnalysisFailed"}`: 1,
			`meshplane_canary_target_weight{canary="web",namespace="shop"}`:                         0,
			`meshplane_canary_applied_weight{canary="web",namespace="shop"}`:                        0,
			`meshplane_canary_last_check_timestamp_seconds{canary="web",namespace="shop"}`:          1800000000,
		}),
	}, {
		// A phase this build does not know (a newer operator wrote the status) still shows.
		name:   "unknown phase",
		canary: canary("web", meshv1alpha1.CanaryStatus{Phase: "Exploding", TargetWeight: 10}),
		want: merge(phaseSeries("web", ""), outcomeSeries("web", ""), map[string]float64{
			`meshplane_canary_phase{canary="web",namespace="shop",phase="Exploding"}`: 1,
			`meshplane_canary_target_weight{canary="web",namespace="shop"}`:           10,
		}),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got := series(t, newCollector(fakeReader(t, tt.canary)))
			g.Expect(withPrefix(got, "meshplane_canary_")).To(Equal(tt.want))
		})
	}
}

// Each Canary has exactly one current phase: of its phase series, one is 1 in every phase.
func TestCanaryHasOnePhase(t *testing.T) {
	for _, p := range canaryPhases {
		g := NewWithT(t)
		got := series(t, newCollector(fakeReader(t, canary("web", meshv1alpha1.CanaryStatus{Phase: meshv1alpha1.CanaryPhase(p)}))))
		phases := withPrefix(got, "meshplane_canary_phase")
		g.Expect(phases).To(HaveLen(len(canaryPhases)), p)
		sum := 0.0
		for _, v := range phases {
			sum += v
		}
		g.Expect(sum).To(Equal(1.0), p)
	}
}
