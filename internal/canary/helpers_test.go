package canary

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// Revisions of the target used across the tests.
const (
	revStable = "rev-1"
	revA      = "rev-a"
	revB      = "rev-b"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newSpec is a Canary with weights 10, 25, 50, 75, a 10s interval, a 5s settle time, two
// checks per step and the two built-in metrics.
func newSpec(mutate ...func(*meshv1alpha1.CanarySpec)) *meshv1alpha1.CanarySpec {
	s := &meshv1alpha1.CanarySpec{
		TargetRef: meshv1alpha1.CanaryTargetRef{Name: "web"},
		Service:   meshv1alpha1.CanaryService{Port: 80},
		Analysis: meshv1alpha1.CanaryAnalysis{
			Steps:            []int32{10, 25, 50, 75},
			Interval:         &metav1.Duration{Duration: 10 * time.Second},
			SettleTime:       &metav1.Duration{Duration: 5 * time.Second},
			ChecksPerStep:    2,
			FailureThreshold: 1,
			NoData:           &meshv1alpha1.NoDataPolicy{Limit: 3, Action: meshv1alpha1.NoDataPause},
			Metrics: []meshv1alpha1.CanaryMetric{
				{Name: meshv1alpha1.MetricRequestSuccessRate, ThresholdRange: meshv1alpha1.ThresholdRange{Min: ptr.To("99")}},
				{Name: meshv1alpha1.MetricRequestDuration, ThresholdRange: meshv1alpha1.ThresholdRange{Max: ptr.To("500")}},
			},
			Prometheus: meshv1alpha1.PrometheusSource{Address: "http://prometheus:9090"},
		},
		Promotion: meshv1alpha1.PromotionAutomatic,
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func gated(s *meshv1alpha1.CanarySpec) { s.Promotion = meshv1alpha1.PromotionGated }

// Checks the controller could pass in.
func healthy() *Check {
	return &Check{Requests: Measured(500), Metrics: map[string]Result{
		meshv1alpha1.MetricRequestSuccessRate: Measured(99.9),
		meshv1alpha1.MetricRequestDuration:    Measured(120),
	}}
}

func failing() *Check {
	return &Check{Requests: Measured(500), Metrics: map[string]Result{
		meshv1alpha1.MetricRequestSuccessRate: Measured(92.5),
		meshv1alpha1.MetricRequestDuration:    Measured(120),
	}}
}

func empty() *Check { return &Check{Metrics: map[string]Result{}} }

func broken() *Check {
	return &Check{Requests: Measured(500), Metrics: map[string]Result{
		meshv1alpha1.MetricRequestSuccessRate: QueryFailed(errors.New("connection refused")),
		meshv1alpha1.MetricRequestDuration:    Measured(120),
	}}
}

// world simulates the controller and the cluster around the machine: it observes,
// runs a check when one is due, calls Step, stores the status as the API server would
// (a JSON round trip) and carries out the actions: the VirtualService carries the written
// weight from the next pass on, promotion copies the template to the primary, and the
// target is ready while it is scaled up and rolled out.
type world struct {
	t    *testing.T
	spec *meshv1alpha1.CanarySpec
	st   *meshv1alpha1.CanaryStatus
	now  time.Time

	targetRev       string
	targetRolledOut bool
	targetScaledUp  bool
	primaryRev      string
	primaryReady    bool
	// slowPrimary keeps the primary unready after a template change until the test says.
	slowPrimary bool
	vs          *int32

	// checks answers each due check; nil runs none.
	checks func() *Check

	last   Actions
	events []Event
	// weights are the distinct weights written to the VirtualService, in order.
	weights []int32
	// checksRun counts the checks the controller ran (queried Prometheus for).
	checksRun int
}

func newWorld(t *testing.T, spec *meshv1alpha1.CanarySpec) *world {
	return &world{t: t, spec: spec, st: &meshv1alpha1.CanaryStatus{}, now: t0,
		targetRev: revStable, targetRolledOut: true, targetScaledUp: true, checks: healthy}
}

// stableWorld is a world whose Canary has initialized: primary at revStable, weight 0.
func stableWorld(t *testing.T, spec *meshv1alpha1.CanarySpec) *world {
	w := newWorld(t, spec)
	w.converge()
	NewWithT(t).Expect(w.st.Phase).To(Equal(meshv1alpha1.CanaryStable))
	w.events = nil
	return w
}

func (w *world) observe() Observations {
	return Observations{
		Generation:    1,
		Target:        Workload{Found: true, Revision: w.targetRev, Ready: w.targetRolledOut && w.targetScaledUp},
		Primary:       Workload{Found: w.primaryRev != "", Revision: w.primaryRev, Ready: w.primaryRev != "" && w.primaryReady},
		AppliedWeight: w.vs,
	}
}

// pass is one reconcile at w.now.
func (w *world) pass() Actions {
	w.t.Helper()
	obs := w.observe()
	if Due(w.spec, w.st, w.now) && w.checks != nil {
		obs.Check = w.checks()
		w.checksRun++
	}
	st, a := Step(w.spec, w.st, obs, w.now)
	w.st = roundTrip(w.t, st)
	w.last = a
	w.events = append(w.events, a.Events...)
	if w.vs == nil || *w.vs != a.Weight {
		w.weights = append(w.weights, a.Weight)
	}
	w.vs = ptr.To(a.Weight)
	w.targetScaledUp = a.ScaleTarget == ScaleUp
	if a.Promote && w.primaryRev != w.targetRev {
		w.primaryRev = w.targetRev
		w.primaryReady = !w.slowPrimary
	}
	return a
}

// converge runs passes at w.now until the state stops changing, as watch events on the
// objects the controller writes would.
func (w *world) converge() {
	w.t.Helper()
	for range 20 {
		before := w.st.DeepCopy()
		vs, up, prim := w.vs, w.targetScaledUp, w.primaryRev
		w.pass()
		if equality.Semantic.DeepEqual(before, w.st) && equalWeights(vs, w.vs) && up == w.targetScaledUp && prim == w.primaryRev {
			return
		}
	}
	w.t.Fatalf("no fixpoint after 20 passes: %+v", w.st)
}

// advance moves the clock by d and converges, as a RequeueAfter or a watch event would.
func (w *world) advance(d time.Duration) {
	w.t.Helper()
	w.now = w.now.Add(d)
	w.converge()
}

// untilDue moves the clock to the next check and converges (running it).
func (w *world) untilDue() {
	w.t.Helper()
	if w.st.NextCheckTime == nil {
		w.t.Fatalf("no check scheduled in phase %s", w.st.Phase)
	}
	w.now = w.st.NextCheckTime.Time
	w.converge()
}

// newRevision changes the target's pod template; Kubernetes rolls the target out at once.
func (w *world) newRevision(rev string) {
	w.targetRev = rev
}

func (w *world) reasons() []string {
	r := make([]string, len(w.events))
	for i, e := range w.events {
		r[i] = e.Reason
	}
	return r
}

func equalWeights(a, b *int32) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// roundTrip stores and reads back a status as the API server does (JSON; metav1.Time
// keeps whole seconds).
func roundTrip(t *testing.T, st *meshv1alpha1.CanaryStatus) *meshv1alpha1.CanaryStatus {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var out meshv1alpha1.CanaryStatus
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func condition(st *meshv1alpha1.CanaryStatus, t string) metav1.Condition {
	for _, c := range st.Conditions {
		if c.Type == t {
			return c
		}
	}
	return metav1.Condition{}
}
