package metrics

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// failingReader fails to list Canaries, as a cache would whose informer cannot sync.
type failingReader struct{ client.Reader }

func (r failingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*meshv1alpha1.CanaryList); ok {
		return errors.New("timed out waiting for the Canary informer to sync")
	}
	return r.Reader.List(ctx, list, opts...)
}

// A kind that cannot be listed is counted and left out, and the scrape still succeeds with
// the other kinds' metrics: controller-runtime's endpoint fails the whole scrape on a
// collector error.
func TestListErrorIsCountedNotFatal(t *testing.T) {
	g := NewWithT(t)
	c := newCollector(failingReader{fakeReader(t, readyControlPlane(), canary("web", meshv1alpha1.CanaryStatus{}))})
	got := series(t, c)
	g.Expect(got).To(HaveKeyWithValue(`meshplane_controlplane_ready{control_plane="default"}`, 1.0))
	g.Expect(withPrefix(got, "meshplane_canary_")).To(BeEmpty())
	g.Expect(withPrefix(got, "meshplane_status_collector_errors_total")).To(Equal(map[string]float64{
		`meshplane_status_collector_errors_total{kind="Canary"}`:           1,
		`meshplane_status_collector_errors_total{kind="MeshControlPlane"}`: 0,
	}))
	got = series(t, c)
	g.Expect(got).To(HaveKeyWithValue(`meshplane_status_collector_errors_total{kind="Canary"}`, 2.0))
}

// The registration holds the collector in the registry while the manager runs, and leaves
// the registry free for the next manager when it stops.
func TestRegistrationLastsWhileTheManagerRuns(t *testing.T) {
	g := NewWithT(t)
	reg := prometheus.NewRegistry()
	start := func(r *registration) (context.CancelFunc, chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Start(ctx) }()
		return cancel, done
	}
	first := &registration{collector: newCollector(fakeReader(t, readyControlPlane())), registry: reg, log: logr.Discard()}
	g.Expect(first.NeedLeaderElection()).To(BeTrue(), "only the leader reports status")
	stopFirst, firstDone := start(first)
	g.Eventually(func() ([]string, error) { return familyNames(reg) }).Should(ContainElement("meshplane_controlplane_ready"))

	// A second manager in the same process (tests only) neither fails nor reports.
	second := &registration{collector: newCollector(fakeReader(t)), registry: reg, log: logr.Discard()}
	stopSecond, secondDone := start(second)
	g.Consistently(secondDone, 100*time.Millisecond).ShouldNot(Receive())
	stopSecond()
	g.Eventually(secondDone).Should(Receive(BeNil()))
	g.Expect(familyNames(reg)).To(ContainElement("meshplane_controlplane_ready"), "the first manager still reports")

	stopFirst()
	g.Eventually(firstDone).Should(Receive(BeNil()))
	g.Expect(familyNames(reg)).To(BeEmpty())
	third := &registration{collector: newCollector(fakeReader(t)), registry: reg, log: logr.Discard()}
	stopThird, thirdDone := start(third)
	g.Eventually(func() ([]string, error) { return familyNames(reg) }).Should(ContainElement("meshplane_status_collector_errors_total"))
	stopThird()
	g.Eventually(thirdDone).Should(Receive(BeNil()))
}

func familyNames(g prometheus.Gatherer) ([]string, error) {
	families, err := g.Gather()
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	return names, err
}

// The phases and outcomes with a series each are the CRD's enumerations: a phase added to
// the API without a series here would only show while current, and never as 0.
func TestEnumerationsMatchTheCRD(t *testing.T) {
	g := NewWithT(t)
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", "bases", "mesh.meshplane.io_canaries.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	crd := &apiextensionsv1.CustomResourceDefinition{}
	g.Expect(yaml.Unmarshal(raw, crd)).To(Succeed())
	g.Expect(crd.Spec.Versions).To(HaveLen(1))
	status := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["status"]

	enum := func(s apiextensionsv1.JSONSchemaProps) []string {
		var out []string
		for _, v := range s.Enum {
			var str string
			g.Expect(yaml.Unmarshal(v.Raw, &str)).To(Succeed())
			out = append(out, str)
		}
		return out
	}
	g.Expect(canaryPhases).To(ConsistOf(enum(status.Properties["phase"])))
	g.Expect(checkOutcomes).To(ConsistOf(enum(status.Properties["checks"].Items.Schema.Properties["outcome"])))
}

// Every kind's metrics are described, so a pedantic registry accepts the collector, and a
// kind is reported exactly once.
func TestSourcesAreRegisteredOnce(t *testing.T) {
	g := NewWithT(t)
	kinds := map[string]int{}
	for _, s := range sources {
		kinds[s.kind()]++
	}
	g.Expect(kinds).To(HaveKeyWithValue("MeshControlPlane", 1))
	g.Expect(kinds).To(HaveKeyWithValue("Canary", 1))
	for kind, n := range kinds {
		g.Expect(n).To(Equal(1), kind)
	}
	g.Expect(prometheus.NewPedanticRegistry().Register(newCollector(fakeReader(t)))).To(Succeed())
}
