package e2e

import (
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/encoding/protojson"
	meshconfig "istio.io/api/mesh/v1alpha1"
	telemetryv1 "istio.io/client-go/pkg/apis/telemetry/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/render"
)

// meshConfigOf parses the control plane's mesh config as istiod does, with Istio's types.
func meshConfigOf(g Gomega, namespace string) *meshconfig.MeshConfig {
	cm := &corev1.ConfigMap{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: namespace, Name: "istio"}, cm)).To(Succeed())
	js, err := yaml.YAMLToJSON([]byte(cm.Data["mesh"]))
	g.Expect(err).NotTo(HaveOccurred())
	mc := &meshconfig.MeshConfig{}
	g.Expect(protojson.Unmarshal(js, mc)).To(Succeed())
	return mc
}

// extensionProviders lists a mesh config's providers as "name service:port" (tracing) or
// "name path" (access logs).
func extensionProviders(mc *meshconfig.MeshConfig) []string {
	var out []string
	for _, p := range mc.GetExtensionProviders() {
		switch {
		case p.GetZipkin() != nil:
			out = append(out, p.GetName()+" "+p.GetZipkin().GetService()+":"+strconv.FormatUint(uint64(p.GetZipkin().GetPort()), 10))
		case p.GetOpentelemetry() != nil:
			out = append(out, p.GetName()+" "+p.GetOpentelemetry().GetService()+":"+strconv.FormatUint(uint64(p.GetOpentelemetry().GetPort()), 10))
		case p.GetEnvoyFileAccessLog() != nil:
			out = append(out, p.GetName()+" "+p.GetEnvoyFileAccessLog().GetPath())
		}
	}
	return out
}

func meshTelemetry(g Gomega, namespace string) *telemetryv1.Telemetry {
	t := &telemetryv1.Telemetry{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: namespace, Name: "mesh-default"}, t)).To(Succeed())
	return t
}

// telemetryProviders lists the Telemetry's access log and tracing providers with their
// settings, as "accessLogging envoy-json disabled=false" and "tracing zipkin rate=10"
// (rate=- when the Telemetry leaves it to the mesh default).
func telemetryProviders(t *telemetryv1.Telemetry) []string {
	var out []string
	for _, l := range t.Spec.GetAccessLogging() {
		for _, p := range l.GetProviders() {
			out = append(out, "accessLogging "+p.GetName()+" disabled="+strconv.FormatBool(l.GetDisabled().GetValue()))
		}
	}
	for _, tr := range t.Spec.GetTracing() {
		rate := "-"
		if r := tr.GetRandomSamplingPercentage(); r != nil {
			rate = strconv.FormatFloat(r.GetValue(), 'f', -1, 64)
		}
		for _, p := range tr.GetProviders() {
			out = append(out, "tracing "+p.GetName()+" rate="+rate)
		}
	}
	return out
}

func podAnnotations(g Gomega, namespace, name string) map[string]string {
	d := &appsv1.Deployment{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: namespace, Name: name}, d)).To(Succeed())
	return d.Spec.Template.Annotations
}

var _ = Describe("Mesh telemetry", func() {
	It("renders the mesh-wide Telemetry and the extension providers, follows changes and prunes them", Serial, func() {
		const ns = "telemetry-system"
		m := newMCP("telemetry", ns, func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Telemetry = &meshv1alpha1.TelemetrySpec{
				AccessLogging: &meshv1alpha1.AccessLogging{Encoding: "JSON"},
				Tracing: &meshv1alpha1.TelemetryTracing{SamplingPercentage: "10",
					Zipkin: &meshv1alpha1.TracingCollector{Service: "zipkin.tracing.svc.cluster.local", Port: 9411}},
			}
		})
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(deleteMCP, m.Name)
		m = expectReady(m.Name)

		By("a Telemetry in the root namespace, owned by the control plane, naming providers the mesh config defines")
		tel := meshTelemetry(Default, ns)
		Expect(metav1.IsControlledBy(tel, m)).To(BeTrue())
		Expect(tel.Labels).To(HaveKeyWithValue(render.LabelManagedBy, render.ManagedByValue))
		Expect(tel.Labels).To(HaveKeyWithValue(render.LabelIstioRev, "default"))
		Expect(telemetryProviders(tel)).To(Equal([]string{"accessLogging envoy-json disabled=false", "tracing zipkin rate=10"}))
		mc := meshConfigOf(Default, ns)
		Expect(extensionProviders(mc)).To(Equal([]string{"envoy-json /dev/stdout", "zipkin zipkin.tracing.svc.cluster.local:9411"}))
		Expect(mc.GetExtensionProviders()[0].GetEnvoyFileAccessLog().GetLogFormat().GetLabels()).NotTo(BeNil(), "JSON")
		Expect(mc.GetAccessLogFile()).To(BeEmpty())

		By("sending no writes once converged")
		var since time.Time
		Eventually(func(g Gomega) {
			since = time.Now()
			g.Consistently(func() []string { return operatorWrites(since) }, 3*time.Second, 500*time.Millisecond).Should(BeEmpty())
		}, readyTimeout, poll).Should(Succeed())
		since = time.Now()
		Consistently(func() []string { return operatorWrites(since) }, syncPeriod+2*time.Second, time.Second).Should(BeEmpty(),
			"a resync of the Telemetry and the mesh config must not rewrite them")

		By("switching to OpenTelemetry, the mesh default rate and text logs turned off")
		patchSpec(m.Name, func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Telemetry.AccessLogging = &meshv1alpha1.AccessLogging{Enabled: ptr.To(false)}
			s.Telemetry.Tracing = &meshv1alpha1.TelemetryTracing{
				OpenTelemetry: &meshv1alpha1.TracingCollector{Service: "otel-collector.observability.svc.cluster.local", Port: 4317}}
		})
		Eventually(func(g Gomega) {
			g.Expect(telemetryProviders(meshTelemetry(g, ns))).To(Equal([]string{"accessLogging envoy disabled=true", "tracing otel-tracing rate=-"}))
			g.Expect(extensionProviders(meshConfigOf(g, ns))).To(Equal([]string{"otel-tracing otel-collector.observability.svc.cluster.local:4317"}))
		}, readyTimeout, poll).Should(Succeed())
		expectReady(m.Name)

		By("removing the Telemetry and the providers with spec.telemetry")
		uid := meshTelemetry(Default, ns).UID
		patchSpec(m.Name, func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Telemetry = nil })
		Eventually(func(g Gomega) {
			err := k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "mesh-default"}, &telemetryv1.Telemetry{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "Telemetry %s still exists", uid)
			g.Expect(extensionProviders(meshConfigOf(g, ns))).To(BeEmpty())
		}, readyTimeout, poll).Should(Succeed())
		expectReady(m.Name)
	})

	It("turns Prometheus' scrape annotations and metrics merging off and on", func() {
		const ns = "scrape-system"
		off := func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Telemetry = &meshv1alpha1.TelemetrySpec{Metrics: &meshv1alpha1.TelemetryMetrics{
				Prometheus: &meshv1alpha1.PrometheusMetrics{ScrapeAnnotations: ptr.To(false)}}}
		}
		m := newMCP("scrape", ns, func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Gateways = []meshv1alpha1.GatewaySpec{{Name: "ingress", Type: meshv1alpha1.GatewayTypeIngress}}
			off(s)
		})
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(deleteMCP, m.Name)
		expectReady(m.Name)
		for _, name := range []string{"istiod", "ingress"} {
			Expect(podAnnotations(Default, ns, name)).NotTo(HaveKey(HavePrefix("prometheus.io/")), name)
		}
		Expect(meshConfigOf(Default, ns).GetEnablePrometheusMerge().GetValue()).To(BeFalse())
		err := k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "mesh-default"}, &telemetryv1.Telemetry{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "metrics settings alone need no Telemetry")

		By("back to the default, as upstream")
		patchSpec(m.Name, func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Telemetry = nil })
		Eventually(func(g Gomega) {
			g.Expect(podAnnotations(g, ns, "istiod")).To(HaveKeyWithValue("prometheus.io/port", "15014"))
			g.Expect(podAnnotations(g, ns, "ingress")).To(HaveKeyWithValue("prometheus.io/port", "15020"))
			g.Expect(meshConfigOf(g, ns).GetEnablePrometheusMerge().GetValue()).To(BeTrue())
		}, readyTimeout, poll).Should(Succeed())
		expectReady(m.Name)
	})

	zipkin := func(service string, port int32) *meshv1alpha1.TelemetryTracing {
		return &meshv1alpha1.TelemetryTracing{Zipkin: &meshv1alpha1.TracingCollector{Service: service, Port: port}}
	}
	DescribeTable("rejects invalid telemetry with a message the user can act on",
		func(mutate func(*meshv1alpha1.MeshControlPlaneSpec), message string) {
			err := k8s.Create(ctx(), newMCP("invalid-telemetry", "", mutate))
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("a sampling percentage above 100", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			tr := zipkin("zipkin.tracing.svc.cluster.local", 9411)
			tr.SamplingPercentage = "100.5"
			s.Telemetry = &meshv1alpha1.TelemetrySpec{Tracing: tr}
		}, `samplingPercentage must be a number from 0 to 100 with at most two decimals, such as "1" or "0.05"`),
		Entry("a negative sampling percentage", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			tr := zipkin("zipkin.tracing.svc.cluster.local", 9411)
			tr.SamplingPercentage = "-1"
			s.Telemetry = &meshv1alpha1.TelemetrySpec{Tracing: tr}
		}, "spec.telemetry.tracing.samplingPercentage: Invalid value"),
		Entry("tracing without a collector", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Telemetry = &meshv1alpha1.TelemetrySpec{Tracing: &meshv1alpha1.TelemetryTracing{SamplingPercentage: "1"}}
		}, "tracing must set exactly one of zipkin or openTelemetry"),
		Entry("two collectors", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			tr := zipkin("zipkin.tracing.svc.cluster.local", 9411)
			tr.OpenTelemetry = &meshv1alpha1.TracingCollector{Service: "otel.tracing.svc.cluster.local", Port: 4317}
			s.Telemetry = &meshv1alpha1.TelemetrySpec{Tracing: tr}
		}, "tracing must set exactly one of zipkin or openTelemetry"),
		Entry("a collector without a service", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Telemetry = &meshv1alpha1.TelemetrySpec{Tracing: zipkin("", 9411)}
		}, "spec.telemetry.tracing.zipkin.service: Invalid value"),
		Entry("a collector's short name", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Telemetry = &meshv1alpha1.TelemetrySpec{Tracing: zipkin("zipkin", 9411)}
		}, "service must be the collector's fully qualified host name, such as otel-collector.observability.svc.cluster.local"),
		Entry("a collector's port out of range", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Telemetry = &meshv1alpha1.TelemetrySpec{Tracing: zipkin("zipkin.tracing.svc.cluster.local", 70000)}
		}, "spec.telemetry.tracing.zipkin.port: Invalid value: 70000"),
		Entry("an unknown access log encoding", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Telemetry = &meshv1alpha1.TelemetrySpec{AccessLogging: &meshv1alpha1.AccessLogging{Encoding: "XML"}}
		}, `spec.telemetry.accessLogging.encoding: Unsupported value: "XML"`),
		Entry("access logs in both the Telemetry and the mesh config", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.MeshConfig = &meshv1alpha1.MeshConfig{AccessLogFile: ptr.To("/dev/stdout")}
			s.Telemetry = &meshv1alpha1.TelemetrySpec{AccessLogging: &meshv1alpha1.AccessLogging{}}
		}, "set access logging in spec.telemetry.accessLogging or in spec.meshConfig.accessLogFile and accessLogEncoding, not both"),
		Entry("two sampling rates", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			tr := zipkin("zipkin.tracing.svc.cluster.local", 9411)
			tr.SamplingPercentage = "5"
			s.MeshConfig = &meshv1alpha1.MeshConfig{Tracing: &meshv1alpha1.Tracing{SamplingPercentage: "1"}}
			s.Telemetry = &meshv1alpha1.TelemetrySpec{Tracing: tr}
		}, "set the sampling percentage in spec.telemetry.tracing.samplingPercentage or in spec.meshConfig.tracing, not both"),
	)

	It("requires a collector's service and port", func() {
		// As written in YAML, without the fields (a Go client would send zero values).
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": meshv1alpha1.GroupVersion.String(), "kind": "MeshControlPlane",
			"metadata": map[string]any{"name": "invalid-telemetry"},
			"spec":     map[string]any{"telemetry": map[string]any{"tracing": map[string]any{"openTelemetry": map[string]any{}}}},
		}}
		err := k8s.Create(ctx(), u)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("spec.telemetry.tracing.openTelemetry.service: Required value"))
		Expect(err.Error()).To(ContainSubstring("spec.telemetry.tracing.openTelemetry.port: Required value"))
	})

	It("accepts a Telemetry without its own rate next to the mesh config's", func() {
		m := newMCP("telemetry-rate", "telemetry-rate-system", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.MeshConfig = &meshv1alpha1.MeshConfig{AccessLogFile: ptr.To("/dev/stdout"),
				Tracing: &meshv1alpha1.Tracing{SamplingPercentage: "1"}}
			s.Telemetry = &meshv1alpha1.TelemetrySpec{Tracing: zipkin("zipkin.tracing.svc.cluster.local", 9411)}
		})
		Expect(k8s.Create(ctx(), m, client.DryRunAll)).To(Succeed())
	})
})
