package render

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/encoding/protojson"
	meshconfig "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	autoscalingv2ac "k8s.io/client-go/applyconfigurations/autoscaling/v2"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func mcp(mutate func(*meshv1alpha1.MeshControlPlaneSpec)) *meshv1alpha1.MeshControlPlane {
	m := &meshv1alpha1.MeshControlPlane{
		ObjectMeta: metav1.ObjectMeta{Name: "default", UID: "0b2ad3a4-7d7a-4a8e-9b0e-5d9e1c1f0001"},
	}
	if mutate != nil {
		mutate(&m.Spec)
	}
	return m
}

func render(t *testing.T, m *meshv1alpha1.MeshControlPlane) (*ControlPlane, []Object) {
	t.Helper()
	cp, err := Resolve(m)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	objs, err := Objects(cp)
	if err != nil {
		t.Fatalf("Objects: %v", err)
	}
	return cp, objs
}

// find returns the rendered object of type T named name.
func find[T Object](objs []Object, name string) T {
	var zero T
	for _, o := range objs {
		if typed, ok := o.(T); ok && *o.GetName() == name {
			return typed
		}
	}
	return zero
}

func names(objs []Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, *o.GetKind()+"/"+*o.GetName())
	}
	return out
}

func toYAML(t *testing.T, objs []Object) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	return buf.Bytes()
}

// The default profile's full output is reviewed as a golden file: any change to what
// users get shows up in review. Regenerate with: go test ./internal/render -update
func TestGoldenDefaultProfile(t *testing.T) {
	_, objs := render(t, mcp(nil))
	got := toYAML(t, objs)
	path := filepath.Join("testdata", "default-profile.golden.yaml")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("rendered default profile differs from %s; if intended, run go test ./internal/render -update\n%s", path, firstDiff(string(want), string(got)))
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return "line " + itoa(i+1) + ":\n- " + al[i] + "\n+ " + bl[i]
		}
	}
	return "lengths differ"
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestDefaultInventory(t *testing.T) {
	g := NewWithT(t)
	_, objs := render(t, mcp(nil))
	g.Expect(names(objs)).To(Equal([]string{
		"ServiceAccount/istiod",
		"ServiceAccount/istio-reader-service-account",
		"ConfigMap/istio",
		"ClusterRole/istiod-clusterrole-istio-system",
		"ClusterRoleBinding/istiod-clusterrole-istio-system",
		"ClusterRole/istiod-gateway-controller-istio-system",
		"ClusterRoleBinding/istiod-gateway-controller-istio-system",
		"ClusterRole/istio-reader-clusterrole-istio-system",
		"ClusterRoleBinding/istio-reader-clusterrole-istio-system",
		"Role/istiod",
		"RoleBinding/istiod",
		"Service/istiod",
		"Deployment/istiod",
		"HorizontalPodAutoscaler/istiod",
	}))
	for _, o := range objs {
		if o.GetNamespace() != nil {
			g.Expect(*o.GetNamespace()).To(Equal("istio-system"), *o.GetName())
		}
	}

	d := find[*appsv1ac.DeploymentApplyConfiguration](objs, "istiod")
	g.Expect(d.Spec.Replicas).To(BeNil(), "the HPA owns the replica count")
	c := d.Spec.Template.Spec.Containers[0]
	g.Expect(*c.Image).To(Equal("docker.io/istio/pilot:1.31.1"))
	g.Expect(c.Args).To(Equal([]string{"discovery", "--monitoringAddr=:15014", "--log_output_level=default:info",
		"--domain", "cluster.local", "--keepaliveMaxServerConnectionAge", "30m"}))
	g.Expect(c.Resources.Requests.Cpu().String()).To(Equal("500m"))
	g.Expect(c.Resources.Requests.Memory().String()).To(Equal("2Gi"))
	g.Expect(*c.SecurityContext.RunAsNonRoot).To(BeTrue())
	g.Expect(*c.SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
	g.Expect(c.SecurityContext.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
	g.Expect(env(c.Env)).To(HaveKeyWithValue("REVISION", "default"))
	g.Expect(env(c.Env)).To(HaveKeyWithValue("PILOT_CERT_PROVIDER", "istiod"))
	g.Expect(d.Spec.Template.Labels).To(HaveKeyWithValue("sidecar.istio.io/inject", "false"))
	g.Expect(d.Spec.Template.Labels).NotTo(HaveKey(LabelManagedBy), "pods belong to their ReplicaSet")
	g.Expect(d.Spec.Selector.MatchLabels).To(Equal(map[string]string{"istio": "pilot"}))

	hpa := find[*autoscalingv2ac.HorizontalPodAutoscalerApplyConfiguration](objs, "istiod")
	g.Expect(*hpa.Spec.MinReplicas).To(BeEquivalentTo(1))
	g.Expect(*hpa.Spec.MaxReplicas).To(BeEquivalentTo(5))
	g.Expect(*hpa.Spec.Metrics[0].Resource.Target.AverageUtilization).To(BeEquivalentTo(80))

	svc := find[*corev1ac.ServiceApplyConfiguration](objs, "istiod")
	g.Expect(svc.Spec.Selector).To(Equal(map[string]string{"app": "istiod", "istio": "pilot"}))
	var ports []string
	for _, p := range svc.Spec.Ports {
		ports = append(ports, *p.Name+":"+itoa(int(*p.Port))+"->"+p.TargetPort.String())
	}
	g.Expect(ports).To(Equal([]string{"grpc-xds:15010->15010", "https-dns:15012->15012",
		"https-webhook:443->15017", "http-monitoring:15014->15014"}))
}

func env(vars []corev1ac.EnvVarApplyConfiguration) map[string]string {
	out := map[string]string{}
	for _, e := range vars {
		out[*e.Name] = ptr.Deref(e.Value, "<from>")
	}
	return out
}

func TestEveryObjectIsOwnedAndLabelled(t *testing.T) {
	g := NewWithT(t)
	m := mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) {
		s.Pilot = &meshv1alpha1.PilotSpec{Replicas: ptr.To[int32](3)}
		s.Gateways = []meshv1alpha1.GatewaySpec{
			{Name: "ingress", Type: meshv1alpha1.GatewayTypeIngress, Namespace: "edge", Replicas: ptr.To[int32](2)},
			{Name: "egress", Type: meshv1alpha1.GatewayTypeEgress},
		}
		s.Security = &meshv1alpha1.SecuritySpec{
			MTLS: &meshv1alpha1.MTLSSpec{Mode: meshv1alpha1.MTLSModeStrict},
			CertificateAuthority: &meshv1alpha1.CertificateAuthority{CertManager: &meshv1alpha1.CertManagerCA{
				IssuerRef: meshv1alpha1.IssuerReference{Name: "ca"},
			}},
		}
		s.Telemetry = &meshv1alpha1.TelemetrySpec{
			AccessLogging: &meshv1alpha1.AccessLogging{},
			Tracing: &meshv1alpha1.TelemetryTracing{
				Zipkin: &meshv1alpha1.TracingCollector{Service: "zipkin.tracing.svc.cluster.local", Port: 9411}},
		}
	})
	cp, err := Resolve(m)
	g.Expect(err).NotTo(HaveOccurred())
	cp.CA.Data = map[string][]byte{"ca-cert.pem": []byte("x")}
	cp.Validation = &ValidationEndpoint{}
	objs, err := Objects(cp)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ofKind(objs, "ValidatingWebhookConfiguration")).To(HaveLen(1))
	g.Expect(ofKind(objs, "PeerAuthentication")).To(HaveLen(1))
	g.Expect(ofKind(objs, CertificateKind)).To(HaveLen(1))
	g.Expect(ofKind(objs, "Secret")).To(HaveLen(1))
	g.Expect(ofKind(objs, "Telemetry")).To(HaveLen(1))
	for _, o := range objs {
		raw, err := json.Marshal(o)
		g.Expect(err).NotTo(HaveOccurred())
		var u struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		g.Expect(json.Unmarshal(raw, &u)).To(Succeed())
		g.Expect(u.Metadata.Labels).To(HaveKeyWithValue(LabelManagedBy, ManagedByValue), *o.GetName())
		g.Expect(u.Metadata.Labels).To(HaveKeyWithValue(LabelControlPlane, "default"), *o.GetName())
		g.Expect(u.Metadata.OwnerReferences).To(HaveLen(1), *o.GetName())
		ref := u.Metadata.OwnerReferences[0]
		g.Expect(ref.UID).To(Equal(m.UID))
		g.Expect(*ref.Controller).To(BeTrue())
		g.Expect(validation.IsDNS1123Subdomain(*o.GetName())).To(BeEmpty())
	}
}

func TestRevisionSuffixesNamesAndSelectors(t *testing.T) {
	g := NewWithT(t)
	cp, objs := render(t, mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Revision = "canary"; s.Namespace = "mesh" }))
	g.Expect(names(objs)).To(ContainElements(
		"ServiceAccount/istiod-canary",
		"ServiceAccount/istio-reader-service-account-canary",
		"ConfigMap/istio-canary",
		"ClusterRole/istiod-clusterrole-canary-mesh",
		"ClusterRole/istiod-gateway-controller-canary-mesh",
		"ClusterRole/istio-reader-clusterrole-canary-mesh",
		"Role/istiod-canary",
		"Service/istiod-canary",
		"Deployment/istiod-canary",
		"HorizontalPodAutoscaler/istiod-canary",
	))
	d := find[*appsv1ac.DeploymentApplyConfiguration](objs, "istiod-canary")
	g.Expect(d.Spec.Selector.MatchLabels).To(Equal(map[string]string{"app": "istiod", "istio.io/rev": "canary"}))
	g.Expect(d.Spec.Template.Labels).To(HaveKeyWithValue("istio.io/rev", "canary"))
	g.Expect(env(d.Spec.Template.Spec.Containers[0].Env)).To(HaveKeyWithValue("REVISION", "canary"))
	g.Expect(*d.Spec.Template.Spec.ServiceAccountName).To(Equal("istiod-canary"))
	svc := find[*corev1ac.ServiceApplyConfiguration](objs, "istiod-canary")
	g.Expect(svc.Spec.Selector).To(Equal(map[string]string{"app": "istiod", "istio.io/rev": "canary"}))
	crb := find[*rbacv1ac.ClusterRoleBindingApplyConfiguration](objs, "istiod-clusterrole-canary-mesh")
	g.Expect(*crb.Subjects[0].Name).To(Equal("istiod-canary"))
	g.Expect(*crb.Subjects[0].Namespace).To(Equal("mesh"))
	g.Expect(cp.DiscoveryAddress()).To(Equal("istiod-canary.mesh.svc:15012"))
}

func TestScaling(t *testing.T) {
	tests := []struct {
		name         string
		spec         func(*meshv1alpha1.MeshControlPlaneSpec)
		wantReplicas *int32
		wantHPA      []int32 // min, max, cpu
		wantPDB      bool
	}{
		{name: "default profile autoscales 1-5 at 80%", wantHPA: []int32{1, 5, 80}},
		{name: "fixed single replica", spec: func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Pilot = &meshv1alpha1.PilotSpec{Replicas: ptr.To[int32](1)}
		}, wantReplicas: ptr.To[int32](1)},
		{name: "fixed replicas above one get a PDB", spec: func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Pilot = &meshv1alpha1.PilotSpec{Replicas: ptr.To[int32](3)}
		}, wantReplicas: ptr.To[int32](3), wantPDB: true},
		{name: "autoscaling overrides", spec: func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Pilot = &meshv1alpha1.PilotSpec{Autoscaling: &meshv1alpha1.Autoscaling{
				MinReplicas: ptr.To[int32](2), MaxReplicas: ptr.To[int32](8), TargetCPUUtilizationPercentage: ptr.To[int32](60)}}
		}, wantHPA: []int32{2, 8, 60}, wantPDB: true},
		{name: "a minimum above the default maximum raises the maximum", spec: func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Pilot = &meshv1alpha1.PilotSpec{Autoscaling: &meshv1alpha1.Autoscaling{MinReplicas: ptr.To[int32](7)}}
		}, wantHPA: []int32{7, 7, 80}, wantPDB: true},
		{name: "demo profile runs one fixed replica", spec: func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Profile = meshv1alpha1.ProfileDemo
		}, wantReplicas: ptr.To[int32](1)},
		{name: "demo profile can still autoscale", spec: func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Profile = meshv1alpha1.ProfileDemo
			s.Pilot = &meshv1alpha1.PilotSpec{Autoscaling: &meshv1alpha1.Autoscaling{}}
		}, wantHPA: []int32{1, 5, 80}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			_, objs := render(t, mcp(tt.spec))
			d := find[*appsv1ac.DeploymentApplyConfiguration](objs, "istiod")
			g.Expect(d.Spec.Replicas).To(Equal(tt.wantReplicas))
			hpa := find[*autoscalingv2ac.HorizontalPodAutoscalerApplyConfiguration](objs, "istiod")
			if tt.wantHPA == nil {
				g.Expect(hpa).To(BeNil())
			} else {
				g.Expect(hpa).NotTo(BeNil())
				g.Expect([]int32{*hpa.Spec.MinReplicas, *hpa.Spec.MaxReplicas,
					*hpa.Spec.Metrics[0].Resource.Target.AverageUtilization}).To(Equal(tt.wantHPA))
			}
			pdb := find[*policyv1ac.PodDisruptionBudgetApplyConfiguration](objs, "istiod")
			g.Expect(pdb != nil).To(Equal(tt.wantPDB))
			if pdb != nil {
				g.Expect(pdb.Spec.MinAvailable.IntValue()).To(Equal(1))
				g.Expect(pdb.Spec.Selector.MatchLabels).To(Equal(d.Spec.Selector.MatchLabels))
			}
		})
	}
}

// parseMesh parses rendered mesh config the way istiod does (Istio's own proto types), and
// strictly: an unknown or misspelt field fails.
func parseMesh(t *testing.T, cp *ControlPlane) *meshconfig.MeshConfig {
	t.Helper()
	out, err := MeshConfigYAML(cp)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	mc := &meshconfig.MeshConfig{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, mc); err != nil {
		t.Fatalf("istio cannot parse the rendered mesh config: %v\n%s", err, out)
	}
	return mc
}

func TestMeshConfig(t *testing.T) {
	g := NewWithT(t)

	cp, _ := render(t, mcp(nil))
	mc := parseMesh(t, cp)
	g.Expect(mc.GetDefaultConfig().GetDiscoveryAddress()).To(Equal("istiod.istio-system.svc:15012"))
	g.Expect(mc.GetRootNamespace()).To(Equal("istio-system"))
	g.Expect(mc.GetTrustDomain()).To(Equal("cluster.local"))
	g.Expect(mc.GetEnablePrometheusMerge().GetValue()).To(BeTrue())
	g.Expect(mc.GetDefaultProviders().GetMetrics()).To(Equal([]string{"prometheus"}))
	g.Expect(mc.GetAccessLogFile()).To(BeEmpty())

	cp, _ = render(t, mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) {
		s.MeshConfig = &meshv1alpha1.MeshConfig{
			AccessLogFile:         ptr.To("/dev/stdout"),
			AccessLogEncoding:     "JSON",
			TrustDomain:           "example.org",
			OutboundTrafficPolicy: &meshv1alpha1.OutboundTrafficPolicy{Mode: "REGISTRY_ONLY"},
			DefaultConfig: &meshv1alpha1.ProxyConfig{
				HoldApplicationUntilProxyStarts: ptr.To(true),
				TerminationDrainDuration:        &metav1.Duration{Duration: 45 * time.Second},
				ProxyMetadata:                   map[string]meshv1alpha1.ProxyMetadataValue{"ISTIO_META_DNS_CAPTURE": "true"},
			},
		}
	}))
	mc = parseMesh(t, cp)
	g.Expect(mc.GetAccessLogFile()).To(Equal("/dev/stdout"))
	g.Expect(mc.GetAccessLogEncoding()).To(Equal(meshconfig.MeshConfig_JSON))
	g.Expect(mc.GetTrustDomain()).To(Equal("example.org"))
	g.Expect(mc.GetDefaultConfig().GetHoldApplicationUntilProxyStarts().GetValue()).To(BeTrue())
	g.Expect(mc.GetDefaultConfig().GetTerminationDrainDuration().AsDuration()).To(Equal(45 * time.Second))
	g.Expect(mc.GetDefaultConfig().GetProxyMetadata()).To(HaveKeyWithValue("ISTIO_META_DNS_CAPTURE", "true"))
	// REGISTRY_ONLY is the proto's zero value: it must still be written, since istiod
	// overlays this YAML on its own default (ALLOW_ANY).
	out, _ := MeshConfigYAML(cp)
	g.Expect(out).To(ContainSubstring("mode: REGISTRY_ONLY"))

	// An explicit empty access log file turns the demo profile's access logs off.
	cp, _ = render(t, mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) {
		s.Profile = meshv1alpha1.ProfileDemo
		s.MeshConfig = &meshv1alpha1.MeshConfig{AccessLogFile: ptr.To("")}
	}))
	g.Expect(parseMesh(t, cp).GetAccessLogFile()).To(BeEmpty())
}

func TestDemoProfile(t *testing.T) {
	g := NewWithT(t)
	cp, objs := render(t, mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Profile = meshv1alpha1.ProfileDemo }))
	g.Expect(parseMesh(t, cp).GetAccessLogFile()).To(Equal("/dev/stdout"))
	c := find[*appsv1ac.DeploymentApplyConfiguration](objs, "istiod").Spec.Template.Spec.Containers[0]
	g.Expect(c.Resources.Requests.Cpu().String()).To(Equal("10m"))
	g.Expect(c.Resources.Requests.Memory().String()).To(Equal("100Mi"))
	g.Expect(env(c.Env)).To(HaveKeyWithValue("PILOT_TRACE_SAMPLING", "100"))
}

func TestPilotSettings(t *testing.T) {
	g := NewWithT(t)
	_, objs := render(t, mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) {
		s.Hub = "registry.example.com/mirror/istio"
		s.Version = "1.29.6"
		s.MeshConfig = &meshv1alpha1.MeshConfig{Tracing: &meshv1alpha1.Tracing{SamplingPercentage: "0.5"}}
		s.Pilot = &meshv1alpha1.PilotSpec{
			Resources: &corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("4Gi")},
			},
			NodeSelector: map[string]string{"pool": "system"},
			Tolerations:  []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "istio", Effect: corev1.TaintEffectNoSchedule}},
			Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}}},
			}}},
			Env: []corev1.EnvVar{{Name: "PILOT_ENABLE_ANALYSIS", Value: "true"}, {Name: "PILOT_PUSH_THROTTLE", Value: "50"}},
		}
	}))
	d := find[*appsv1ac.DeploymentApplyConfiguration](objs, "istiod")
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	g.Expect(*c.Image).To(Equal("registry.example.com/mirror/istio/pilot:1.29.6"))
	g.Expect(c.Resources.Requests.Cpu().String()).To(Equal("1"))
	g.Expect(c.Resources.Requests.Memory().IsZero()).To(BeTrue(), "requests are the user's, not merged with defaults")
	g.Expect(c.Resources.Limits.Memory().String()).To(Equal("4Gi"))
	g.Expect(pod.NodeSelector).To(Equal(map[string]string{"pool": "system"}))
	g.Expect(*pod.Tolerations[0].Key).To(Equal("dedicated"))
	g.Expect(*pod.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Key).To(Equal("zone"))

	e := env(c.Env)
	g.Expect(e).To(HaveKeyWithValue("PILOT_ENABLE_ANALYSIS", "true"), "the spec overrides a default")
	g.Expect(e).To(HaveKeyWithValue("PILOT_PUSH_THROTTLE", "50"))
	g.Expect(e).To(HaveKeyWithValue("PILOT_TRACE_SAMPLING", "0.5"))
	var order []string
	for _, v := range c.Env {
		order = append(order, *v.Name)
	}
	g.Expect(order).To(HaveLen(len(e)), "no variable appears twice")
	g.Expect(order[len(order)-1]).To(Equal("PILOT_PUSH_THROTTLE"), "new variables come after the defaults")
}

func TestResolveRejectsUnsupportedVersion(t *testing.T) {
	g := NewWithT(t)
	_, err := Resolve(mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Version = "1.20.0" }))
	g.Expect(err).To(MatchError(ContainSubstring(`Istio version "1.20.0" is not supported; supported versions: 1.31.1, 1.30.3, 1.29.6`)))
}

func TestRenderIsDeterministic(t *testing.T) {
	g := NewWithT(t)
	spec := func(s *meshv1alpha1.MeshControlPlaneSpec) {
		s.MeshConfig = &meshv1alpha1.MeshConfig{DefaultConfig: &meshv1alpha1.ProxyConfig{
			ProxyMetadata: map[string]meshv1alpha1.ProxyMetadataValue{"A": "1", "B": "2", "C": "3", "D": "4"}}}
		s.Pilot = &meshv1alpha1.PilotSpec{NodeSelector: map[string]string{"x": "1", "y": "2", "z": "3"}}
	}
	_, first := render(t, mcp(spec))
	want := toYAML(t, first)
	for range 20 {
		_, again := render(t, mcp(spec))
		g.Expect(toYAML(t, again)).To(Equal(want))
	}
}

func BenchmarkRenderFullInstall(b *testing.B) {
	m := mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) {
		s.MeshConfig = &meshv1alpha1.MeshConfig{AccessLogFile: ptr.To("/dev/stdout")}
		s.Pilot = &meshv1alpha1.PilotSpec{Env: []corev1.EnvVar{{Name: "PILOT_PUSH_THROTTLE", Value: "50"}}}
	})
	b.ReportAllocs()
	for b.Loop() {
		cp, err := Resolve(m)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Objects(cp); err != nil {
			b.Fatal(err)
		}
	}
}
