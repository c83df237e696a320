package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/prom"
	objects "github.com/meshplane/meshplane/internal/render/canary"
	"github.com/meshplane/meshplane/internal/testenv"
	"github.com/meshplane/meshplane/test/exporter"
)

const (
	// canaryInterval is every Canary's analysis interval here: the API's floor, and the
	// interval the issue asks about.
	canaryInterval = 10 * time.Second
	// canaryPhaseTimeout, plus a second per Canary, bounds one wait for a phase of a whole
	// batch of Canaries (Stable, the end of a rollout): kwok brings the pods up, the
	// operator applies the objects.
	canaryPhaseTimeout = 2 * time.Minute
)

var (
	healthyTraffic = exporter.Traffic{RequestsPerSecond: 20, P99Latency: 40 * time.Millisecond}
	// brokenTraffic is every request answered 5xx: the success rate is 0%.
	brokenTraffic = exporter.Traffic{RequestsPerSecond: 20, ErrorRatio: 1, P99Latency: 40 * time.Millisecond}
)

var (
	promOnce   sync.Once
	promErr    error
	traffic    *exporter.Exporter
	promServer *testenv.Prometheus
	promClient *prom.Client
	stopProm   func()
)

// metricsBackend starts, on first use, the synthetic Istio exporter and a real Prometheus
// scraping it every second, as the Canary end-to-end suite does.
func metricsBackend(b *testing.B) {
	b.Helper()
	promOnce.Do(func() {
		if _, promErr = testenv.PrometheusBinary(); promErr != nil {
			return
		}
		traffic = exporter.New()
		srv := httptest.NewServer(traffic.Handler())
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		promServer, promErr = testenv.StartPrometheus(ctx, testenv.PrometheusOptions{
			ScrapeTargets: []string{srv.Listener.Addr().String()},
		})
		if promErr != nil {
			srv.Close()
			return
		}
		stopProm = func() {
			_ = promServer.Stop()
			srv.Close()
		}
		promClient, promErr = prom.NewClient(prom.Config{Address: promServer.URL})
	})
	if promErr != nil {
		b.Fatalf("starting Prometheus and the exporter: %v", promErr)
	}
}

// BenchmarkCanaryCheckToWeight measures, for one Canary walking through nine steps with
// healthy traffic, the delay from each check's due time (status.nextCheckTime before the
// check) to the moment a watch on the VirtualService sees the next step's weight: the
// requeue, the Prometheus queries, the state machine and the VirtualService write, plus
// the watch's delivery. One rollout per benchmark call whatever the benchtime.
func BenchmarkCanaryCheckToWeight(b *testing.B) {
	var delays []time.Duration
	for b.Loop() {
		if delays == nil {
			delays = runRollouts(b, 1, []int32{10, 20, 30, 40, 50, 60, 70, 80, 90}, time.Second)
		}
	}
	report(b, "check-to-weight", delays)
}

// BenchmarkCanaryBreachToRollback measures the delay from a threshold breach to the
// VirtualService write that rolls back (the canary's weight back to 0). The canary
// workload's traffic is all 5xx before its rollout starts, and Prometheus is seen reading
// the breach before the release, so the breach is observable at the first check's due
// time: the delay runs from that due time to the watch seeing weight 0. BENCH_CANARY_ROLLBACKS
// rollouts (default 7), one after the other, each with its own Canary.
func BenchmarkCanaryBreachToRollback(b *testing.B) {
	n := envInt(b, "BENCH_CANARY_ROLLBACKS", 7)
	if n <= 0 {
		b.Fatalf("BENCH_CANARY_ROLLBACKS must be positive, got %d", n)
	}
	var delays []time.Duration
	for b.Loop() {
		if delays == nil {
			delays = runRollbacks(b, n)
		}
	}
	report(b, "breach-to-rollback", delays)
}

// BenchmarkCanaryScale drives N Canaries at once, each with its own target Deployment and a
// check every 10s (settle time one interval, four steps), and reports the distribution of
// the check-to-weight delay per N: how many Canaries one operator drives before the delay
// grows. BENCH_CANARY_SCALE lists the N (default "1,10,100").
func BenchmarkCanaryScale(b *testing.B) {
	counts := os.Getenv("BENCH_CANARY_SCALE")
	if counts == "" {
		counts = "1,10,100"
	}
	for _, s := range strings.Split(counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			b.Fatalf("BENCH_CANARY_SCALE=%s: %q is not a positive count", counts, s)
		}
		b.Run(fmt.Sprintf("canaries=%d", n), func(b *testing.B) {
			var delays []time.Duration
			for b.Loop() {
				if delays == nil {
					delays = runRollouts(b, n, []int32{10, 20, 30, 40}, canaryInterval)
				}
			}
			report(b, fmt.Sprintf("check-to-weight with %d Canaries", n), delays)
		})
	}
}

// report logs and reports the distribution of delays.
func report(b *testing.B, what string, delays []time.Duration) {
	b.Helper()
	if len(delays) == 0 {
		b.Fatalf("%s: no samples", what)
	}
	inOrder := slices.Clone(delays)
	slices.Sort(delays)
	p50, p90, p99, maxD := percentile(delays, 50), percentile(delays, 90), percentile(delays, 99), delays[len(delays)-1]
	b.Logf("%s: %d samples, p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms, min %.1f ms",
		what, len(delays), ms(p50), ms(p90), ms(p99), ms(maxD), ms(delays[0]))
	if len(inOrder) <= 20 {
		b.Logf("%s, in run order: %v", what, inOrder)
	}
	b.ReportMetric(float64(len(delays)), "samples")
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p90), "p90-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	b.ReportMetric(ms(maxD), "max-ms")
	// ns/op would divide one run by the benchtime's iteration count.
	b.ReportMetric(0, "ns/op")
}

// runRollouts creates n Canaries with healthy traffic, waits for them to be Stable,
// releases a new revision of every target at once and returns, for every passed check
// that stepped a weight, the delay from its due time to the VirtualService's new weight.
func runRollouts(b *testing.B, n int, steps []int32, settle time.Duration) []time.Duration {
	b.Helper()
	metricsBackend(b)
	k8s := fastClient(b)
	ns := newBenchNamespace(b, k8s, "rollout")
	canaries := createCanaries(b, k8s, ns, n, steps, settle, healthyTraffic)
	rec := startRecorder(b, ns, canaries)

	for _, c := range canaries {
		releaseTarget(b, k8s, ns, c.Spec.TargetRef.Name)
	}
	// Automatic promotion: Succeeded ends the rollout. A Canary stuck short of it fails the
	// benchmark, but the steps the others took are still reported.
	waitCanariesOrError(b, k8s, ns, n, meshv1alpha1.CanarySucceeded)
	rec.stop()
	if err := rec.err(); err != nil {
		b.Fatal(err)
	}

	var delays []time.Duration
	var missing int
	for _, c := range canaries {
		for k := 1; k < len(steps); k++ {
			due, ok := rec.dueAt(c.Name, int32(k-1))
			at, seen := rec.firstWeight(c.Name, steps[k])
			if !ok || !seen {
				missing++
				continue
			}
			delays = append(delays, at.Sub(due))
		}
	}
	if missing > 0 {
		b.Errorf("%d of %d weight steps were not seen (no due time or no new weight)", missing, n*(len(steps)-1))
	}
	b.ReportMetric(float64(missing), "steps-missing")
	return delays
}

// runRollbacks creates n Canaries whose canary workload answers only 5xx, then releases
// their targets one after the other, returning the delay from each first check's due time
// to the VirtualService's weight 0.
func runRollbacks(b *testing.B, n int) []time.Duration {
	b.Helper()
	metricsBackend(b)
	k8s := fastClient(b)
	ns := newBenchNamespace(b, k8s, "rollback")
	canaries := createCanaries(b, k8s, ns, n, []int32{50}, time.Second, brokenTraffic)
	for _, c := range canaries {
		waitBreach(b, ns, c.Spec.TargetRef.Name)
	}
	rec := startRecorder(b, ns, canaries)
	defer rec.stop()

	var delays []time.Duration
	for i, c := range canaries {
		releaseTarget(b, k8s, ns, c.Spec.TargetRef.Name)
		if err := waitFor(func(ctx context.Context) (bool, error) {
			got := &meshv1alpha1.Canary{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(c), got); err != nil {
				return false, err
			}
			return got.Status.Phase == meshv1alpha1.CanaryFailed, nil
		}); err != nil {
			b.Fatalf("waiting for Canary %s to roll back: %v", c.Name, err)
		}
		due, ok := rec.dueAt(c.Name, 0)
		up, upSeen := rec.firstWeight(c.Name, 50)
		at, seen := rec.firstWeightAfter(c.Name, 0, up)
		if !ok || !upSeen || !seen {
			b.Fatalf("Canary %s (rollout %d): due time seen %v, weight 50 seen %v, weight 0 after it seen %v", c.Name, i, ok, upSeen, seen)
		}
		delays = append(delays, at.Sub(due))
	}
	if err := rec.err(); err != nil {
		b.Fatal(err)
	}
	return delays
}

// fastClient is an admin client without client-go's default rate limit (5 requests a
// second), which would spread the creation and release of 100 Canaries over a minute.
func fastClient(b *testing.B) client.WithWatch {
	b.Helper()
	cl := devCluster(b)
	cfg := rest.CopyConfig(cl.Env.Config)
	cfg.QPS, cfg.Burst = 1000, 2000
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: cl.Admin.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// newBenchNamespace creates a namespace with a fresh name, so a -count run does not meet
// the previous run's objects.
func newBenchNamespace(b *testing.B, k8s client.Client, prefix string) string {
	b.Helper()
	name := fmt.Sprintf("canary-%s-%d", prefix, iterations)
	iterations++
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		b.Fatalf("creating namespace %s: %v", name, err)
	}
	return name
}

// createCanaries sets t as the traffic of n target workloads, applies their Deployments
// (one replica each) and their Canaries, and waits until every Canary is Stable.
func createCanaries(b *testing.B, k8s client.Client, ns string, n int, steps []int32, settle time.Duration, t exporter.Traffic) []*meshv1alpha1.Canary {
	b.Helper()
	ctx := context.Background()
	canaries := make([]*meshv1alpha1.Canary, n)
	for i := range n {
		name := fmt.Sprintf("app-%d", i)
		traffic.MustSet(exporter.Workload{Namespace: ns, Name: name}, t)
		labels := map[string]string{"app": name}
		d := appsv1ac.Deployment(name, ns).WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(1).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(labels)).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(labels).
				WithAnnotations(map[string]string{"example.com/version": "v1"}).
				WithSpec(corev1ac.PodSpec().WithContainers(corev1ac.Container().
					WithName("app").
					WithImage("example.com/" + name + ":v1").
					WithPorts(corev1ac.ContainerPort().WithName("http").WithContainerPort(8080))))))
		if err := k8s.Apply(ctx, d, client.FieldOwner("kubectl")); err != nil {
			b.Fatalf("applying Deployment %s/%s: %v", ns, name, err)
		}
		c := &meshv1alpha1.Canary{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: meshv1alpha1.CanarySpec{
				TargetRef: meshv1alpha1.CanaryTargetRef{Name: name},
				Service:   meshv1alpha1.CanaryService{Port: 80, TargetPort: ptr.To(intstr.FromString("http"))},
				Analysis: meshv1alpha1.CanaryAnalysis{
					Steps:            steps,
					Interval:         &metav1.Duration{Duration: canaryInterval},
					SettleTime:       &metav1.Duration{Duration: settle},
					FailureThreshold: 1,
					Metrics: []meshv1alpha1.CanaryMetric{
						{Name: meshv1alpha1.MetricRequestSuccessRate, ThresholdRange: meshv1alpha1.ThresholdRange{Min: ptr.To("99")}},
						{Name: meshv1alpha1.MetricRequestDuration, ThresholdRange: meshv1alpha1.ThresholdRange{Max: ptr.To("500")}},
					},
					Prometheus: meshv1alpha1.PrometheusSource{Address: promServer.URL},
				},
			},
		}
		if err := k8s.Create(ctx, c); err != nil {
			b.Fatalf("creating Canary %s/%s: %v", ns, name, err)
		}
		canaries[i] = c
	}
	waitCanaries(b, k8s, ns, n, meshv1alpha1.CanaryStable)
	return canaries
}

// waitCanaries waits until all n Canaries of the namespace are in phase. It logs how many
// of them do not (yet) report weight 0 read back from the VirtualService then, which the
// rollout does not need to start.
func waitCanaries(b *testing.B, k8s client.Client, ns string, n int, phase meshv1alpha1.CanaryPhase) {
	b.Helper()
	waitCanariesThen(b, k8s, ns, n, phase, b.Fatalf)
}

// waitCanariesOrError is waitCanaries that returns after an error on timeout.
func waitCanariesOrError(b *testing.B, k8s client.Client, ns string, n int, phase meshv1alpha1.CanaryPhase) {
	b.Helper()
	waitCanariesThen(b, k8s, ns, n, phase, b.Errorf)
}

func waitCanariesThen(b *testing.B, k8s client.Client, ns string, n int, phase meshv1alpha1.CanaryPhase, fail func(string, ...any)) {
	b.Helper()
	timeout := canaryPhaseTimeout + time.Duration(n)*time.Second
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		list := &meshv1alpha1.CanaryList{}
		err := k8s.List(ctx, list, client.InNamespace(ns))
		cancel()
		if err != nil {
			b.Fatalf("listing Canaries in %s: %v", ns, err)
		}
		behind := n - len(list.Items)
		phases := map[string]int{}
		weights := map[string]int{}
		for _, c := range list.Items {
			if c.Status.Phase != phase {
				behind++
				phases[fmt.Sprintf("%s/%s", c.Status.Phase, c.Status.Reason)]++
			}
			if w := c.Status.AppliedWeight; w == nil || *w != 0 {
				weights[fmt.Sprintf("%s/%v", c.Status.Phase, ptr.Deref(w, -1))]++
			}
		}
		if behind == 0 {
			if len(weights) > 0 {
				b.Logf("all %d Canaries in %s are %s; not reading back weight 0 yet (phase/appliedWeight, -1 for none): %v", n, ns, phase, weights)
			}
			return
		}
		if time.Now().After(deadline) {
			fail("after %v, %d of %d Canaries in %s are not %s; phase/reason of those: %v; phase/appliedWeight of those not at weight 0: %v",
				timeout, behind, n, ns, phase, phases, weights)
			return
		}
		<-tick.C
	}
}

// waitBreach waits until Prometheus reads the workload's success rate over one interval
// below the 99% threshold: what its next check will measure.
func waitBreach(b *testing.B, ns, workload string) {
	b.Helper()
	q, err := prom.RequestSuccessRateQuery(prom.Target{Namespace: ns, Workload: workload}, canaryInterval)
	if err != nil {
		b.Fatal(err)
	}
	if err := waitFor(func(ctx context.Context) (bool, error) {
		res, err := promClient.Query(ctx, q, time.Time{})
		if err != nil {
			return false, nil // retried: the query may race Prometheus's first scrapes
		}
		return !res.NoData && res.Value < 0.99, nil
	}); err != nil {
		b.Fatalf("waiting for Prometheus to read %s/%s's success rate below 99%%: %v", ns, workload, err)
	}
}

// releaseTarget changes the target's pod template as kubectl set image does: a new revision.
func releaseTarget(b *testing.B, k8s client.Client, ns, name string) {
	b.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"example.com/version":"v2"}},"spec":{"containers":[{"name":"app","image":"example.com/%s:v2"}]}}}}`, name)
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := k8s.Patch(context.Background(), d, client.RawPatch(types.StrategicMergePatchType, []byte(patch)), client.FieldOwner("kubectl-set")); err != nil {
		b.Fatalf("releasing Deployment %s/%s: %v", ns, name, err)
	}
}

// weightSeen is the canary weight a VirtualService watch delivered, and when.
type weightSeen struct {
	weight int32
	at     time.Time
}

// recorder watches the Canaries and VirtualServices of a namespace: the latest
// nextCheckTime of every step a Canary reported while Progressing, and every change of the
// canary's weight in its VirtualService with the time the watch delivered it.
type recorder struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	canaries map[string]*meshv1alpha1.Canary
	due      map[string]map[int32]time.Time
	weights  map[string][]weightSeen
	errs     []error
}

func startRecorder(b *testing.B, ns string, canaries []*meshv1alpha1.Canary) *recorder {
	b.Helper()
	wc := fastClient(b)
	ctx, cancel := context.WithCancel(context.Background())
	r := &recorder{
		cancel:   cancel,
		canaries: map[string]*meshv1alpha1.Canary{},
		due:      map[string]map[int32]time.Time{},
		weights:  map[string][]weightSeen{},
	}
	for _, c := range canaries {
		r.canaries[c.Name] = c
	}
	// Both watches are open before this returns: nothing the test does next is missed.
	cw, err := wc.Watch(ctx, &meshv1alpha1.CanaryList{}, client.InNamespace(ns))
	if err != nil {
		cancel()
		b.Fatalf("watching Canaries: %v", err)
	}
	vw, err := wc.Watch(ctx, &networkingv1.VirtualServiceList{}, client.InNamespace(ns))
	if err != nil {
		cw.Stop()
		cancel()
		b.Fatalf("watching VirtualServices: %v", err)
	}
	r.wg.Go(func() { r.consume(ctx, cw) })
	r.wg.Go(func() { r.consume(ctx, vw) })
	b.Cleanup(r.stop)
	return r
}

func (r *recorder) stop() {
	r.cancel()
	r.wg.Wait()
}

func (r *recorder) consume(ctx context.Context, w watch.Interface) {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.ResultChan():
			if !ok {
				if ctx.Err() == nil {
					r.mu.Lock()
					r.errs = append(r.errs, errors.New("a watch closed early"))
					r.mu.Unlock()
				}
				return
			}
			now := time.Now()
			switch o := ev.Object.(type) {
			case *meshv1alpha1.Canary:
				r.canary(o)
			case *networkingv1.VirtualService:
				r.virtualService(o, now)
			}
		}
	}
}

func (r *recorder) canary(c *meshv1alpha1.Canary) {
	st := c.Status
	if st.Phase != meshv1alpha1.CanaryProgressing || st.NextCheckTime == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.due[c.Name] == nil {
		r.due[c.Name] = map[int32]time.Time{}
	}
	// The latest one: a check that held the step moved it on, and the check that passed
	// was due at the last nextCheckTime of the step.
	r.due[c.Name][st.StepIndex] = st.NextCheckTime.Time
}

func (r *recorder) virtualService(vs *networkingv1.VirtualService, at time.Time) {
	owner := metav1.GetControllerOf(vs)
	if owner == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.canaries[owner.Name]
	if c == nil {
		return
	}
	w := objects.AppliedWeight(c, vs)
	if w == nil {
		return
	}
	seen := r.weights[c.Name]
	if len(seen) > 0 && seen[len(seen)-1].weight == *w {
		return
	}
	r.weights[c.Name] = append(seen, weightSeen{*w, at})
}

// err reports a watch that ended before the recorder was stopped: changes may be missing.
func (r *recorder) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(r.errs...)
}

// dueAt is the last nextCheckTime the Canary reported at the step.
func (r *recorder) dueAt(name string, step int32) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.due[name][step]
	return t, ok
}

// firstWeight is when the watch first delivered the weight.
func (r *recorder) firstWeight(name string, weight int32) (time.Time, bool) {
	return r.firstWeightAfter(name, weight, time.Time{})
}

// firstWeightAfter is when the watch first delivered the weight after `after`.
func (r *recorder) firstWeightAfter(name string, weight int32, after time.Time) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.weights[name] {
		if s.weight == weight && s.at.After(after) {
			return s.at, true
		}
	}
	return time.Time{}, false
}
