package render

import (
	"encoding/json"
	"regexp"
	"testing"

	. "github.com/onsi/gomega"
	meshconfig "istio.io/api/mesh/v1alpha1"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

func withTelemetry(t *meshv1alpha1.TelemetrySpec) func(*meshv1alpha1.MeshControlPlaneSpec) {
	return func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Telemetry = t }
}

// providersOf lists a mesh config's extension providers other than istiod's built-in
// defaults, as "name:kind service:port" (or the access log's path and format).
func providersOf(mc *meshconfig.MeshConfig) []string {
	var out []string
	for _, p := range mc.GetExtensionProviders() {
		switch {
		case p.GetZipkin() != nil:
			out = append(out, p.GetName()+":zipkin "+p.GetZipkin().GetService()+":"+itoa(int(p.GetZipkin().GetPort())))
		case p.GetOpentelemetry() != nil:
			out = append(out, p.GetName()+":opentelemetry "+p.GetOpentelemetry().GetService()+":"+itoa(int(p.GetOpentelemetry().GetPort())))
		case p.GetEnvoyFileAccessLog() != nil:
			format := "text"
			if l := p.GetEnvoyFileAccessLog().GetLogFormat().GetLabels(); l != nil {
				format = "json(" + itoa(len(l.GetFields())) + " labels)"
			}
			out = append(out, p.GetName()+":file "+p.GetEnvoyFileAccessLog().GetPath()+" "+format)
		default:
			out = append(out, p.GetName()+":other")
		}
	}
	return out
}

func TestTelemetry(t *testing.T) {
	collector := &meshv1alpha1.TracingCollector{Service: "otel-collector.observability.svc.cluster.local", Port: 4317}
	for _, tc := range []struct {
		name      string
		spec      func(*meshv1alpha1.MeshControlPlaneSpec)
		wantName  string         // "" for no Telemetry
		wantSpec  map[string]any // the Telemetry's spec as the API server receives it
		providers []string       // meshConfig.extensionProviders
	}{
		{name: "no telemetry"},
		{name: "metrics settings alone need no Telemetry", spec: withTelemetry(&meshv1alpha1.TelemetrySpec{
			Metrics: &meshv1alpha1.TelemetryMetrics{Prometheus: &meshv1alpha1.PrometheusMetrics{ScrapeAnnotations: ptr.To(false)}},
		})},
		{name: "access logs in text use Istio's built-in provider",
			spec:     withTelemetry(&meshv1alpha1.TelemetrySpec{AccessLogging: &meshv1alpha1.AccessLogging{}}),
			wantName: "mesh-default",
			wantSpec: map[string]any{"accessLogging": []any{map[string]any{"providers": []any{map[string]any{"name": "envoy"}}}}},
		},
		{name: "access logs in JSON define their provider",
			spec: withTelemetry(&meshv1alpha1.TelemetrySpec{AccessLogging: &meshv1alpha1.AccessLogging{
				Enabled: ptr.To(true), Encoding: "JSON"}}),
			wantName:  "mesh-default",
			wantSpec:  map[string]any{"accessLogging": []any{map[string]any{"providers": []any{map[string]any{"name": "envoy-json"}}}}},
			providers: []string{"envoy-json:file /dev/stdout json(0 labels)"},
		},
		{name: "access logs turned off",
			spec:     withTelemetry(&meshv1alpha1.TelemetrySpec{AccessLogging: &meshv1alpha1.AccessLogging{Enabled: ptr.To(false)}}),
			wantName: "mesh-default",
			wantSpec: map[string]any{"accessLogging": []any{map[string]any{"providers": []any{map[string]any{"name": "envoy"}}, "disabled": true}}},
		},
		{name: "zipkin with a sampling rate",
			spec: withTelemetry(&meshv1alpha1.TelemetrySpec{Tracing: &meshv1alpha1.TelemetryTracing{
				Zipkin: &meshv1alpha1.TracingCollector{Service: "zipkin.istio-system.svc.cluster.local", Port: 9411}, SamplingPercentage: "0.05"}}),
			wantName: "mesh-default",
			wantSpec: map[string]any{"tracing": []any{map[string]any{
				"providers": []any{map[string]any{"name": "zipkin"}}, "randomSamplingPercentage": 0.05}}},
			providers: []string{"zipkin:zipkin zipkin.istio-system.svc.cluster.local:9411"},
		},
		{name: "OpenTelemetry without a rate leaves sampling to the mesh default",
			spec:      withTelemetry(&meshv1alpha1.TelemetrySpec{Tracing: &meshv1alpha1.TelemetryTracing{OpenTelemetry: collector}}),
			wantName:  "mesh-default",
			wantSpec:  map[string]any{"tracing": []any{map[string]any{"providers": []any{map[string]any{"name": "otel-tracing"}}}}},
			providers: []string{"otel-tracing:opentelemetry otel-collector.observability.svc.cluster.local:4317"},
		},
		{name: "everything, on a named revision",
			spec: func(s *meshv1alpha1.MeshControlPlaneSpec) {
				s.Revision, s.Namespace = "canary", "mesh"
				s.Telemetry = &meshv1alpha1.TelemetrySpec{
					AccessLogging: &meshv1alpha1.AccessLogging{Encoding: "JSON"},
					Tracing:       &meshv1alpha1.TelemetryTracing{OpenTelemetry: collector, SamplingPercentage: "100"},
				}
			},
			wantName: "mesh-default-canary",
			wantSpec: map[string]any{
				"accessLogging": []any{map[string]any{"providers": []any{map[string]any{"name": "envoy-json"}}}},
				"tracing": []any{map[string]any{
					"providers": []any{map[string]any{"name": "otel-tracing"}}, "randomSamplingPercentage": float64(100)}},
			},
			providers: []string{"envoy-json:file /dev/stdout json(0 labels)",
				"otel-tracing:opentelemetry otel-collector.observability.svc.cluster.local:4317"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cp, objs := render(t, mcp(tc.spec))

			// istiod merges these into its built-in providers (prometheus, stackdriver, envoy).
			mc := parseMesh(t, cp)
			g.Expect(providersOf(mc)).To(Equal(tc.providers))

			tels := ofKind(objs, "Telemetry")
			if tc.wantName == "" {
				g.Expect(tels).To(BeEmpty())
				return
			}
			g.Expect(tels).To(HaveLen(1))
			tel := asMap(t, tels[0])
			g.Expect(tel).To(HaveKeyWithValue("apiVersion", "telemetry.istio.io/v1"))
			md := tel["metadata"].(map[string]any)
			g.Expect(md).To(HaveKeyWithValue("name", tc.wantName))
			g.Expect(md).To(HaveKeyWithValue("namespace", cp.Namespace), "the root namespace makes it mesh-wide")
			g.Expect(md["labels"]).To(HaveKeyWithValue(LabelIstioRev, cp.RevisionLabel()), "only this revision's istiod reads it")
			g.Expect(tel["spec"]).To(Equal(tc.wantSpec))

			// Every provider the Telemetry names exists: defined here, or built into istiod.
			defined := map[string]bool{"envoy": true}
			for _, p := range mc.GetExtensionProviders() {
				defined[p.GetName()] = true
			}
			raw, err := json.Marshal(tel["spec"])
			g.Expect(err).NotTo(HaveOccurred())
			for _, m := range regexp.MustCompile(`"name":"([^"]+)"`).FindAllStringSubmatch(string(raw), -1) {
				g.Expect(defined).To(HaveKey(m[1]))
			}
		})
	}
}

// The mesh config's own access log and tracing settings and the Telemetry's: what wins.
func TestTelemetryPrecedence(t *testing.T) {
	g := NewWithT(t)

	// The demo profile's access log gives way to spec.telemetry.accessLogging.
	cp, _ := render(t, mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) {
		s.Profile = meshv1alpha1.ProfileDemo
		s.Telemetry = &meshv1alpha1.TelemetrySpec{AccessLogging: &meshv1alpha1.AccessLogging{Enabled: ptr.To(false)}}
	}))
	g.Expect(parseMesh(t, cp).GetAccessLogFile()).To(BeEmpty())

	// Tracing alone leaves the mesh config's access log in place.
	cp, _ = render(t, mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) {
		s.MeshConfig = &meshv1alpha1.MeshConfig{AccessLogFile: ptr.To("/dev/stdout"), AccessLogEncoding: "JSON"}
		s.Telemetry = &meshv1alpha1.TelemetrySpec{Tracing: &meshv1alpha1.TelemetryTracing{
			Zipkin: &meshv1alpha1.TracingCollector{Service: "zipkin.tracing.svc.cluster.local", Port: 9411}}}
	}))
	mc := parseMesh(t, cp)
	g.Expect(mc.GetAccessLogFile()).To(Equal("/dev/stdout"))
	g.Expect(mc.GetAccessLogEncoding()).To(Equal(meshconfig.MeshConfig_JSON))

	// A Telemetry without a rate keeps spec.meshConfig.tracing as the mesh default.
	_, objs := render(t, mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) {
		s.MeshConfig = &meshv1alpha1.MeshConfig{Tracing: &meshv1alpha1.Tracing{SamplingPercentage: "25"}}
		s.Telemetry = &meshv1alpha1.TelemetrySpec{Tracing: &meshv1alpha1.TelemetryTracing{
			Zipkin: &meshv1alpha1.TracingCollector{Service: "zipkin.tracing.svc.cluster.local", Port: 9411}}}
	}))
	istiod := find[*appsv1ac.DeploymentApplyConfiguration](objs, "istiod")
	g.Expect(env(istiod.Spec.Template.Spec.Containers[0].Env)).To(HaveKeyWithValue("PILOT_TRACE_SAMPLING", "25"))
	g.Expect(asMap(t, ofKind(objs, "Telemetry")[0])["spec"]).NotTo(HaveKey(ContainSubstring("Sampling")))
}

func TestPrometheusScrapeAnnotations(t *testing.T) {
	scrape := func(v *bool) func(*meshv1alpha1.MeshControlPlaneSpec) {
		return func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Gateways = []meshv1alpha1.GatewaySpec{
				{Name: "ingress", Type: meshv1alpha1.GatewayTypeIngress},
				{Name: "egress", Type: meshv1alpha1.GatewayTypeEgress, Annotations: map[string]string{"prometheus.io/scrape": "true"}},
			}
			if v != nil {
				s.Telemetry = &meshv1alpha1.TelemetrySpec{Metrics: &meshv1alpha1.TelemetryMetrics{
					Prometheus: &meshv1alpha1.PrometheusMetrics{ScrapeAnnotations: v}}}
			}
		}
	}
	for _, tc := range []struct {
		name string
		spec func(*meshv1alpha1.MeshControlPlaneSpec)
		want bool
	}{
		{name: "default, as upstream", spec: scrape(nil), want: true},
		{name: "on", spec: scrape(ptr.To(true)), want: true},
		{name: "off", spec: scrape(ptr.To(false)), want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cp, objs := render(t, mcp(tc.spec))
			istiod := find[*appsv1ac.DeploymentApplyConfiguration](objs, "istiod").Spec.Template.Annotations
			ingress := find[*appsv1ac.DeploymentApplyConfiguration](objs, "ingress").Spec.Template.Annotations
			egress := find[*appsv1ac.DeploymentApplyConfiguration](objs, "egress").Spec.Template.Annotations
			g.Expect(parseMesh(t, cp).GetEnablePrometheusMerge().GetValue()).To(Equal(tc.want))
			inj, err := InjectionConfig(cp)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(inj.DisablePrometheusMerge).To(Equal(!tc.want), "injected pods follow the mesh config")
			if tc.want {
				g.Expect(istiod).To(HaveKeyWithValue("prometheus.io/scrape", "true"))
				g.Expect(istiod).To(HaveKeyWithValue("prometheus.io/port", "15014"))
				g.Expect(ingress).To(HaveKeyWithValue("prometheus.io/scrape", "true"))
				g.Expect(ingress).To(HaveKeyWithValue("prometheus.io/port", "15020"))
				g.Expect(ingress).To(HaveKeyWithValue("prometheus.io/path", "/stats/prometheus"))
			} else {
				for _, a := range []map[string]string{istiod, ingress} {
					g.Expect(a).NotTo(HaveKey(HavePrefix("prometheus.io/")))
				}
				g.Expect(egress).To(HaveKeyWithValue("prometheus.io/scrape", "true"), "the user's own annotations still apply")
				g.Expect(egress).NotTo(HaveKey("prometheus.io/port"))
			}
		})
	}
}

func TestTelemetryRejectsWhatTheSchemaRejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tracing *meshv1alpha1.TelemetryTracing
		want    string
	}{
		{name: "no collector", tracing: &meshv1alpha1.TelemetryTracing{SamplingPercentage: "1"},
			want: "spec.telemetry.tracing must set exactly one of zipkin or openTelemetry"},
		{name: "a rate above 100", tracing: &meshv1alpha1.TelemetryTracing{
			Zipkin: &meshv1alpha1.TracingCollector{Service: "z.z.svc", Port: 9411}, SamplingPercentage: "101"},
			want: `spec.telemetry.tracing.samplingPercentage "101" is not a percentage from 0 to 100`},
		{name: "a rate that is no number", tracing: &meshv1alpha1.TelemetryTracing{
			Zipkin: &meshv1alpha1.TracingCollector{Service: "z.z.svc", Port: 9411}, SamplingPercentage: "ten"},
			want: `spec.telemetry.tracing.samplingPercentage "ten" is not a percentage from 0 to 100`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cp, err := Resolve(mcp(withTelemetry(&meshv1alpha1.TelemetrySpec{Tracing: tc.tracing})))
			g.Expect(err).NotTo(HaveOccurred())
			_, err = Objects(cp)
			g.Expect(err).To(MatchError(tc.want))
		})
	}
}

// serviceHost and sampling mirror the CRD's CEL rules.
var (
	serviceHost = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)+$`)
	sampling    = regexp.MustCompile(`^(100([.]0{1,2})?|[0-9]{1,2}([.][0-9]{1,2})?)$`)
)

// FuzzTelemetry feeds the telemetry builders arbitrary collectors and rates: they must not
// panic, and for input the schema admits the mesh config must parse with Istio's types and
// name the collector, and the Telemetry must serialise with the rate given.
// Run longer with: go test ./internal/render -run '^$' -fuzz FuzzTelemetry -fuzztime 60s
func FuzzTelemetry(f *testing.F) {
	f.Add("otel-collector.observability.svc.cluster.local", 4317, "0.05", true, true, true)
	f.Add("observability/zipkin.example.com", 9411, "", false, false, false)
	f.Add("", 0, "100.00", false, true, true)
	f.Fuzz(func(t *testing.T, service string, port int, rate string, otel, jsonLogs, enabled bool) {
		collector := &meshv1alpha1.TracingCollector{Service: service, Port: int32(port)}
		tracing := &meshv1alpha1.TelemetryTracing{SamplingPercentage: rate}
		if otel {
			tracing.OpenTelemetry = collector
		} else {
			tracing.Zipkin = collector
		}
		al := &meshv1alpha1.AccessLogging{Enabled: ptr.To(enabled)}
		if jsonLogs {
			al.Encoding = "JSON"
		}
		cp, err := Resolve(mcp(withTelemetry(&meshv1alpha1.TelemetrySpec{AccessLogging: al, Tracing: tracing})))
		if err != nil {
			t.Fatal(err)
		}
		objs, err := Objects(cp) // must not panic, whatever the input
		admitted := serviceHost.MatchString(service) && len(service) <= 253 && port >= 1 && port <= 65535 &&
			(rate == "" || sampling.MatchString(rate))
		if !admitted {
			return
		}
		if err != nil {
			t.Fatalf("Objects: %v", err)
		}
		mc := parseMesh(t, cp)
		found := false
		for _, p := range providersOf(mc) {
			found = found || p == tracingProvider(tracing).Name+":"+map[bool]string{true: "opentelemetry", false: "zipkin"}[otel]+
				" "+service+":"+itoa(port)
		}
		if !found {
			t.Fatalf("the mesh config does not name the collector: %v", providersOf(mc))
		}
		tels := ofKind(objs, "Telemetry")
		if len(tels) != 1 {
			t.Fatalf("%d Telemetry objects, want 1", len(tels))
		}
		if _, err := json.Marshal(tels[0]); err != nil {
			t.Fatalf("the Telemetry does not serialise: %v", err)
		}
	})
}
