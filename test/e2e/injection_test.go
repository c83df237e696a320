package e2e

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/devcluster"
	"github.com/meshplane/meshplane/internal/operator"
)

// createNamespace creates a namespace and waits for its default service account, which
// pods need (kube-controller-manager creates it, as in any cluster).
func createNamespace(name string, labels map[string]string) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	ExpectWithOffset(1, k8s.Create(ctx(), ns)).To(Succeed())
	EventuallyWithOffset(1, func() error {
		return k8s.Get(ctx(), client.ObjectKey{Namespace: name, Name: "default"}, &corev1.ServiceAccount{})
	}, readyTimeout, poll).Should(Succeed())
}

// deleteNamespaces deletes namespaces and waits until they (and so their pods) are gone,
// so later specs count no leftover pods.
func deleteNamespaces(names ...string) {
	for _, n := range names {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}
		Expect(client.IgnoreNotFound(k8s.Delete(ctx(), ns))).To(Succeed())
	}
	Eventually(func(g Gomega) {
		for _, n := range names {
			g.Expect(apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKey{Name: n}, &corev1.Namespace{}))).To(BeTrue(), n)
		}
	}, 2*readyTimeout, poll).Should(Succeed())
}

func deployment(namespace, name string, replicas int32, podLabels map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	for k, v := range podLabels {
		labels[k] = v
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "registry.example/app:1",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
						HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8080)}}},
				}}},
			},
		},
	}
}

func pod(namespace, name string, labels, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}
}

func containerNames(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func injected(p *corev1.Pod) bool {
	_, ok := p.Annotations["sidecar.istio.io/status"]
	return ok && (contains(containerNames(p.Spec.Containers), "istio-proxy") || contains(containerNames(p.Spec.InitContainers), "istio-proxy"))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func envOf(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func proxyOf(p *corev1.Pod) corev1.Container {
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		if c.Name == "istio-proxy" {
			return c
		}
	}
	Fail("no istio-proxy in pod " + p.Name)
	return corev1.Container{}
}

func podsOf(g Gomega, namespace, app string) []corev1.Pod {
	pods := &corev1.PodList{}
	g.Expect(k8s.List(ctx(), pods, client.InNamespace(namespace), client.MatchingLabels{"app": app})).To(Succeed())
	return pods.Items
}

var _ = Describe("Sidecar injection", Ordered, func() {
	BeforeAll(func() {
		m := newMCP("mesh", "mesh-system", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.MeshConfig = &meshv1alpha1.MeshConfig{DefaultConfig: &meshv1alpha1.ProxyConfig{HoldApplicationUntilProxyStarts: ptr.To(true)}}
		})
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(deleteMCP, m.Name)
		expectReady(m.Name)
		createNamespace("apps", map[string]string{"istio-injection": "enabled"})
		createNamespace("plain", nil)
		DeferCleanup(deleteNamespaces, "apps", "plain", "canary-apps")
	})

	It("routes pods to the operator through a webhook configuration it owns", func() {
		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Name: "istio-sidecar-injector"}, mwc)).To(Succeed())
		Expect(mwc.Webhooks).To(HaveLen(4))
		secret := &corev1.Secret{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: devcluster.OperatorNamespace, Name: operator.CertSecretName}, secret)).To(Succeed())
		for _, w := range mwc.Webhooks {
			Expect(*w.ClientConfig.URL).To(Equal(cluster.WebhookURL + "/inject/mesh"))
			Expect(string(w.ClientConfig.CABundle)).To(HavePrefix("-----BEGIN CERTIFICATE-----"))
			Expect(w.ClientConfig.CABundle).To(Equal(secret.Data["ca.crt"]), "the CA bundle is the operator's current one")
		}
		Expect(mwc.OwnerReferences).To(HaveLen(1))
		Expect(mwc.OwnerReferences[0].Name).To(Equal("mesh"))
	})

	It("injects a Deployment's pods in an injection-enabled namespace, and they run", func() {
		Expect(k8s.Create(ctx(), deployment("apps", "web", 2, nil))).To(Succeed())
		Eventually(func(g Gomega) {
			pods := podsOf(g, "apps", "web")
			g.Expect(pods).To(HaveLen(2))
			for i := range pods {
				p := &pods[i]
				g.Expect(injected(p)).To(BeTrue(), p.Name)
				g.Expect(p.Annotations).To(HaveKeyWithValue("istio.io/rev", "default"))
				g.Expect(p.Labels).To(HaveKeyWithValue("security.istio.io/tlsMode", "istio"))
				g.Expect(containerNames(p.Spec.InitContainers)).To(ContainElement("istio-init"))
				// holdApplicationUntilProxyStarts from the mesh config: the proxy starts first.
				g.Expect(p.Spec.Containers[0].Name).To(Equal("istio-proxy"))
				proxy := proxyOf(p)
				g.Expect(proxy.Image).To(Equal("docker.io/istio/proxyv2:1.31.1"))
				g.Expect(envOf(proxy, "CA_ADDR")).To(Equal("istiod.mesh-system.svc:15012"))
				g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning))
			}
		}, readyTimeout, poll).Should(Succeed())

		By("reporting the injected pods in the MeshControlPlane's status")
		Eventually(func(g Gomega) {
			m := getMCP(g, "mesh")
			g.Expect(m.Status.Revisions).To(HaveLen(1))
			g.Expect(m.Status.Revisions[0].InjectedPods).To(BeEquivalentTo(2))
		}, readyTimeout, poll).Should(Succeed())
	})

	It("leaves pods alone that opt out, or live where injection is off or forbidden", func() {
		optOut := pod("apps", "opt-out", map[string]string{"sidecar.istio.io/inject": "false"}, nil)
		Expect(k8s.Create(ctx(), optOut)).To(Succeed())
		Expect(injected(optOut)).To(BeFalse())
		Expect(optOut.Spec.Containers).To(HaveLen(1))

		plain := pod("plain", "plain", nil, nil)
		Expect(k8s.Create(ctx(), plain)).To(Succeed())
		Expect(injected(plain)).To(BeFalse())

		By("never injecting the control plane's own namespace, even when labelled")
		ns := &corev1.Namespace{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Name: "mesh-system"}, ns)).To(Succeed())
		ns.Labels["istio-injection"] = "enabled"
		Expect(k8s.Update(ctx(), ns)).To(Succeed())
		cp := pod("mesh-system", "not-me", nil, nil)
		Expect(k8s.Create(ctx(), cp)).To(Succeed())
		Expect(injected(cp)).To(BeFalse())

		By("and the operator's namespace")
		Expect(k8s.Get(ctx(), client.ObjectKey{Name: devcluster.OperatorNamespace}, ns)).To(Succeed())
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		ns.Labels["istio-injection"] = "enabled"
		Expect(k8s.Update(ctx(), ns)).To(Succeed())
		op := pod(devcluster.OperatorNamespace, "not-me-either", nil, nil)
		Expect(k8s.Create(ctx(), op)).To(Succeed())
		Expect(injected(op)).To(BeFalse())
	})

	It("injects a pod that asks for it in a namespace without a label", func() {
		p := pod("plain", "asks", map[string]string{"sidecar.istio.io/inject": "true"}, nil)
		Expect(k8s.Create(ctx(), p)).To(Succeed())
		Expect(injected(p)).To(BeTrue())
	})

	It("rejects a pod with a malformed annotation, naming the annotation and the value", func() {
		p := pod("apps", "bad", nil, map[string]string{"sidecar.istio.io/proxyCPU": "lots"})
		err := k8s.Create(ctx(), p)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("sidecar.istio.io/proxyCPU"))
		Expect(err.Error()).To(ContainSubstring(`"lots"`))
		Expect(apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKeyFromObject(p), &corev1.Pod{}))).To(BeTrue())
	})

	It("lets a revisioned control plane answer only for its revision", func() {
		m := newMCP("mesh-canary", "canary-system", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Revision = "canary"
			s.Version = "1.30.3"
			s.SidecarInjector = &meshv1alpha1.SidecarInjectorSpec{Mode: meshv1alpha1.SidecarModeNativeSidecar}
		})
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(deleteMCP, m.Name)
		expectReady(m.Name)
		createNamespace("canary-apps", map[string]string{"istio.io/rev": "canary"})

		p := pod("canary-apps", "c1", nil, nil)
		Expect(k8s.Create(ctx(), p)).To(Succeed())
		Expect(injected(p)).To(BeTrue())
		Expect(p.Annotations).To(HaveKeyWithValue("istio.io/rev", "canary"))
		proxy := proxyOf(p)
		Expect(containerNames(p.Spec.InitContainers)).To(ContainElement("istio-proxy"), "native sidecar mode")
		Expect(proxy.RestartPolicy).To(HaveValue(Equal(corev1.ContainerRestartPolicyAlways)))
		Expect(proxy.Image).To(Equal("docker.io/istio/proxyv2:1.30.3"))
		Expect(envOf(proxy, "CA_ADDR")).To(Equal("istiod-canary.canary-system.svc:15012"))

		By("a pod selecting the canary revision in an unlabelled namespace")
		p2 := pod("plain", "c2", map[string]string{"istio.io/rev": "canary"}, nil)
		Expect(k8s.Create(ctx(), p2)).To(Succeed())
		Expect(injected(p2)).To(BeTrue())
		Expect(p2.Annotations).To(HaveKeyWithValue("istio.io/rev", "canary"))

		By("the default revision's injection-enabled namespace is not the canary's")
		p3 := pod("apps", "d1", nil, nil)
		Expect(k8s.Create(ctx(), p3)).To(Succeed())
		Expect(p3.Annotations).To(HaveKeyWithValue("istio.io/rev", "default"))
	})

	It("removes its webhook configurations with the MeshControlPlane", func() {
		m := newMCP("short-lived", "short-system", func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Revision = "short" })
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		expectReady(m.Name)
		key := client.ObjectKey{Name: "istio-sidecar-injector-short"}
		Expect(k8s.Get(ctx(), key, &admissionregistrationv1.MutatingWebhookConfiguration{})).To(Succeed())
		Expect(k8s.Delete(ctx(), m)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx(), key, &admissionregistrationv1.MutatingWebhookConfiguration{}))
		}, readyTimeout, poll).Should(BeTrue())
	})
})
