// Package canary runs Canaries end to end: the operator on the real local control plane
// (kube-controller-manager and kwok, so Deployments roll out and become available) with a
// real Prometheus scraping the synthetic Istio exporter every second. Intervals are real
// (10s, the API's floor); scenarios keep their steps few.
package canary

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/devcluster"
	"github.com/meshplane/meshplane/internal/prom"
	objects "github.com/meshplane/meshplane/internal/render/canary"
	"github.com/meshplane/meshplane/internal/testenv"
	"github.com/meshplane/meshplane/test/exporter"
)

var (
	cluster    *devcluster.Cluster
	k8s        client.Client
	traffic    *exporter.Exporter
	prometheus *testenv.Prometheus
	promClient *prom.Client
)

const (
	// interval is the analysis interval of every Canary here: the API's floor.
	interval = 10 * time.Second
	// syncPeriod makes the operator's informers resync often, so the steady-state check
	// sees resyncs.
	syncPeriod = 5 * time.Second
	// rollout bounds a phase change that waits on Deployments rolling out (kwok) and at most
	// one settle time and check.
	rollout = 60 * time.Second
	poll    = 200 * time.Millisecond
	// user is the field manager of the suite's own applies, as kubectl apply --server-side's.
	user = "kubectl"
)

func TestCanary(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Canary end-to-end")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	// Fails rather than skips: a skipped suite in CI looks green while testing nothing.
	_, err := testenv.PrometheusBinary()
	Expect(err).NotTo(HaveOccurred())

	traffic = exporter.New()
	srv := httptest.NewServer(traffic.Handler())
	DeferCleanup(srv.Close)
	logDir := GinkgoT().TempDir()
	prometheus, err = testenv.StartPrometheus(ctx, testenv.PrometheusOptions{
		ScrapeTargets: []string{srv.Listener.Addr().String()},
		LogDir:        logDir,
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		Expect(prometheus.Stop()).To(Succeed())
		if CurrentSpecReport().Failed() {
			if b, err := os.ReadFile(filepath.Join(logDir, "prometheus.log")); err == nil {
				GinkgoWriter.Printf("prometheus.log:\n%s\n", b)
			}
		}
	})
	promClient, err = prom.NewClient(prom.Config{Address: prometheus.URL})
	Expect(err).NotTo(HaveOccurred())

	cluster, err = devcluster.Start(ctx, devcluster.Options{AuditLog: true, SyncPeriod: syncPeriod})
	Expect(err).NotTo(HaveOccurred())
	k8s = cluster.Admin
	DeferCleanup(cluster.Stop)
}, NodeTimeout(3*time.Minute))

func ctx() context.Context { return context.Background() }

// newNamespace creates a namespace for one spec.
func newNamespace(name string) string {
	Expect(k8s.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
	return name
}

// applyTarget server-side applies the user's Deployment as kubectl apply --server-side
// would: app=<name>, the given replicas, and a version that makes the pod template.
func applyTarget(ns, name string, replicas int32, version string) {
	labels := map[string]string{"app": name}
	d := appsv1ac.Deployment(name, ns).WithSpec(appsv1ac.DeploymentSpec().
		WithReplicas(replicas).
		WithSelector(metav1ac.LabelSelector().WithMatchLabels(labels)).
		WithTemplate(corev1ac.PodTemplateSpec().
			WithLabels(labels).
			WithAnnotations(map[string]string{"example.com/version": version}).
			WithSpec(corev1ac.PodSpec().WithContainers(corev1ac.Container().
				WithName("app").
				WithImage("example.com/" + name + ":" + version).
				WithPorts(corev1ac.ContainerPort().WithName("http").WithContainerPort(8080))))))
	Expect(k8s.Apply(ctx(), d, client.FieldOwner(user))).To(Succeed())
}

// release changes the target's pod template as kubectl set image does: a new revision.
func release(ns, name, version string) {
	if t, ok := traffic.Traffic(exporter.Workload{Namespace: ns, Name: name}); ok && t.RequestsPerSecond > 0 {
		// The first check may come a second after the new weight: Prometheus must already
		// hold enough samples of the workload's traffic to compute a rate, or that check
		// finds no data (a race with the first scrapes of a new namespace, not a finding).
		waitData(ns, name)
	}
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"example.com/version":%q}},"spec":{"containers":[{"name":"app","image":"example.com/%s:%s"}]}}}}`,
		version, name, version)
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	Expect(k8s.Patch(ctx(), d, client.RawPatch(types.StrategicMergePatchType, []byte(patch)), client.FieldOwner("kubectl-set"))).To(Succeed())
}

// revisionOf is the target's current revision, as the operator computes it.
func revisionOf(g Gomega, ns, name string) string {
	d := &appsv1.Deployment{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, d)).To(Succeed())
	return objects.TemplateRevision(&d.Spec.Template)
}

// healthy, failing and idle are what the canary's workload receives, per the exporter.
var (
	healthy = exporter.Traffic{RequestsPerSecond: 20, P99Latency: 40 * time.Millisecond}
	failing = exporter.Traffic{RequestsPerSecond: 20, ErrorRatio: 0.5, P99Latency: 40 * time.Millisecond}
)

func setTraffic(ns, workload string, t exporter.Traffic) {
	traffic.MustSet(exporter.Workload{Namespace: ns, Name: workload}, t)
}

// waitSuccessRate waits until Prometheus reads the workload's success rate over one
// interval within [lo, hi] percent: what the next check will measure.
func waitSuccessRate(ns, workload string, lo, hi float64) {
	q, err := prom.RequestSuccessRateQuery(prom.Target{Namespace: ns, Workload: workload}, interval)
	Expect(err).NotTo(HaveOccurred())
	Eventually(func(g Gomega) {
		res, err := promClient.Query(ctx(), q, time.Time{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.NoData).To(BeFalse())
		g.Expect(res.Value * 100).To(BeNumerically(">=", lo))
		g.Expect(res.Value * 100).To(BeNumerically("<=", hi))
	}, 2*interval+10*time.Second, poll).Should(Succeed())
}

// waitData waits until Prometheus computes the workload's request rate over one interval.
func waitData(ns, workload string) {
	q, err := prom.RequestCountQuery(prom.Target{Namespace: ns, Workload: workload}, interval)
	Expect(err).NotTo(HaveOccurred())
	Eventually(func(g Gomega) {
		res, err := promClient.Query(ctx(), q, time.Time{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.NoData).To(BeFalse())
		g.Expect(res.Value).To(BeNumerically(">", 0))
	}, 2*interval+10*time.Second, poll).Should(Succeed())
}

// newCanary is the suite's Canary for target: one step at 50%, checked every 10s from one
// second after the weight is in effect, against the suite's Prometheus.
func newCanary(ns, target string, mutate func(*meshv1alpha1.CanarySpec)) *meshv1alpha1.Canary {
	c := &meshv1alpha1.Canary{
		ObjectMeta: metav1.ObjectMeta{Name: target, Namespace: ns},
		Spec: meshv1alpha1.CanarySpec{
			TargetRef: meshv1alpha1.CanaryTargetRef{Name: target},
			Service:   meshv1alpha1.CanaryService{Port: 80, TargetPort: ptr.To(intstr.FromString("http"))},
			Analysis: meshv1alpha1.CanaryAnalysis{
				Steps:      []int32{50},
				Interval:   &metav1.Duration{Duration: interval},
				SettleTime: &metav1.Duration{Duration: time.Second},
				Metrics: []meshv1alpha1.CanaryMetric{
					{Name: meshv1alpha1.MetricRequestSuccessRate, ThresholdRange: meshv1alpha1.ThresholdRange{Min: ptr.To("99")}},
					{Name: meshv1alpha1.MetricRequestDuration, ThresholdRange: meshv1alpha1.ThresholdRange{Max: ptr.To("500")}},
				},
				Prometheus: meshv1alpha1.PrometheusSource{Address: prometheus.URL},
			},
		},
	}
	if mutate != nil {
		mutate(&c.Spec)
	}
	Expect(k8s.Create(ctx(), c)).To(Succeed())
	return c
}

func getCanary(g Gomega, c *meshv1alpha1.Canary) *meshv1alpha1.Canary {
	got := &meshv1alpha1.Canary{}
	g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(c), got)).To(Succeed())
	return got
}

// updateCanary changes the spec, retrying on conflicts with the operator's writes.
func updateCanary(c *meshv1alpha1.Canary, mutate func(*meshv1alpha1.CanarySpec)) {
	Eventually(func(g Gomega) {
		got := getCanary(g, c)
		mutate(&got.Spec)
		g.Expect(k8s.Update(ctx(), got)).To(Succeed())
	}, 10*time.Second, poll).Should(Succeed())
}

// waitPhase waits for the phase and returns the Canary then.
func waitPhase(c *meshv1alpha1.Canary, phase meshv1alpha1.CanaryPhase, timeout time.Duration) *meshv1alpha1.Canary {
	var got *meshv1alpha1.Canary
	Eventually(func(g Gomega) {
		got = getCanary(g, c)
		g.Expect(got.Status.Phase).To(Equal(phase), "reason %s: %s", got.Status.Reason, got.Status.Message)
	}, timeout, poll).Should(Succeed())
	return got
}

// waitStable waits until the Canary is idle in phase (Stable, Succeeded or Failed): the
// primary serves all traffic, read back from the VirtualService, and the target is scaled
// to zero. Stable and Succeeded are Ready; Failed is not.
func waitStable(c *meshv1alpha1.Canary, phase meshv1alpha1.CanaryPhase) *meshv1alpha1.Canary {
	var got *meshv1alpha1.Canary
	Eventually(func(g Gomega) {
		got = getCanary(g, c)
		g.Expect(got.Status.Phase).To(Equal(phase), "reason %s: %s", got.Status.Reason, got.Status.Message)
		g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, meshv1alpha1.ConditionReady)).To(
			Equal(phase != meshv1alpha1.CanaryFailed), "%v", got.Status.Conditions)
		g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		g.Expect(got.Status.AppliedWeight).To(Equal(ptr.To[int32](0)))
		g.Expect(deployment(g, c.Namespace, c.Spec.TargetRef.Name).Spec.Replicas).To(Equal(ptr.To[int32](0)))
	}, rollout, poll).Should(Succeed())
	return got
}

func condition(c *meshv1alpha1.Canary, t string) metav1.Condition {
	if cond := meta.FindStatusCondition(c.Status.Conditions, t); cond != nil {
		return *cond
	}
	return metav1.Condition{}
}

func deployment(g Gomega, ns, name string) *appsv1.Deployment {
	d := &appsv1.Deployment{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, d)).To(Succeed())
	return d
}

func virtualService(g Gomega, ns, name string) *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, vs)).To(Succeed())
	return vs
}

// vsWeights are the VirtualService's weights as [primary, canary].
func vsWeights(g Gomega, ns, name string) []int32 {
	vs := virtualService(g, ns, name)
	g.Expect(vs.Spec.Http).To(HaveLen(1))
	var w []int32
	for _, d := range vs.Spec.Http[0].Route {
		w = append(w, d.Weight)
	}
	return w
}

// eventReasons lists the reasons of the Events about the Canary, oldest first.
func eventReasons(g Gomega, c *meshv1alpha1.Canary) []string {
	list := &eventsv1.EventList{}
	g.Expect(k8s.List(ctx(), list, client.InNamespace(c.Namespace))).To(Succeed())
	var evs []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "Canary" && e.Regarding.Name == c.Name {
			evs = append(evs, e)
		}
	}
	slices.SortStableFunc(evs, func(a, b eventsv1.Event) int { return a.EventTime.Compare(b.EventTime.Time) })
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Reason
	}
	return out
}

// auditEvent is the part of an API server audit event the suite reads.
type auditEvent struct {
	Stage string `json:"stage"`
	Verb  string `json:"verb"`
	User  struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	RequestReceivedTimestamp time.Time `json:"requestReceivedTimestamp"`
}

// operatorWrites returns the write requests the operator sent into namespace since
// `since`, from the API server's audit log: the server's own record, not the client's.
func operatorWrites(namespace string, since time.Time) []string {
	f, err := os.Open(cluster.Env.AuditLogPath)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	var writes []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e auditEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if e.Stage != "ResponseComplete" || e.User.Username != devcluster.OperatorUser ||
			e.ObjectRef.Namespace != namespace || e.RequestReceivedTimestamp.Before(since) {
			continue
		}
		switch e.Verb {
		case "create", "update", "patch", "delete", "deletecollection", "apply":
			r := e.ObjectRef
			writes = append(writes, strings.TrimSuffix(e.Verb+" "+r.Resource+"/"+r.Subresource, "/")+" "+r.Name)
		}
	}
	Expect(sc.Err()).NotTo(HaveOccurred())
	return writes
}

// expectNoWrites waits for the operator to go quiet in namespace (the last status write and
// events of a transition), then expects no write from it for window.
func expectNoWrites(namespace string, window time.Duration) {
	var since time.Time
	Eventually(func(g Gomega) {
		since = time.Now()
		g.Consistently(func() []string { return operatorWrites(namespace, since) }, 2*time.Second, 250*time.Millisecond).Should(BeEmpty())
	}, 30*time.Second, poll).Should(Succeed())
	Consistently(func() []string { return operatorWrites(namespace, since) }, window, 500*time.Millisecond).Should(BeEmpty())
}
