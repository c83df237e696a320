package e2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/controllers/meshcontrolplane"
)

// gatewayObjects are the objects of a gateway, as ownedObjects lists them.
func gatewayObjects(namespace, name string, kinds ...string) []string {
	out := make([]string, 0, len(kinds))
	for _, k := range kinds {
		out = append(out, k+"/"+namespace+"/"+name)
	}
	return out
}

var gatewayKinds = []string{"ServiceAccount", "Role", "RoleBinding", "Deployment", "Service"}

var _ = Describe("Gateways", func() {
	It("runs ingress and egress gateways in any namespace, prunes a removed one and never deletes a namespace", Serial, func() {
		m := newMCP("gateways", "gateways-system", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Gateways = []meshv1alpha1.GatewaySpec{
				{Name: "istio-ingressgateway", Type: meshv1alpha1.GatewayTypeIngress, Namespace: "gw-ingress"},
				{Name: "istio-egressgateway", Type: meshv1alpha1.GatewayTypeEgress, Replicas: ptr.To[int32](2)},
			}
		})
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(deleteNamespaces, "gw-ingress") // runs last: after the spec checked it survives
		DeferCleanup(deleteMCP, m.Name)

		By("becoming Ready with both gateways rolled out; a pending load balancer does not hold it back")
		m = expectReady(m.Name)
		egressSvc := &corev1.Service{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: "gateways-system", Name: "istio-egressgateway"}, egressSvc)).To(Succeed())
		Expect(egressSvc.Spec.Type).To(Equal(corev1.ServiceTypeClusterIP))
		Expect(egressSvc.Spec.ClusterIP).NotTo(BeEmpty())
		Expect(m.Status.Gateways).To(ConsistOf(
			meshv1alpha1.GatewayStatus{Name: "istio-ingressgateway", Namespace: "gw-ingress", Type: meshv1alpha1.GatewayTypeIngress,
				Ready: true, Replicas: 1, ReadyReplicas: 1, Address: ""},
			meshv1alpha1.GatewayStatus{Name: "istio-egressgateway", Namespace: "gateways-system", Type: meshv1alpha1.GatewayTypeEgress,
				Ready: true, Replicas: 2, ReadyReplicas: 2, Address: egressSvc.Spec.ClusterIP},
		))
		Expect(m.Status.Components).To(ConsistOf(
			meshv1alpha1.ComponentStatus{Name: "istiod", Component: "Pilot", Namespace: "gateways-system", Ready: true, Replicas: 1, ReadyReplicas: 1},
			meshv1alpha1.ComponentStatus{Name: "istio-ingressgateway", Component: "IngressGateway", Namespace: "gw-ingress", Ready: true, Replicas: 1, ReadyReplicas: 1},
			meshv1alpha1.ComponentStatus{Name: "istio-egressgateway", Component: "EgressGateway", Namespace: "gateways-system", Ready: true, Replicas: 2, ReadyReplicas: 2},
		))
		ingressSvc := &corev1.Service{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: "gw-ingress", Name: "istio-ingressgateway"}, ingressSvc)).To(Succeed())
		Expect(ingressSvc.Spec.Type).To(Equal(corev1.ServiceTypeLoadBalancer))
		Expect(ingressSvc.Status.LoadBalancer.Ingress).To(BeEmpty(), "no load balancer controller runs on this cluster")

		objs := ownedObjects(Default, m.Name)
		Expect(objs).To(ContainElements(gatewayObjects("gw-ingress", "istio-ingressgateway", append(gatewayKinds, "HorizontalPodAutoscaler")...)))
		Expect(objs).To(ContainElements(gatewayObjects("gateways-system", "istio-egressgateway", append(gatewayKinds, "PodDisruptionBudget")...)))
		Expect(objs).NotTo(ContainElement("HorizontalPodAutoscaler/gateways-system/istio-egressgateway"), "fixed replicas")

		By("running the gateway pods on the fake node, as their own service accounts")
		for _, gw := range []struct{ namespace, name, istio string }{
			{"gw-ingress", "istio-ingressgateway", "ingressgateway"},
			{"gateways-system", "istio-egressgateway", "egressgateway"},
		} {
			pods := &corev1.PodList{}
			Expect(k8s.List(ctx(), pods, client.InNamespace(gw.namespace),
				client.MatchingLabels{"app": gw.name, "istio": gw.istio})).To(Succeed())
			Expect(pods.Items).NotTo(BeEmpty(), gw.name)
			for _, p := range pods.Items {
				Expect(p.Status.Phase).To(Equal(corev1.PodRunning), p.Name)
				Expect(p.Spec.ServiceAccountName).To(Equal(gw.name))
				Expect(p.Spec.Containers[0].Image).To(Equal("docker.io/istio/proxyv2:1.31.1"))
				Expect(p.Spec.Containers).To(HaveLen(1), "gateways are not injected")
			}
		}

		By("creating the gateway's namespace, annotated as the operator's")
		ns := &corev1.Namespace{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Name: "gw-ingress"}, ns)).To(Succeed())
		Expect(ns.Annotations).To(HaveKeyWithValue(meshcontrolplane.AnnotationCreatedBy, "gateways"))

		By("making no writes once Ready, through a resync")
		var since time.Time
		Eventually(func(g Gomega) {
			since = time.Now()
			g.Consistently(func() []string { return operatorWrites(since) }, 3*time.Second, 500*time.Millisecond).Should(BeEmpty())
		}, readyTimeout, poll).Should(Succeed())
		since = time.Now()
		Consistently(func() []string { return operatorWrites(since) }, syncPeriod+2*time.Second, time.Second).Should(BeEmpty())

		By("removing the egress gateway: its objects go, its namespace (the control plane's) stays")
		patchSpec(m.Name, func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Gateways = s.Gateways[:1] })
		Eventually(func(g Gomega) {
			objs := ownedObjects(g, m.Name)
			for _, o := range objs {
				g.Expect(o).NotTo(HaveSuffix("/istio-egressgateway"))
			}
			g.Expect(objs).To(ContainElements(gatewayObjects("gw-ingress", "istio-ingressgateway", gatewayKinds...)))
			pods := &corev1.PodList{}
			g.Expect(k8s.List(ctx(), pods, client.InNamespace("gateways-system"), client.MatchingLabels{"app": "istio-egressgateway"})).To(Succeed())
			g.Expect(pods.Items).To(BeEmpty())
		}, readyTimeout, poll).Should(Succeed())
		m = expectReady(m.Name)
		Expect(m.Status.Gateways).To(HaveLen(1))
		Expect(m.Status.Gateways[0].Name).To(Equal("istio-ingressgateway"))
		Expect(m.Status.Components).To(HaveLen(2))
		Expect(k8s.Get(ctx(), client.ObjectKey{Name: "gateways-system"}, ns)).To(Succeed())
		Expect(ns.DeletionTimestamp).To(BeNil())

		By("deleting the MeshControlPlane: the gateway goes, the namespace it created stays")
		deleteMCP(m.Name)
		Consistently(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: "gw-ingress"}, ns)).To(Succeed())
			g.Expect(ns.DeletionTimestamp).To(BeNil())
		}, 2*time.Second, poll).Should(Succeed())
	})

	It("reports a gateway whose name a foreign Deployment holds, touches nothing of it, and keeps istiod running", func() {
		createNamespace("gw-clash", nil)
		DeferCleanup(deleteNamespaces, "gw-clash")
		foreign := deployment("gw-clash", "edge", 0, nil)
		Expect(k8s.Create(ctx(), foreign)).To(Succeed())

		m := newMCP("gwclash", "gwclash-system", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Gateways = []meshv1alpha1.GatewaySpec{{Name: "edge", Type: meshv1alpha1.GatewayTypeIngress, Namespace: "gw-clash"}}
		})
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(deleteMCP, m.Name)

		Eventually(func(g Gomega) {
			m := getMCP(g, "gwclash")
			c := meta.FindStatusCondition(m.Status.Conditions, meshv1alpha1.ConditionStalled)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(c.Reason).To(Equal(meshv1alpha1.ReasonResourceConflict))
			g.Expect(c.Message).To(ContainSubstring("Deployment gw-clash/edge already exists and is not managed by this resource"))
			g.Expect(meta.IsStatusConditionFalse(m.Status.Conditions, meshv1alpha1.ConditionReady)).To(BeTrue())
			g.Expect(m.Status.Components).To(ContainElement(meshv1alpha1.ComponentStatus{
				Name: "istiod", Component: "Pilot", Namespace: "gwclash-system", Ready: true, Replicas: 1, ReadyReplicas: 1,
			}), "istiod runs regardless")
			g.Expect(m.Status.Gateways).To(ConsistOf(meshv1alpha1.GatewayStatus{
				Name: "edge", Namespace: "gw-clash", Type: meshv1alpha1.GatewayTypeIngress,
			}))
		}, readyTimeout, poll).Should(Succeed())

		By("leaving the foreign Deployment as it was, and holding back what would route to or scale it")
		Consistently(func(g Gomega) {
			// The deployment controller writes its status; the spec and metadata stay the user's.
			got := &appsv1.Deployment{}
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(foreign), got)).To(Succeed())
			g.Expect(got.Generation).To(Equal(foreign.Generation))
			g.Expect(got.Labels).To(Equal(foreign.Labels))
			g.Expect(got.OwnerReferences).To(BeEmpty())
			for _, mf := range got.ManagedFields {
				g.Expect(mf.Manager).NotTo(Equal(meshcontrolplane.FieldOwner))
			}
			key := client.ObjectKey{Namespace: "gw-clash", Name: "edge"}
			g.Expect(apierrors.IsNotFound(k8s.Get(ctx(), key, &corev1.Service{}))).To(BeTrue(), "no Service selects its pods")
			g.Expect(apierrors.IsNotFound(k8s.Get(ctx(), key, &autoscalingv2.HorizontalPodAutoscaler{}))).To(BeTrue(), "no HPA scales it")
		}, 3*time.Second, poll).Should(Succeed())

		By("recovering once the foreign Deployment is gone")
		Expect(k8s.Delete(ctx(), foreign)).To(Succeed())
		m = expectReady("gwclash")
		Expect(m.Status.Gateways).To(HaveLen(1))
		Expect(m.Status.Gateways[0].Ready).To(BeTrue())
	})
})

var _ = Describe("Gateway admission", func() {
	gateway := func(mutate func(*meshv1alpha1.GatewaySpec)) func(*meshv1alpha1.MeshControlPlaneSpec) {
		return func(s *meshv1alpha1.MeshControlPlaneSpec) {
			gw := meshv1alpha1.GatewaySpec{Name: "gw", Type: meshv1alpha1.GatewayTypeIngress}
			mutate(&gw)
			s.Gateways = []meshv1alpha1.GatewaySpec{gw}
		}
	}
	ports := func(ps ...meshv1alpha1.GatewayPort) func(*meshv1alpha1.GatewaySpec) {
		return func(gw *meshv1alpha1.GatewaySpec) { gw.Service = &meshv1alpha1.GatewayService{Ports: ps} }
	}

	DescribeTable("rejects invalid gateways with a message the user can act on",
		func(mutate func(*meshv1alpha1.MeshControlPlaneSpec), message string) {
			err := k8s.Create(ctx(), newMCP("invalid-gateway", "", mutate))
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("a port number twice", gateway(ports(
			meshv1alpha1.GatewayPort{Name: "http", Port: 80}, meshv1alpha1.GatewayPort{Name: "http2", Port: 80, TargetPort: 8080})),
			"gateway service ports must be unique: the same port number appears twice with the same protocol"),
		Entry("a port name twice", gateway(ports(
			meshv1alpha1.GatewayPort{Name: "http", Port: 80}, meshv1alpha1.GatewayPort{Name: "http", Port: 81})),
			`spec.gateways[0].service.ports[1]: Duplicate value: {"name":"http"}`),
		Entry("port 0", gateway(ports(meshv1alpha1.GatewayPort{Name: "http", Port: 0})),
			"spec.gateways[0].service.ports[0].port: Invalid value: 0: spec.gateways[0].service.ports[0].port in body should be greater than or equal to 1"),
		Entry("replicas and autoscaling together", gateway(func(gw *meshv1alpha1.GatewaySpec) {
			gw.Replicas, gw.Autoscaling = ptr.To[int32](2), &meshv1alpha1.Autoscaling{}
		}), "set either replicas (a fixed count) or autoscaling on a gateway, not both"),
		Entry("an autoscaling minimum above the maximum", gateway(func(gw *meshv1alpha1.GatewaySpec) {
			gw.Autoscaling = &meshv1alpha1.Autoscaling{MinReplicas: ptr.To[int32](4), MaxReplicas: ptr.To[int32](2)}
		}), "autoscaling.minReplicas must not exceed autoscaling.maxReplicas"),
		Entry("istiod's name", gateway(func(gw *meshv1alpha1.GatewaySpec) { gw.Name = "istiod" }),
			"gateway name must not be istiod, start with istiod- or start with istio-reader-service-account"),
		Entry("a revisioned istiod's name", gateway(func(gw *meshv1alpha1.GatewaySpec) { gw.Name = "istiod-canary" }),
			"gateway name must not be istiod, start with istiod-"),
		Entry("kube-system", gateway(func(gw *meshv1alpha1.GatewaySpec) { gw.Namespace = "kube-system" }),
			"a gateway must not run in kube-system, kube-public or kube-node-lease"),
		Entry("no type", gateway(func(gw *meshv1alpha1.GatewaySpec) { gw.Type = "" }),
			"spec.gateways[0].type: Unsupported value"),
		Entry("a name that is no DNS label", gateway(func(gw *meshv1alpha1.GatewaySpec) { gw.Name = "Public_GW" }),
			"spec.gateways[0].name: Invalid value"),
		Entry("one name twice", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Gateways = []meshv1alpha1.GatewaySpec{
				{Name: "gw", Type: meshv1alpha1.GatewayTypeIngress},
				{Name: "gw", Type: meshv1alpha1.GatewayTypeEgress, Namespace: "elsewhere"},
			}
		}, `spec.gateways[1]: Duplicate value: {"name":"gw"}`),
		Entry("a label the operator sets", gateway(func(gw *meshv1alpha1.GatewaySpec) { gw.Labels = map[string]meshv1alpha1.LabelValue{"app": "mine"} }),
			"gateway labels must not set app, istio"),
		Entry("a label value Kubernetes refuses", gateway(func(gw *meshv1alpha1.GatewaySpec) { gw.Labels = map[string]meshv1alpha1.LabelValue{"team": "a b"} }),
			`spec.gateways[0].labels.team: Invalid value: "a b"`),
		Entry("an annotation key Kubernetes refuses", gateway(func(gw *meshv1alpha1.GatewaySpec) {
			gw.Annotations = map[string]string{"bad key": "x"}
		}), "gateway annotation keys must be [prefix/]name"),
		Entry("an unknown service type", gateway(func(gw *meshv1alpha1.GatewaySpec) {
			gw.Service = &meshv1alpha1.GatewayService{Type: "ExternalName"}
		}), `spec.gateways[0].service.type: Unsupported value: "ExternalName"`),
	)

	It("accepts the same port number over TCP and UDP (HTTP/3 next to HTTPS)", func() {
		m := newMCP("gateway-http3", "gateway-http3-system", gateway(ports(
			meshv1alpha1.GatewayPort{Name: "https", Port: 443, TargetPort: 8443},
			meshv1alpha1.GatewayPort{Name: "http3", Port: 443, TargetPort: 8443, Protocol: corev1.ProtocolUDP},
		)))
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(deleteMCP, m.Name)
		expectReady(m.Name)
	})
})
