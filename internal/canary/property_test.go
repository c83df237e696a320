package canary

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"testing/quick"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// randomSpec draws a valid spec (one CEL admits).
func randomSpec(rng *rand.Rand) *meshv1alpha1.CanarySpec {
	s := newSpec()
	a := &s.Analysis
	if rng.IntN(2) == 0 {
		a.Steps = nil
		for w := int32(0); ; {
			w += 1 + rng.Int32N(40)
			if w > 100 || len(a.Steps) == 6 {
				break
			}
			a.Steps = append(a.Steps, w)
		}
		if len(a.Steps) == 0 {
			a.Steps = []int32{50}
		}
	} else {
		a.Steps = nil
		step := 1 + rng.Int32N(60)
		a.StepWeight, a.MaxWeight = ptr.To(step), ptr.To(step+rng.Int32N(101-step))
	}
	a.Interval = &metav1.Duration{Duration: time.Duration(10+rng.IntN(50)) * time.Second}
	switch rng.IntN(3) {
	case 0:
		a.SettleTime = nil // one interval
	case 1:
		a.SettleTime = &metav1.Duration{}
	default:
		a.SettleTime = &metav1.Duration{Duration: time.Duration(rng.IntN(31)) * time.Second}
	}
	a.ChecksPerStep = 1 + rng.Int32N(3)
	a.FailureThreshold = 1 + rng.Int32N(3)
	a.MinRequestCount = []int32{0, 0, 50}[rng.IntN(3)]
	a.NoData = &meshv1alpha1.NoDataPolicy{
		Limit:  1 + rng.Int32N(4),
		Action: []meshv1alpha1.NoDataAction{meshv1alpha1.NoDataPause, meshv1alpha1.NoDataRollback, meshv1alpha1.NoDataPass}[rng.IntN(3)],
	}
	if rng.IntN(2) == 0 {
		s.Promotion = meshv1alpha1.PromotionGated
	}
	return s
}

// randomCheck draws a check: mostly healthy when health is high.
func randomCheck(rng *rand.Rand, health float64) *Check {
	draw := func(good, bad float64) Result {
		switch p := rng.Float64(); {
		case p < 0.08:
			return NoData()
		case p < 0.14:
			return QueryFailed(errors.New("prometheus: 503"))
		case p < 0.14+0.86*health:
			return Measured(good)
		default:
			return Measured(bad)
		}
	}
	return &Check{
		Requests: draw(500, 3),
		Metrics: map[string]Result{
			meshv1alpha1.MetricRequestSuccessRate: draw(99.9, 80),
			meshv1alpha1.MetricRequestDuration:    draw(100, 2000),
		},
	}
}

// sim is a cluster the machine drives, disturbed at random: new revisions and reverts,
// pods that are slow to become ready, hand edits of the VirtualService, the target
// vanishing, user tokens and abort, operator restarts (long gaps, status round trips).
type sim struct {
	rng        *rand.Rand
	spec       *meshv1alpha1.CanarySpec
	st         *meshv1alpha1.CanaryStatus
	now        time.Time
	health     float64
	targetRev  string
	targetUp   bool // rolled out
	scaledUp   bool
	targetGone bool
	primaryRev string
	primaryUp  bool
	vs         *int32
	revs       int
	tokens     int
}

func newSim(seed uint64) *sim {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	return &sim{
		rng: rng, spec: randomSpec(rng), st: &meshv1alpha1.CanaryStatus{}, now: t0,
		health: rng.Float64(), targetRev: revStable, targetUp: true, scaledUp: true,
	}
}

// disturb changes the world between two passes.
func (s *sim) disturb() {
	r := s.rng.Float64
	switch {
	case r() < 0.03:
		s.revs++
		s.targetRev = fmt.Sprintf("rev-%d", s.revs)
		s.targetUp = s.rng.IntN(2) == 0
	case r() < 0.005 && s.st.StableRevision != "":
		s.targetRev = s.st.StableRevision
	}
	if !s.targetUp && r() < 0.4 {
		s.targetUp = true
	}
	if r() < 0.02 {
		s.targetUp = false
	}
	s.targetGone = r() < 0.01
	if !s.primaryUp && r() < 0.4 {
		s.primaryUp = true
	}
	if r() < 0.02 {
		s.primaryUp = false
	}
	switch {
	case r() < 0.03:
		s.vs = ptr.To(s.rng.Int32N(101)) // a hand edit
	case r() < 0.005:
		s.vs = nil // deleted
	}
	if r() < 0.01 {
		s.spec.Abort = !s.spec.Abort
	}
	if r() < 0.03 {
		s.tokens++
		s.spec.PromoteToken = fmt.Sprint("p", s.tokens)
	}
	if r() < 0.03 {
		s.tokens++
		s.spec.RetryToken = fmt.Sprint("r", s.tokens)
	}
	if r() < 0.005 {
		s.spec.Promotion = map[meshv1alpha1.PromotionMode]meshv1alpha1.PromotionMode{
			meshv1alpha1.PromotionGated: meshv1alpha1.PromotionAutomatic, meshv1alpha1.PromotionAutomatic: meshv1alpha1.PromotionGated, "": meshv1alpha1.PromotionGated,
		}[s.spec.Promotion]
	}
	switch p := r(); {
	case p < 0.3 && s.st.NextCheckTime != nil:
		s.now = s.st.NextCheckTime.Time
	case p < 0.5:
		// no time passes: a watch event
	case p < 0.97:
		s.now = s.now.Add(time.Duration(s.rng.IntN(30_000)) * time.Millisecond)
	default:
		s.now = s.now.Add(time.Duration(s.rng.IntN(600)) * time.Second) // the operator was down
	}
}

func (s *sim) observe() Observations {
	return Observations{
		Generation:    1,
		Target:        Workload{Found: !s.targetGone, Revision: s.targetRev, Ready: !s.targetGone && s.targetUp && s.scaledUp},
		Primary:       Workload{Found: s.primaryRev != "", Revision: s.primaryRev, Ready: s.primaryRev != "" && s.primaryUp},
		AppliedWeight: s.vs,
	}
}

func (s *sim) apply(a Actions) {
	if s.rng.Float64() < 0.9 { // the write may not have landed before the next pass
		s.vs = ptr.To(a.Weight)
	}
	s.scaledUp = a.ScaleTarget == ScaleUp
	if a.Promote && !s.targetGone && s.primaryRev != s.targetRev {
		s.primaryRev, s.primaryUp = s.targetRev, s.rng.IntN(3) == 0
	}
}

// TestPropertiesRandomWalk drives the machine through random worlds and checks, at every
// step: the step index stays in range; the weight comes from the spec and the step, rises
// only towards a ready canary, and falls only on rollback, supersede, revert or after
// promotion; every phase change emits an event; checks are recorded only when due, after
// settling, at the intended weight, one at a time; only a revision that passed every step
// is promoted; the target is scaled down only without traffic; and a second call with the
// same inputs (or after a status round trip) changes nothing.
func TestPropertiesRandomWalk(t *testing.T) {
	const walks, steps = 300, 300
	phases := map[meshv1alpha1.CanaryPhase]int{}
	for seed := range uint64(walks) {
		s := newSim(seed)
		w := Weights(&s.spec.Analysis)
		allowed := append([]int32{0, 100}, w...)
		for i := range steps {
			fail := func(format string, args ...any) {
				t.Helper()
				t.Fatalf("seed %d step %d (%s -> %s): %s\nspec: %+v\nstatus: %+v", seed, i, s.st.Phase, "", fmt.Sprintf(format, args...), s.spec.Analysis, s.st)
			}
			s.disturb()
			before := s.st
			obs := s.observe()
			due := Due(s.spec, before, s.now)
			if due && s.rng.Float64() < 0.9 || s.rng.Float64() < 0.05 { // sometimes a check nobody asked for
				obs.Check = randomCheck(s.rng, s.health)
			}
			prevWeight := DesiredWeight(s.spec, before)

			st, a := Step(s.spec, before, obs, s.now)

			if st.StepIndex < 0 || int(st.StepIndex) >= len(w) {
				fail("step index %d out of range for %d weights", st.StepIndex, len(w))
			}
			if a.Weight != st.TargetWeight || a.Weight != DesiredWeight(s.spec, st) || !slices.Contains(allowed, a.Weight) {
				fail("weight %d: target %d, desired %d, allowed %v", a.Weight, st.TargetWeight, DesiredWeight(s.spec, st), allowed)
			}
			if a.Weight > prevWeight && st.Phase != meshv1alpha1.CanaryInitializing && !obs.Target.Ready {
				fail("weight raised %d -> %d towards a canary that is not ready", prevWeight, a.Weight)
			}
			if a.Weight < prevWeight && before.Phase != meshv1alpha1.CanaryInitializing && st.CanaryRevision == before.CanaryRevision {
				switch st.Phase {
				case meshv1alpha1.CanaryRollingBack, meshv1alpha1.CanaryFailed, meshv1alpha1.CanaryRestarting,
					meshv1alpha1.CanaryFinalizing, meshv1alpha1.CanarySucceeded:
				default:
					fail("weight fell %d -> %d in %s without rollback or supersede", prevWeight, a.Weight, st.Phase)
				}
			}
			if st.Phase != before.Phase && len(a.Events) == 0 {
				fail("phase %s -> %s without an event", before.Phase, st.Phase)
			}
			if recorded := len(st.Checks) != len(before.Checks) || !sameTime(st.LastCheckTime, before.LastCheckTime); recorded {
				last := st.Checks[len(st.Checks)-1]
				switch {
				case !due || obs.Check == nil:
					fail("check recorded while not due")
				case before.SettleStartTime == nil || s.now.Before(before.SettleStartTime.Add(settleOf(s.spec))):
					fail("check recorded before settling")
				case obs.AppliedWeight == nil || *obs.AppliedWeight != last.Weight || last.Weight != prevWeight:
					fail("check recorded at weight %d, VirtualService at %v, wanted %d", last.Weight, obs.AppliedWeight, prevWeight)
				case len(st.Checks) > len(before.Checks)+1:
					fail("more than one check recorded")
				}
			}
			if st.NextCheckTime != nil && st.SettleStartTime != nil && st.NextCheckTime.Before(ptr.To(metav1.NewTime(st.SettleStartTime.Add(settleOf(s.spec))))) {
				fail("next check %s before the settle time ends", st.NextCheckTime)
			}
			if a.Promote && st.Phase == meshv1alpha1.CanaryPromoting {
				passed := before.Phase == meshv1alpha1.CanaryAwaitingPromotion || before.Phase == meshv1alpha1.CanaryPromoting ||
					before.Phase == meshv1alpha1.CanaryProgressing && int(before.StepIndex) == len(w)-1
				if !passed || before.CanaryRevision != st.CanaryRevision || obs.Target.Revision != st.CanaryRevision {
					fail("promoting %s (target %s) from %s step %d", st.CanaryRevision, obs.Target.Revision, before.Phase, before.StepIndex)
				}
			}
			if a.Promote && st.Phase != meshv1alpha1.CanaryPromoting && st.Phase != meshv1alpha1.CanaryInitializing {
				fail("promote in %s", st.Phase)
			}
			if a.ScaleTarget == ScaleDown && (obs.AppliedWeight == nil || *obs.AppliedWeight != 0) {
				fail("target scaled down while the VirtualService sends it %v", obs.AppliedWeight)
			}
			if len(st.Conditions) != 4 {
				fail("conditions %v", st.Conditions)
			}

			again, a2 := Step(s.spec, st, obs, s.now)
			if !reflect.DeepEqual(again, st) || len(a2.Events) != 0 || a2.Weight != a.Weight ||
				a2.Promote != a.Promote || a2.ScaleTarget != a.ScaleTarget || a2.RequeueAfter != a.RequeueAfter {
				fail("not idempotent: second call changed %+v, events %v", again, a2.Events)
			}
			// Now and then the status is stored and read back, as across an operator
			// restart (JSON, as the API server keeps it): what is read back decides the same.
			stored := st
			if s.rng.IntN(8) == 0 {
				stored = roundTrip(t, st)
				if reread, _ := Step(s.spec, stored, obs, s.now); !equality.Semantic.DeepEqual(reread, stored) {
					fail("a status round trip changes the outcome")
				}
			}
			s.st = stored
			s.apply(a)
			phases[st.Phase]++
		}
	}
	// The walk must reach every phase, or it proves little.
	for _, p := range []meshv1alpha1.CanaryPhase{
		meshv1alpha1.CanaryInitializing, meshv1alpha1.CanaryStable, meshv1alpha1.CanaryProgressing, meshv1alpha1.CanaryRestarting,
		meshv1alpha1.CanaryAwaitingPromotion, meshv1alpha1.CanaryPromoting, meshv1alpha1.CanaryFinalizing, meshv1alpha1.CanarySucceeded,
		meshv1alpha1.CanaryRollingBack, meshv1alpha1.CanaryFailed, meshv1alpha1.CanaryPaused,
	} {
		if phases[p] == 0 {
			t.Errorf("no walk reached phase %s: %v", p, phases)
		}
	}
	t.Logf("passes per phase: %v", phases)
}

// TestPropertyHealthyRolloutsComplete: with healthy checks and a cooperative cluster, any
// valid spec takes a new revision to Succeeded (Automatic) or AwaitingPromotion (Gated)
// with exactly checksPerStep checks per step.
func TestPropertyHealthyRolloutsComplete(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 1))
		spec := randomSpec(rng)
		spec.Analysis.MinRequestCount = 0
		w := stableWorld(t, spec)
		w.newRevision(revA)
		w.converge()
		for range 1000 {
			if w.st.Phase != meshv1alpha1.CanaryProgressing {
				break
			}
			w.untilDue()
		}
		want := meshv1alpha1.CanarySucceeded
		if spec.Promotion == meshv1alpha1.PromotionGated {
			want = meshv1alpha1.CanaryAwaitingPromotion
		}
		steps := len(Weights(&spec.Analysis))
		if w.st.Phase != want || w.checksRun != steps*int(spec.Analysis.ChecksPerStep) {
			t.Fatalf("seed %d: phase %s after %d checks, want %s after %d (%d steps)", seed, w.st.Phase, w.checksRun, want, steps*int(spec.Analysis.ChecksPerStep), steps)
		}
	}
}

// TestPropertyWeights: stepWeight and maxWeight give strictly increasing weights from
// stepWeight to maxWeight, within 1..100.
func TestPropertyWeights(t *testing.T) {
	f := func(step, maxWeight uint8) bool {
		st, mx := int32(step%100)+1, int32(maxWeight%100)+1
		if st > mx {
			st, mx = mx, st
		}
		w := Weights(&meshv1alpha1.CanaryAnalysis{StepWeight: &st, MaxWeight: &mx})
		if len(w) == 0 || w[0] != st || w[len(w)-1] != mx {
			return false
		}
		for i := 1; i < len(w); i++ {
			if w[i] <= w[i-1] || w[i]-w[i-1] > st {
				return false
			}
		}
		return true
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 2000}); err != nil {
		t.Fatal(err)
	}
}

func sameTime(a, b *metav1.Time) bool { return (a == nil) == (b == nil) && (a == nil || a.Equal(b)) }

func settleOf(spec *meshv1alpha1.CanarySpec) time.Duration { return resolve(spec).settle }
