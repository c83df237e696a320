package canary

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/render"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func newCanary(mutate func(*meshv1alpha1.Canary)) *meshv1alpha1.Canary {
	c := &meshv1alpha1.Canary{
		ObjectMeta: metav1.ObjectMeta{Name: "web-rollout", Namespace: "shop", UID: "canary-uid"},
		Spec: meshv1alpha1.CanarySpec{
			TargetRef: meshv1alpha1.CanaryTargetRef{Name: "web"},
			Service:   meshv1alpha1.CanaryService{Port: 80, PortName: "http"},
			Analysis: meshv1alpha1.CanaryAnalysis{
				Steps: []int32{10, 50},
				Metrics: []meshv1alpha1.CanaryMetric{{
					Name: meshv1alpha1.MetricRequestSuccessRate, ThresholdRange: meshv1alpha1.ThresholdRange{Min: ptr.To("99")},
				}},
				Prometheus: meshv1alpha1.PrometheusSource{Address: "http://prometheus:9090"},
			},
		},
	}
	if mutate != nil {
		mutate(c)
	}
	return c
}

func newTarget(mutate func(*appsv1.Deployment)) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Generation: 3},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      map[string]string{"app": "web", "version": "v2"},
					Annotations: map[string]string{"prometheus.io/scrape": "true"},
				},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "web", Image: "example.com/web:2",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				}}},
			},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr.To(intstr.FromString("25%")), MaxSurge: ptr.To(intstr.FromString("25%")),
				},
			},
			MinReadySeconds:         5,
			ProgressDeadlineSeconds: ptr.To[int32](600),
			RevisionHistoryLimit:    ptr.To[int32](10),
		},
	}
	if mutate != nil {
		mutate(d)
	}
	return d
}

// asMap renders an apply configuration as the JSON the API server receives.
func asMap(g Gomega, v any) map[string]any {
	raw, err := json.Marshal(v)
	g.Expect(err).NotTo(HaveOccurred())
	m := map[string]any{}
	g.Expect(json.Unmarshal(raw, &m)).To(Succeed())
	return m
}

func TestNamesDeriveFromTheTarget(t *testing.T) {
	g := NewWithT(t)
	g.Expect(NamesOf(newCanary(nil))).To(Equal(Names{Apex: "web", Primary: "web-primary", Canary: "web-canary"}))
}

func TestPrimaryDeploymentRunsTheTargetsTemplateUnderItsOwnSelector(t *testing.T) {
	g := NewWithT(t)
	c, target := newCanary(nil), newTarget(nil)
	d := PrimaryDeployment(c, target, Primary{Template: PrimaryTemplate(target), Revision: "rev1", Replicas: 3})

	g.Expect(*d.Name).To(Equal("web-primary"))
	g.Expect(*d.Namespace).To(Equal("shop"))
	g.Expect(d.Labels).To(Equal(map[string]string{render.LabelManagedBy: render.ManagedByValue}))
	g.Expect(d.Annotations).To(Equal(map[string]string{AnnotationRevision: "rev1"}))
	g.Expect(d.OwnerReferences).To(HaveLen(1))
	owner := d.OwnerReferences[0]
	g.Expect(*owner.Kind).To(Equal("Canary"))
	g.Expect(*owner.Name).To(Equal("web-rollout"))
	g.Expect(*owner.Controller).To(BeTrue())

	spec := d.Spec
	g.Expect(*spec.Replicas).To(BeEquivalentTo(3))
	g.Expect(spec.Selector.MatchLabels).To(Equal(map[string]string{"app": "web-primary"}))
	g.Expect(spec.Template.Labels).To(Equal(map[string]string{"app": "web-primary", "version": "v2"}),
		"the selector's label gets the suffix; the others are kept")
	g.Expect(spec.Template.Annotations).To(Equal(target.Spec.Template.Annotations))
	g.Expect(*spec.Template.Spec.Containers[0].Image).To(Equal("example.com/web:2"))
	g.Expect(*spec.MinReadySeconds).To(BeEquivalentTo(5))
	g.Expect(*spec.ProgressDeadlineSeconds).To(BeEquivalentTo(600))
	g.Expect(*spec.RevisionHistoryLimit).To(BeEquivalentTo(10))
	g.Expect(*spec.Strategy.Type).To(Equal(appsv1.RollingUpdateDeploymentStrategyType))

	// The target's selector never selects the primary's pods, nor the primary's the target's.
	targetSel, err := metav1.LabelSelectorAsSelector(target.Spec.Selector)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(targetSel.Matches(labels.Set(spec.Template.Labels))).To(BeFalse())
	g.Expect(labels.SelectorFromSet(spec.Selector.MatchLabels).Matches(labels.Set(target.Spec.Template.Labels))).To(BeFalse())

	g.Expect(target.Spec.Template.Labels).To(HaveKeyWithValue("app", "web"), "the target is not modified")
}

func TestTargetScaleSetsOnlyReplicas(t *testing.T) {
	g := NewWithT(t)
	got := asMap(g, TargetScale(newCanary(nil), 0))
	g.Expect(got).To(Equal(map[string]any{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata":   map[string]any{"name": "web", "namespace": "shop"},
		"spec":       map[string]any{"replicas": float64(0)},
	}), "no labels, no owner reference: the Deployment stays the user's")
}

func TestServices(t *testing.T) {
	tests := []struct {
		name       string
		service    meshv1alpha1.CanaryService
		wantPort   map[string]any
		wantTarget any
	}{
		{
			name:     "defaults: port name http, target port = port",
			service:  meshv1alpha1.CanaryService{Port: 9898},
			wantPort: map[string]any{"name": "http", "port": float64(9898), "protocol": "TCP", "targetPort": float64(9898)},
		},
		{
			name:     "named target port",
			service:  meshv1alpha1.CanaryService{Port: 80, PortName: "grpc", TargetPort: ptr.To(intstr.FromString("grpc-api"))},
			wantPort: map[string]any{"name": "grpc", "port": float64(80), "protocol": "TCP", "targetPort": "grpc-api"},
		},
		{
			name:     "numbered target port",
			service:  meshv1alpha1.CanaryService{Port: 80, PortName: "http-web", TargetPort: ptr.To(intstr.FromInt32(8080))},
			wantPort: map[string]any{"name": "http-web", "port": float64(80), "protocol": "TCP", "targetPort": float64(8080)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			c := newCanary(func(c *meshv1alpha1.Canary) { c.Spec.Service = tt.service })
			svc := asMap(g, Service(c, "web-canary", map[string]string{"app": "web"}))
			spec := svc["spec"].(map[string]any)
			g.Expect(spec["ports"]).To(Equal([]any{tt.wantPort}))
			g.Expect(spec["selector"]).To(Equal(map[string]any{"app": "web"}))
			g.Expect(spec).NotTo(HaveKey("type"), "ClusterIP, the default")
			md := svc["metadata"].(map[string]any)
			g.Expect(md["labels"]).To(Equal(map[string]any{render.LabelManagedBy: render.ManagedByValue}))
			g.Expect(md["ownerReferences"]).To(HaveLen(1))
		})
	}
}

func TestSelectors(t *testing.T) {
	g := NewWithT(t)
	target := newTarget(func(d *appsv1.Deployment) {
		d.Spec.Selector.MatchLabels = map[string]string{"app": "web", "tier": "front"}
		d.Spec.Template.Labels = map[string]string{"app": "web", "tier": "front", "version": "v2"}
	})
	g.Expect(PrimarySelector(target)).To(Equal(map[string]string{"app": "web-primary", "tier": "front-primary"}))
	g.Expect(TargetSelector(target)).To(Equal(map[string]string{"app": "web", "tier": "front"}))
	TargetSelector(target)["app"] = "changed"
	g.Expect(target.Spec.Selector.MatchLabels).To(HaveKeyWithValue("app", "web"), "a copy")
}

func TestVirtualServiceSplitsTrafficAndCarriesTheRoute(t *testing.T) {
	tests := []struct {
		name   string
		weight int32
		want   []any
	}{
		{"all to primary", 0, []any{
			map[string]any{"destination": map[string]any{"host": "web-primary", "port": map[string]any{"number": float64(80)}}, "weight": float64(100)},
			map[string]any{"destination": map[string]any{"host": "web-canary", "port": map[string]any{"number": float64(80)}}},
		}},
		{"a step", 25, []any{
			map[string]any{"destination": map[string]any{"host": "web-primary", "port": map[string]any{"number": float64(80)}}, "weight": float64(75)},
			map[string]any{"destination": map[string]any{"host": "web-canary", "port": map[string]any{"number": float64(80)}}, "weight": float64(25)},
		}},
		{"all to the canary", 100, []any{
			map[string]any{"destination": map[string]any{"host": "web-primary", "port": map[string]any{"number": float64(80)}}},
			map[string]any{"destination": map[string]any{"host": "web-canary", "port": map[string]any{"number": float64(80)}}, "weight": float64(100)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			vs := asMap(g, VirtualService(newCanary(nil), tt.weight))
			spec := vs["spec"].(map[string]any)
			g.Expect(spec["hosts"]).To(Equal([]any{"web"}))
			g.Expect(spec).NotTo(HaveKey("gateways"), "the mesh's sidecars only")
			http := spec["http"].([]any)
			g.Expect(http).To(HaveLen(1))
			route := http[0].(map[string]any)
			g.Expect(route["name"]).To(Equal(RouteName))
			g.Expect(route["route"]).To(Equal(tt.want), "Istio leaves a weight of 0 out")
			g.Expect(route).NotTo(HaveKey("match"))
			g.Expect(route).NotTo(HaveKey("timeout"))
			g.Expect(route).NotTo(HaveKey("retries"))
		})
	}
}

// fullCanary sets every field that reaches the routing objects.
func fullCanary() *meshv1alpha1.Canary {
	return newCanary(func(c *meshv1alpha1.Canary) {
		c.Spec.Service = meshv1alpha1.CanaryService{
			Port: 80, PortName: "http-web", TargetPort: ptr.To(intstr.FromString("http")),
			Hosts:    []meshv1alpha1.Hostname{"web.example.com", "web", "*.shop.example.com"},
			Gateways: []meshv1alpha1.GatewayName{"istio-ingress/public", "mesh"},
			Match: []meshv1alpha1.HTTPMatch{
				{
					URI:     &meshv1alpha1.StringMatch{Prefix: ptr.To("/api")},
					Method:  &meshv1alpha1.StringMatch{Exact: ptr.To("GET")},
					Headers: map[string]meshv1alpha1.StringMatch{"x-canary": {Exact: ptr.To("always")}, "user-agent": {Regex: ptr.To(".*Firefox.*")}},
				},
				{URI: &meshv1alpha1.StringMatch{Exact: ptr.To("/healthz")}},
			},
			Timeout: &metav1.Duration{Duration: 15 * time.Second},
			Retries: &meshv1alpha1.HTTPRetry{Attempts: 3, PerTryTimeout: &metav1.Duration{Duration: 2500 * time.Millisecond}, RetryOn: "5xx,connect-failure"},
		}
	})
}

// TestGolden pins every object of a Canary with a full spec, so a change to what users get
// shows up in review. Regenerate with: go test ./internal/render/canary -update
func TestGolden(t *testing.T) {
	g := NewWithT(t)
	c, target := fullCanary(), newTarget(nil)
	n := NamesOf(c)
	objs := []any{
		PrimaryDeployment(c, target, Primary{Template: PrimaryTemplate(target), Revision: TemplateRevision(&target.Spec.Template), Replicas: 3}),
		Service(c, n.Apex, PrimarySelector(target)),
		Service(c, n.Primary, PrimarySelector(target)),
		Service(c, n.Canary, TargetSelector(target)),
		DestinationRule(c, n.Primary),
		DestinationRule(c, n.Canary),
		VirtualService(c, 25),
		TargetScale(c, 0),
	}
	var b strings.Builder
	for _, o := range objs {
		raw, err := json.Marshal(o)
		g.Expect(err).NotTo(HaveOccurred())
		y, err := yaml.JSONToYAML(raw)
		g.Expect(err).NotTo(HaveOccurred())
		b.WriteString("---\n")
		b.Write(y)
	}
	got := b.String()
	path := filepath.Join("testdata", "full-spec.golden.yaml")
	if *update {
		g.Expect(os.MkdirAll("testdata", 0o755)).To(Succeed())
		g.Expect(os.WriteFile(path, []byte(got), 0o644)).To(Succeed())
	}
	want, err := os.ReadFile(path)
	g.Expect(err).NotTo(HaveOccurred(), "reading the golden file (run with -update to create it)")
	g.Expect(got).To(Equal(string(want)), "rendered objects differ from %s; if intended, run go test ./internal/render/canary -update", path)
}

func TestVirtualServiceHostsListTheApexOnce(t *testing.T) {
	g := NewWithT(t)
	vs := VirtualService(fullCanary(), 10)
	g.Expect(vs.Spec.Hosts).To(Equal([]string{"web", "web.example.com", "*.shop.example.com"}))
	g.Expect(vs.Spec.Gateways).To(Equal([]string{"istio-ingress/public", "mesh"}))
	var sum int32
	for _, d := range vs.Spec.Http[0].Route {
		sum += d.Weight
	}
	g.Expect(sum).To(BeEquivalentTo(100))
}

func TestDestinationRules(t *testing.T) {
	g := NewWithT(t)
	dr := asMap(g, DestinationRule(newCanary(nil), "web-canary"))
	g.Expect(dr["apiVersion"]).To(Equal("networking.istio.io/v1"))
	g.Expect(dr["kind"]).To(Equal("DestinationRule"))
	g.Expect(dr["spec"]).To(Equal(map[string]any{"host": "web-canary"}))
	g.Expect(dr["metadata"].(map[string]any)["ownerReferences"]).To(HaveLen(1))
}
