package render

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	autoscalingv2ac "k8s.io/client-go/applyconfigurations/autoscaling/v2"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

func withGateways(gws ...meshv1alpha1.GatewaySpec) func(*meshv1alpha1.MeshControlPlaneSpec) {
	return func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Gateways = gws }
}

// gatewayObjectsOf returns the rendered objects that belong to gateways, in order.
func gatewayObjectsOf(cp *ControlPlane, objs []Object) []Object {
	var out []Object
	for _, o := range objs {
		if cp.GatewayOf(o) != nil {
			out = append(out, o)
		}
	}
	return out
}

func servicePorts(svc *corev1ac.ServiceApplyConfiguration) []string {
	var out []string
	for _, p := range svc.Spec.Ports {
		out = append(out, *p.Name+":"+itoa(int(*p.Port))+"->"+p.TargetPort.String()+"/"+string(*p.Protocol))
	}
	return out
}

func containerPorts(c corev1ac.ContainerApplyConfiguration) []string {
	var out []string
	for _, p := range c.Ports {
		out = append(out, ptr.Deref(p.Name, "")+":"+itoa(int(*p.ContainerPort))+"/"+string(*p.Protocol))
	}
	return out
}

// A default ingress gateway, as users get it, is reviewed as a golden file.
// Regenerate with: go test ./internal/render -update
func TestGoldenIngressGateway(t *testing.T) {
	cp, objs := render(t, mcp(withGateways(meshv1alpha1.GatewaySpec{
		Name: "istio-ingressgateway", Type: meshv1alpha1.GatewayTypeIngress,
	})))
	got := toYAML(t, gatewayObjectsOf(cp, objs))
	path := filepath.Join("testdata", "ingress-gateway.golden.yaml")
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
		t.Errorf("rendered ingress gateway differs from %s; if intended, run go test ./internal/render -update\n%s", path, firstDiff(string(want), string(got)))
	}
}

func TestGatewayDefaults(t *testing.T) {
	tests := []struct {
		name        string
		gateway     meshv1alpha1.GatewaySpec
		istioLabel  string
		component   string
		serviceType corev1.ServiceType
		ports       []string
		podPorts    []string
	}{
		{
			name:        "ingress",
			gateway:     meshv1alpha1.GatewaySpec{Name: "istio-ingressgateway", Type: meshv1alpha1.GatewayTypeIngress},
			istioLabel:  "ingressgateway",
			component:   "IngressGateways",
			serviceType: corev1.ServiceTypeLoadBalancer,
			ports:       []string{"status-port:15021->15021/TCP", "http2:80->8080/TCP", "https:443->8443/TCP"},
			podPorts:    []string{":15021/TCP", ":8080/TCP", ":8443/TCP", "http-envoy-prom:15090/TCP"},
		},
		{
			name:        "egress",
			gateway:     meshv1alpha1.GatewaySpec{Name: "istio-egressgateway", Type: meshv1alpha1.GatewayTypeEgress},
			istioLabel:  "egressgateway",
			component:   "EgressGateways",
			serviceType: corev1.ServiceTypeClusterIP,
			ports:       []string{"http2:80->8080/TCP", "https:443->8443/TCP"},
			podPorts:    []string{":8080/TCP", ":8443/TCP", "http-envoy-prom:15090/TCP"},
		},
		{
			name:        "a name without the istio- prefix is its own istio label",
			gateway:     meshv1alpha1.GatewaySpec{Name: "public", Type: meshv1alpha1.GatewayTypeIngress},
			istioLabel:  "public",
			component:   "IngressGateways",
			serviceType: corev1.ServiceTypeLoadBalancer,
			ports:       []string{"status-port:15021->15021/TCP", "http2:80->8080/TCP", "https:443->8443/TCP"},
			podPorts:    []string{":15021/TCP", ":8080/TCP", ":8443/TCP", "http-envoy-prom:15090/TCP"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			cp, objs := render(t, mcp(withGateways(tt.gateway)))
			name := tt.gateway.Name
			g.Expect(names(gatewayObjectsOf(cp, objs))).To(Equal([]string{
				"ServiceAccount/" + name, "Role/" + name, "RoleBinding/" + name,
				"Deployment/" + name, "Service/" + name, "HorizontalPodAutoscaler/" + name,
			}), "no PDB with a single replica")
			for _, o := range gatewayObjectsOf(cp, objs) {
				g.Expect(*o.GetNamespace()).To(Equal("istio-system"), "the control plane's namespace by default")
			}
			selector := map[string]string{"app": name, "istio": tt.istioLabel}

			svc := find[*corev1ac.ServiceApplyConfiguration](objs, name)
			g.Expect(*svc.Spec.Type).To(Equal(tt.serviceType))
			g.Expect(servicePorts(svc)).To(Equal(tt.ports))
			g.Expect(svc.Spec.Selector).To(Equal(selector))
			g.Expect(svc.Labels).To(HaveKeyWithValue(labelComponent, tt.component))
			g.Expect(svc.Labels).To(HaveKeyWithValue(LabelGateway, name))

			d := find[*appsv1ac.DeploymentApplyConfiguration](objs, name)
			g.Expect(d.Spec.Replicas).To(BeNil(), "the HPA owns the replica count")
			g.Expect(d.Spec.Selector.MatchLabels).To(Equal(selector))
			tmpl := d.Spec.Template
			g.Expect(tmpl.Labels).To(HaveKeyWithValue("app", name))
			g.Expect(tmpl.Labels).To(HaveKeyWithValue("istio", tt.istioLabel))
			g.Expect(tmpl.Labels).To(HaveKeyWithValue("istio.io/rev", "default"))
			g.Expect(tmpl.Labels).To(HaveKeyWithValue("sidecar.istio.io/inject", "false"))
			g.Expect(tmpl.Labels).NotTo(HaveKey(LabelManagedBy), "pods belong to their ReplicaSet")
			g.Expect(tmpl.Annotations).To(Equal(map[string]string{
				"istio.io/rev": "default", "sidecar.istio.io/inject": "false",
				"prometheus.io/scrape": "true", "prometheus.io/port": "15020", "prometheus.io/path": "/stats/prometheus",
			}))
			pod := tmpl.Spec
			g.Expect(*pod.ServiceAccountName).To(Equal(name))
			g.Expect(*pod.SecurityContext.Sysctls[0].Name).To(Equal("net.ipv4.ip_unprivileged_port_start"))
			g.Expect(*pod.SecurityContext.Sysctls[0].Value).To(Equal("0"))
			c := pod.Containers[0]
			g.Expect(*c.Name).To(Equal("istio-proxy"))
			g.Expect(*c.Image).To(Equal("docker.io/istio/proxyv2:1.31.1"))
			g.Expect(c.Args).To(Equal([]string{"proxy", "router", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
				"--proxyLogLevel=warning", "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"}))
			g.Expect(containerPorts(c)).To(Equal(tt.podPorts))
			g.Expect(*c.ReadinessProbe.HTTPGet.Path).To(Equal("/healthz/ready"))
			g.Expect(c.ReadinessProbe.HTTPGet.Port.IntValue()).To(Equal(15021))
			g.Expect(*c.SecurityContext.RunAsUser).To(BeEquivalentTo(1337))
			g.Expect(*c.SecurityContext.RunAsNonRoot).To(BeTrue())
			g.Expect(*c.SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
			g.Expect(c.Resources.Requests.Cpu().String()).To(Equal("100m"))
			g.Expect(c.Resources.Limits.Memory().String()).To(Equal("1Gi"))
			e := env(c.Env)
			g.Expect(e).To(HaveKeyWithValue("CA_ADDR", "istiod.istio-system.svc:15012"))
			g.Expect(e).To(HaveKeyWithValue("PROXY_CONFIG", `{"discoveryAddress":"istiod.istio-system.svc:15012"}`))
			g.Expect(e).To(HaveKeyWithValue("ISTIO_META_WORKLOAD_NAME", name))
			g.Expect(e).To(HaveKeyWithValue("ISTIO_META_OWNER", "kubernetes://apis/apps/v1/namespaces/istio-system/deployments/"+name))
			g.Expect(e).To(HaveKeyWithValue("TRUST_DOMAIN", "cluster.local"))
			g.Expect(e).To(HaveKeyWithValue("ISTIO_META_CLUSTER_ID", "Kubernetes"))
			var volumes []string
			for _, v := range pod.Volumes {
				volumes = append(volumes, *v.Name)
			}
			g.Expect(volumes).To(ConsistOf("workload-socket", "credential-socket", "workload-certs", "istiod-ca-cert",
				"podinfo", "istio-envoy", "istio-data", "istio-token", "config-volume"))
			for _, m := range c.VolumeMounts {
				g.Expect(volumes).To(ContainElement(*m.Name), "every mount has its volume")
			}

			role := find[*rbacv1ac.RoleApplyConfiguration](objs, name)
			g.Expect(role.Rules).To(HaveLen(1))
			g.Expect(role.Rules[0].Resources).To(Equal([]string{"secrets"}))
			g.Expect(role.Rules[0].Verbs).To(ConsistOf("get", "watch", "list"))
			rb := find[*rbacv1ac.RoleBindingApplyConfiguration](objs, name)
			g.Expect(*rb.RoleRef.Name).To(Equal(name))
			g.Expect(*rb.Subjects[0].Name).To(Equal(name))
			g.Expect(*rb.Subjects[0].Namespace).To(Equal("istio-system"))

			hpa := find[*autoscalingv2ac.HorizontalPodAutoscalerApplyConfiguration](objs, name)
			g.Expect(*hpa.Spec.ScaleTargetRef.Name).To(Equal(name))
			g.Expect([]int32{*hpa.Spec.MinReplicas, *hpa.Spec.MaxReplicas,
				*hpa.Spec.Metrics[0].Resource.Target.AverageUtilization}).To(Equal([]int32{1, 5, 80}))
		})
	}
}

func TestGatewayServiceSettings(t *testing.T) {
	tests := []struct {
		name     string
		service  *meshv1alpha1.GatewayService
		gwType   meshv1alpha1.GatewayType
		wantType corev1.ServiceType
		ports    []string
		podPorts []string
	}{
		{
			name:     "ingress as ClusterIP keeps the default ports",
			gwType:   meshv1alpha1.GatewayTypeIngress,
			service:  &meshv1alpha1.GatewayService{Type: "ClusterIP"},
			wantType: corev1.ServiceTypeClusterIP,
			ports:    []string{"status-port:15021->15021/TCP", "http2:80->8080/TCP", "https:443->8443/TCP"},
			podPorts: []string{":15021/TCP", ":8080/TCP", ":8443/TCP", "http-envoy-prom:15090/TCP"},
		},
		{
			name:   "egress as NodePort with its own ports: target port and protocol default",
			gwType: meshv1alpha1.GatewayTypeEgress,
			service: &meshv1alpha1.GatewayService{Type: "NodePort", Ports: []meshv1alpha1.GatewayPort{
				{Name: "tls", Port: 443},
				{Name: "tcp-db", Port: 5432, TargetPort: 15432, Protocol: corev1.ProtocolTCP},
			}},
			wantType: corev1.ServiceTypeNodePort,
			ports:    []string{"tls:443->443/TCP", "tcp-db:5432->15432/TCP"},
			podPorts: []string{":443/TCP", ":15432/TCP", "http-envoy-prom:15090/TCP"},
		},
		{
			name:   "one target port under two service ports and protocols; Envoy's port is not repeated",
			gwType: meshv1alpha1.GatewayTypeIngress,
			service: &meshv1alpha1.GatewayService{Ports: []meshv1alpha1.GatewayPort{
				{Name: "https", Port: 443, TargetPort: 8443},
				{Name: "https-alt", Port: 8443, TargetPort: 8443},
				{Name: "http3", Port: 443, TargetPort: 8443, Protocol: corev1.ProtocolUDP},
				{Name: "envoy-prom", Port: 15090},
			}},
			wantType: corev1.ServiceTypeLoadBalancer,
			ports:    []string{"https:443->8443/TCP", "https-alt:8443->8443/TCP", "http3:443->8443/UDP", "envoy-prom:15090->15090/TCP"},
			podPorts: []string{":8443/TCP", ":8443/UDP", "http-envoy-prom:15090/TCP"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			_, objs := render(t, mcp(withGateways(meshv1alpha1.GatewaySpec{Name: "gw", Type: tt.gwType, Service: tt.service})))
			svc := find[*corev1ac.ServiceApplyConfiguration](objs, "gw")
			g.Expect(*svc.Spec.Type).To(Equal(tt.wantType))
			g.Expect(servicePorts(svc)).To(Equal(tt.ports))
			d := find[*appsv1ac.DeploymentApplyConfiguration](objs, "gw")
			g.Expect(containerPorts(d.Spec.Template.Spec.Containers[0])).To(Equal(tt.podPorts))
		})
	}
}

func TestGatewayScaling(t *testing.T) {
	tests := []struct {
		name         string
		gateway      meshv1alpha1.GatewaySpec
		wantReplicas *int32
		wantHPA      []int32 // min, max, cpu
		wantPDB      bool
	}{
		{name: "autoscales 1-5 at 80% by default", wantHPA: []int32{1, 5, 80}},
		{name: "one fixed replica: no HPA, no PDB",
			gateway: meshv1alpha1.GatewaySpec{Replicas: ptr.To[int32](1)}, wantReplicas: ptr.To[int32](1)},
		{name: "fixed replicas above one get a PDB",
			gateway: meshv1alpha1.GatewaySpec{Replicas: ptr.To[int32](3)}, wantReplicas: ptr.To[int32](3), wantPDB: true},
		{name: "autoscaling overrides",
			gateway: meshv1alpha1.GatewaySpec{Autoscaling: &meshv1alpha1.Autoscaling{
				MinReplicas: ptr.To[int32](2), MaxReplicas: ptr.To[int32](10), TargetCPUUtilizationPercentage: ptr.To[int32](60)}},
			wantHPA: []int32{2, 10, 60}, wantPDB: true},
		{name: "a minimum above the default maximum raises the maximum",
			gateway: meshv1alpha1.GatewaySpec{Autoscaling: &meshv1alpha1.Autoscaling{MinReplicas: ptr.To[int32](6)}},
			wantHPA: []int32{6, 6, 80}, wantPDB: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			gw := tt.gateway
			gw.Name, gw.Type = "gw", meshv1alpha1.GatewayTypeIngress
			// istiod scales independently of its gateways.
			_, objs := render(t, mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) {
				s.Pilot = &meshv1alpha1.PilotSpec{Replicas: ptr.To[int32](1)}
				s.Gateways = []meshv1alpha1.GatewaySpec{gw}
			}))
			g.Expect(find[*autoscalingv2ac.HorizontalPodAutoscalerApplyConfiguration](objs, "istiod")).To(BeNil())
			d := find[*appsv1ac.DeploymentApplyConfiguration](objs, "gw")
			g.Expect(d.Spec.Replicas).To(Equal(tt.wantReplicas))
			hpa := find[*autoscalingv2ac.HorizontalPodAutoscalerApplyConfiguration](objs, "gw")
			if tt.wantHPA == nil {
				g.Expect(hpa).To(BeNil())
			} else {
				g.Expect(hpa).NotTo(BeNil())
				g.Expect([]int32{*hpa.Spec.MinReplicas, *hpa.Spec.MaxReplicas,
					*hpa.Spec.Metrics[0].Resource.Target.AverageUtilization}).To(Equal(tt.wantHPA))
			}
			pdb := find[*policyv1ac.PodDisruptionBudgetApplyConfiguration](objs, "gw")
			g.Expect(pdb != nil).To(Equal(tt.wantPDB))
			if pdb != nil {
				g.Expect(pdb.Spec.MinAvailable.IntValue()).To(Equal(1))
				g.Expect(pdb.Spec.Selector.MatchLabels).To(Equal(d.Spec.Selector.MatchLabels))
				g.Expect(*pdb.Namespace).To(Equal("istio-system"))
			}
		})
	}
}

func TestGatewayRevision(t *testing.T) {
	tests := []struct {
		name       string
		cpRevision string
		gwRevision string
		wantRev    string
		wantIstiod string
		wantConfig string
		canonical  string
	}{
		{name: "the default revision", wantRev: "default", wantIstiod: "istiod.mesh.svc:15012", wantConfig: "istio", canonical: "latest"},
		{name: "the control plane's named revision", cpRevision: "canary",
			wantRev: "canary", wantIstiod: "istiod-canary.mesh.svc:15012", wantConfig: "istio-canary", canonical: "canary"},
		{name: "pinned to the default revision while the control plane is canary", cpRevision: "canary", gwRevision: "default",
			wantRev: "default", wantIstiod: "istiod.mesh.svc:15012", wantConfig: "istio", canonical: "latest"},
		{name: "pinned to another named revision", gwRevision: "blue",
			wantRev: "blue", wantIstiod: "istiod-blue.mesh.svc:15012", wantConfig: "istio-blue", canonical: "blue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			_, objs := render(t, mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) {
				s.Namespace, s.Revision = "mesh", tt.cpRevision
				s.Gateways = []meshv1alpha1.GatewaySpec{{Name: "gw", Type: meshv1alpha1.GatewayTypeIngress,
					Namespace: "edge", Revision: tt.gwRevision}}
			}))
			d := find[*appsv1ac.DeploymentApplyConfiguration](objs, "gw")
			g.Expect(d.Labels).To(HaveKeyWithValue(LabelIstioRev, tt.wantRev))
			g.Expect(d.Spec.Template.Labels).To(HaveKeyWithValue(LabelIstioRev, tt.wantRev))
			g.Expect(d.Spec.Template.Labels).To(HaveKeyWithValue("service.istio.io/canonical-revision", tt.canonical))
			g.Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue(LabelIstioRev, tt.wantRev))
			e := env(d.Spec.Template.Spec.Containers[0].Env)
			g.Expect(e).To(HaveKeyWithValue("CA_ADDR", tt.wantIstiod))
			g.Expect(e).To(HaveKeyWithValue("PROXY_CONFIG", `{"discoveryAddress":"`+tt.wantIstiod+`"}`))
			g.Expect(e).To(HaveKeyWithValue("ISTIO_META_OWNER", "kubernetes://apis/apps/v1/namespaces/edge/deployments/gw"))
			for _, v := range d.Spec.Template.Spec.Volumes {
				if *v.Name == "config-volume" {
					g.Expect(*v.ConfigMap.Name).To(Equal(tt.wantConfig))
				}
			}
			g.Expect(find[*corev1ac.ServiceApplyConfiguration](objs, "gw").Labels).To(HaveKeyWithValue(LabelIstioRev, tt.wantRev))
		})
	}
}

func TestGatewayNamespaces(t *testing.T) {
	g := NewWithT(t)
	cp, objs := render(t, mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) {
		s.Namespace = "mesh"
		s.Gateways = []meshv1alpha1.GatewaySpec{
			{Name: "public", Type: meshv1alpha1.GatewayTypeIngress, Namespace: "edge"},
			{Name: "internal", Type: meshv1alpha1.GatewayTypeIngress, Namespace: "edge"},
			{Name: "egress", Type: meshv1alpha1.GatewayTypeEgress},
		}
	}))
	g.Expect(cp.Namespaces()).To(Equal([]string{"edge", "mesh"}), "sorted, each once")
	for _, o := range gatewayObjectsOf(cp, objs) {
		want := "edge"
		if *o.GetName() == "egress" {
			want = "mesh"
		}
		g.Expect(*o.GetNamespace()).To(Equal(want), *o.GetKind()+"/"+*o.GetName())
	}
	rb := find[*rbacv1ac.RoleBindingApplyConfiguration](objs, "public")
	g.Expect(*rb.Subjects[0].Namespace).To(Equal("edge"))

	g.Expect(cp.GatewayOf(find[*appsv1ac.DeploymentApplyConfiguration](objs, "public")).Name).To(Equal("public"))
	g.Expect(cp.GatewayOf(find[*appsv1ac.DeploymentApplyConfiguration](objs, "istiod"))).To(BeNil())
	g.Expect(cp.GatewayOf(find[*corev1ac.ConfigMapApplyConfiguration](objs, "istio"))).To(BeNil())
	g.Expect(names(gatewayObjectsOf(cp, objs))).To(HaveLen(3 * 6))
}

func TestGatewaySettings(t *testing.T) {
	g := NewWithT(t)
	_, objs := render(t, mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) {
		s.Profile = meshv1alpha1.ProfileDemo
		s.MeshConfig = &meshv1alpha1.MeshConfig{
			TrustDomain: "example.org",
			DefaultConfig: &meshv1alpha1.ProxyConfig{
				HoldApplicationUntilProxyStarts: ptr.To(true),
				ProxyMetadata: map[string]meshv1alpha1.ProxyMetadataValue{
					"ISTIO_META_DNS_CAPTURE": "true", "ISTIO_META_CLUSTER_ID": "east"},
			},
		}
		s.Gateways = []meshv1alpha1.GatewaySpec{{
			Name: "gw", Type: meshv1alpha1.GatewayTypeIngress,
			Labels:       map[string]meshv1alpha1.LabelValue{"team": "edge"},
			Annotations:  map[string]string{"service.beta.kubernetes.io/aws-load-balancer-type": "nlb", "prometheus.io/scrape": "false"},
			NodeSelector: map[string]string{"pool": "edge"},
			Tolerations:  []corev1.Toleration{{Key: "edge", Operator: corev1.TolerationOpExists}},
			Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}}},
			}}},
		}, {
			Name: "sized", Type: meshv1alpha1.GatewayTypeEgress,
			Resources: &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")}},
		}}
	}))
	d := find[*appsv1ac.DeploymentApplyConfiguration](objs, "gw")
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	g.Expect(d.Spec.Template.Labels).To(HaveKeyWithValue("team", "edge"))
	g.Expect(d.Labels).NotTo(HaveKey("team"), "user labels go to pods and the Service only")
	g.Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue("service.beta.kubernetes.io/aws-load-balancer-type", "nlb"))
	g.Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue("prometheus.io/scrape", "false"), "the user's annotation wins")
	svc := find[*corev1ac.ServiceApplyConfiguration](objs, "gw")
	g.Expect(svc.Labels).To(HaveKeyWithValue("team", "edge"))
	g.Expect(svc.Annotations).To(HaveKeyWithValue("service.beta.kubernetes.io/aws-load-balancer-type", "nlb"))
	g.Expect(pod.NodeSelector).To(Equal(map[string]string{"pool": "edge"}))
	g.Expect(*pod.Tolerations[0].Key).To(Equal("edge"))
	g.Expect(*pod.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Key).To(Equal("zone"))
	g.Expect(c.Resources.Requests.Cpu().String()).To(Equal("10m"), "the demo profile's small proxies")
	g.Expect(c.Resources.Requests.Memory().String()).To(Equal("40Mi"))

	e := env(c.Env)
	g.Expect(e).To(HaveKeyWithValue("TRUST_DOMAIN", "example.org"))
	g.Expect(e).To(HaveKeyWithValue("ISTIO_META_MESH_ID", "example.org"))
	g.Expect(e).To(HaveKeyWithValue("ISTIO_META_DNS_CAPTURE", "true"))
	g.Expect(e).To(HaveKeyWithValue("ISTIO_META_CLUSTER_ID", "east"), "proxy metadata overrides a default in place")
	g.Expect(c.Env).To(HaveLen(len(e)), "no variable appears twice")
	pc := map[string]any{}
	g.Expect(json.Unmarshal([]byte(e["PROXY_CONFIG"]), &pc)).To(Succeed())
	g.Expect(pc).To(HaveKeyWithValue("holdApplicationUntilProxyStarts", true))
	g.Expect(pc).To(HaveKeyWithValue("discoveryAddress", "istiod.istio-system.svc:15012"))

	sized := find[*appsv1ac.DeploymentApplyConfiguration](objs, "sized").Spec.Template.Spec.Containers[0]
	g.Expect(sized.Resources.Requests).To(BeNil(), "resources are the user's, not merged with defaults")
	g.Expect(sized.Resources.Limits.Memory().String()).To(Equal("512Mi"))
}

func BenchmarkRenderWithGateways(b *testing.B) {
	m := mcp(withGateways(
		meshv1alpha1.GatewaySpec{Name: "istio-ingressgateway", Type: meshv1alpha1.GatewayTypeIngress, Namespace: "edge"},
		meshv1alpha1.GatewaySpec{Name: "istio-egressgateway", Type: meshv1alpha1.GatewayTypeEgress, Replicas: ptr.To[int32](2)},
	))
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
