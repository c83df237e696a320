//go:build istiod

package istiod

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/encoding/protojson"
	meshconfig "istio.io/api/mesh/v1alpha1"
	telemetryv1alpha1 "istio.io/api/telemetry/v1alpha1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// debug reads one of istiod's debug endpoints on its HTTP port (open to local callers).
func (i *istiod) debug(path string) ([]byte, error) {
	resp, err := http.Get(i.httpURL + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %d: %s", path, resp.StatusCode, body)
	}
	return body, nil
}

var lenient = protojson.UnmarshalOptions{DiscardUnknown: true} // istiod may be newer than istio.io/api

// activeMesh is the mesh config istiod runs with. istiod replaces a mesh config it rejects
// with its defaults ("invalid mesh config, using last known state") and still becomes
// ready, so this, not readiness, shows it accepted ours.
func (i *istiod) activeMesh(g Gomega) *meshconfig.MeshConfig {
	body, err := i.debug("/debug/mesh")
	g.Expect(err).NotTo(HaveOccurred())
	mc := &meshconfig.MeshConfig{}
	g.Expect(lenient.Unmarshal(body, mc)).To(Succeed(), string(body))
	return mc
}

// pushedTelemetry is the Telemetry named name in istiod's current push context, as
// /debug/telemetryz shows it, or nil; and the root namespace istiod resolved.
func (i *istiod) pushedTelemetry(g Gomega, namespace, name string) (*telemetryv1alpha1.Telemetry, string) {
	body, err := i.debug("/debug/telemetryz")
	g.Expect(err).NotTo(HaveOccurred())
	var dump struct {
		Telemetries struct {
			NamespaceToTelemetries map[string][]struct {
				Name string          `json:"name"`
				Spec json.RawMessage `json:"spec"`
			} `json:"namespace_to_telemetries"`
			RootNamespace string `json:"root_namespace"`
		} `json:"telemetries"`
	}
	g.Expect(json.Unmarshal(body, &dump)).To(Succeed(), string(body))
	for _, t := range dump.Telemetries.NamespaceToTelemetries[namespace] {
		if t.Name == name {
			spec := &telemetryv1alpha1.Telemetry{}
			g.Expect(lenient.Unmarshal(t.Spec, spec)).To(Succeed(), string(t.Spec))
			return spec, dump.Telemetries.RootNamespace
		}
	}
	return nil, dump.Telemetries.RootNamespace
}

// providerNames lists the mesh config's extension providers by name.
func providerNames(mc *meshconfig.MeshConfig) []string {
	var out []string
	for _, p := range mc.GetExtensionProviders() {
		out = append(out, p.GetName())
	}
	return out
}

func providerNamed(mc *meshconfig.MeshConfig, name string) *meshconfig.MeshConfig_ExtensionProvider {
	for _, p := range mc.GetExtensionProviders() {
		if p.GetName() == name {
			return p
		}
	}
	return nil
}

func createReady(m *meshv1alpha1.MeshControlPlane) {
	Expect(k8s.Create(ctx(), m)).To(Succeed())
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(m), m)).To(Succeed())
		g.Expect(m.Status.ObservedGeneration).To(Equal(m.Generation))
		g.Expect(meta.IsStatusConditionTrue(m.Status.Conditions, meshv1alpha1.ConditionReady)).To(BeTrue())
	}, timeout, poll).Should(Succeed())
}

var _ = Describe("istiod with the operator's telemetry", func() {
	It("runs the rendered extension providers and picks up the mesh-wide Telemetry and its changes", func() {
		const ns, collector = "telemetry-system", "otel-collector.observability.svc.cluster.local"
		m := &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "telemetry"}}
		m.Spec.Namespace, m.Spec.Revision = ns, "tel" // beside the other specs' control planes
		m.Spec.Telemetry = &meshv1alpha1.TelemetrySpec{
			AccessLogging: &meshv1alpha1.AccessLogging{Encoding: "JSON"},
			Tracing: &meshv1alpha1.TelemetryTracing{SamplingPercentage: "10",
				OpenTelemetry: &meshv1alpha1.TracingCollector{Service: collector, Port: 4317}},
		}
		createReady(m)

		i := startIstiod(ns, "istiod-tel")
		Eventually(i.ready, timeout, poll).Should(Succeed(), func() string { return i.log.String() })

		By("running with our mesh config: the providers merged into istiod's built-in ones")
		mc := i.activeMesh(Default)
		Expect(mc.GetRootNamespace()).To(Equal(ns), "istiod fell back to its default mesh config")
		// istiod only warns about a provider it finds invalid, and keeps it.
		Expect(i.log.String()).NotTo(ContainSubstring("invalid extension provider"))
		Expect(providerNames(mc)).To(ContainElements("prometheus", "envoy", "envoy-json", "otel-tracing"))
		otel := providerNamed(mc, "otel-tracing").GetOpentelemetry()
		Expect(otel.GetService()).To(Equal(collector))
		Expect(otel.GetPort()).To(BeEquivalentTo(4317))
		Expect(providerNamed(mc, "envoy-json").GetEnvoyFileAccessLog().GetLogFormat().GetLabels()).NotTo(BeNil())

		By("pushing the mesh-wide Telemetry of its revision")
		Eventually(func(g Gomega) {
			tel, root := i.pushedTelemetry(g, ns, "mesh-default-tel")
			g.Expect(root).To(Equal(ns))
			g.Expect(tel).NotTo(BeNil(), "istiod has not read the Telemetry")
			g.Expect(tel.GetAccessLogging()).To(HaveLen(1))
			g.Expect(tel.GetAccessLogging()[0].GetProviders()[0].GetName()).To(Equal("envoy-json"))
			g.Expect(tel.GetTracing()).To(HaveLen(1))
			g.Expect(tel.GetTracing()[0].GetProviders()[0].GetName()).To(Equal("otel-tracing"))
			g.Expect(tel.GetTracing()[0].GetRandomSamplingPercentage().GetValue()).To(Equal(10.0))
		}, timeout, poll).Should(Succeed(), func() string { return i.log.String() })

		By("following a change of the sampling rate")
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(m), m)).To(Succeed())
			m.Spec.Telemetry.Tracing.SamplingPercentage = "0.5"
			g.Expect(k8s.Update(ctx(), m)).To(Succeed())
		}, timeout, poll).Should(Succeed())
		Eventually(func(g Gomega) {
			tel, _ := i.pushedTelemetry(g, ns, "mesh-default-tel")
			g.Expect(tel.GetTracing()[0].GetRandomSamplingPercentage().GetValue()).To(Equal(0.5))
		}, timeout, poll).Should(Succeed(), func() string { return i.log.String() })
		Expect(i.log.String()).NotTo(ContainSubstring("is forbidden"), "istiod's rendered RBAC lacks a permission")
	})

	It("accepts a Zipkin collector", func() {
		const ns, collector = "zipkin-system", "zipkin.tracing.svc.cluster.local"
		m := &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "zipkin"}}
		m.Spec.Namespace, m.Spec.Revision = ns, "zipkin"
		m.Spec.Telemetry = &meshv1alpha1.TelemetrySpec{
			AccessLogging: &meshv1alpha1.AccessLogging{Enabled: ptr.To(false)},
			Tracing:       &meshv1alpha1.TelemetryTracing{Zipkin: &meshv1alpha1.TracingCollector{Service: collector, Port: 9411}},
		}
		createReady(m)

		i := startIstiod(ns, "istiod-zipkin")
		Eventually(i.ready, timeout, poll).Should(Succeed(), func() string { return i.log.String() })
		mc := i.activeMesh(Default)
		Expect(mc.GetRootNamespace()).To(Equal(ns), "istiod fell back to its default mesh config")
		Expect(i.log.String()).NotTo(ContainSubstring("invalid extension provider"))
		zipkin := providerNamed(mc, "zipkin").GetZipkin()
		Expect(zipkin.GetService()).To(Equal(collector))
		Expect(zipkin.GetPort()).To(BeEquivalentTo(9411))
		Eventually(func(g Gomega) {
			tel, _ := i.pushedTelemetry(g, ns, "mesh-default-zipkin")
			g.Expect(tel).NotTo(BeNil(), "istiod has not read the Telemetry")
			g.Expect(tel.GetAccessLogging()[0].GetDisabled().GetValue()).To(BeTrue())
			g.Expect(tel.GetTracing()[0].GetRandomSamplingPercentage()).To(BeNil(), "the mesh default applies")
		}, timeout, poll).Should(Succeed(), func() string { return i.log.String() })
	})
})
