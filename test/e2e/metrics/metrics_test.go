package metrics

import (
	"net/url"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

const appNamespace = "shop"

func getMCP(g Gomega, name string) *meshv1alpha1.MeshControlPlane {
	m := &meshv1alpha1.MeshControlPlane{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: name}, m)).To(Succeed())
	return m
}

func condition(g Gomega, name, typ string) *metav1.Condition {
	c := meta.FindStatusCondition(getMCP(g, name).Status.Conditions, typ)
	g.Expect(c).NotTo(BeNil(), "%s has no %s condition", name, typ)
	return c
}

// deleteMCP deletes a control plane and waits until it is gone.
func deleteMCP(name string) {
	Expect(client.IgnoreNotFound(k8s.Delete(ctx(), &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: name}}))).To(Succeed())
	Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKey{Name: name}, &meshv1alpha1.MeshControlPlane{}))
	}, timeout, poll).Should(BeTrue())
}

func podTemplate(annotations map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:1"}}},
	}
}

var _ = Describe("Metrics and alerts", Ordered, func() {
	BeforeAll(func() {
		Expect(k8s.Create(ctx(), &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "default"}})).To(Succeed())
		DeferCleanup(deleteMCP, "default")
		Eventually(func(g Gomega) {
			g.Expect(condition(g, "default", meshv1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		}, timeout, poll).Should(Succeed())
	})

	It("loads the shipped alerts into Prometheus", func() {
		var data struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name   string `json:"name"`
					Health string `json:"health"`
				} `json:"rules"`
			} `json:"groups"`
		}
		Eventually(func(g Gomega) {
			promGet(g, "/api/v1/rules", nil, &data)
			n := 0
			for _, grp := range data.Groups {
				for _, r := range grp.Rules {
					n++
					g.Expect(r.Health).To(Equal("ok"), "rule %s has been evaluated without error", r.Name)
				}
			}
			g.Expect(n).To(Equal(ruleCount))
		}, timeout, poll).Should(Succeed())
	})

	It("reports a Ready control plane, its revision and its workloads", func() {
		Eventually(func(g Gomega) {
			got := scrape(g)
			g.Expect(withPrefix(got, "meshplane_controlplane_ready")).To(Equal(map[string]float64{
				`meshplane_controlplane_ready{control_plane="default"}`: 1,
			}))
			g.Expect(got).To(HaveKeyWithValue(`meshplane_controlplane_status_condition{condition="Ready",control_plane="default",status="true"}`, 1.0))
			g.Expect(got).To(HaveKeyWithValue(`meshplane_controlplane_status_condition{condition="Stalled",control_plane="default",status="false"}`, 1.0))
			g.Expect(withPrefix(got, "meshplane_controlplane_revision_")).To(Equal(map[string]float64{
				`meshplane_controlplane_revision_ready{control_plane="default",revision="default",version="1.31.1"}`: 1,
				`meshplane_controlplane_revision_injected_pods{control_plane="default",revision="default"}`:          0,
			}))
			g.Expect(got).To(HaveKeyWithValue(`meshplane_controlplane_component_ready{component="Pilot",control_plane="default",deployment="istiod",namespace="istio-system"}`, 1.0))
			g.Expect(got).To(HaveKeyWithValue(`meshplane_status_collector_errors_total{kind="MeshControlPlane"}`, 0.0))
			g.Expect(got).To(HaveKeyWithValue(`meshplane_status_collector_errors_total{kind="Canary"}`, 0.0))
		}, timeout, poll).Should(Succeed())

		By("through Prometheus, with no alert about it or about the operator")
		Eventually(func(g Gomega) {
			g.Expect(query(g, `meshplane_controlplane_ready`)).To(Equal(map[string]string{
				`{"control_plane":"default","instance":"` + hostOf(cluster.MetricsURL) + `","job":"meshplane"}`: "1",
			}))
			g.Expect(alertsNamed(g, "MeshplaneControlPlaneNotReady", "control_plane")).NotTo(HaveKey("default"))
			g.Expect(alertsNamed(g, "MeshplaneOperatorDown", "alertname")).To(BeEmpty())
		}, timeout, poll).Should(Succeed())
	})

	It("counts admissions by outcome and the injected pods of the revision", func() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNamespace, Labels: map[string]string{"istio-injection": "enabled"}}}
		Expect(k8s.Create(ctx(), ns)).To(Succeed())
		Eventually(func() error {
			return k8s.Get(ctx(), client.ObjectKey{Namespace: appNamespace, Name: "default"}, &corev1.ServiceAccount{})
		}, timeout, poll).Should(Succeed())
		before := scrape(Default)
		counter := func(outcome string) string {
			return `meshplane_injection_webhook_admissions_total{control_plane="default",outcome="` + outcome + `",revision="default"}`
		}
		const histogram = `meshplane_injection_webhook_duration_seconds_count{control_plane="default",revision="default"}`

		Expect(k8s.Create(ctx(), &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: appNamespace, Name: "web"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](2),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: podTemplate(nil),
			},
		})).To(Succeed())
		// By annotation: a pod labelled so never reaches the webhook (its objectSelector).
		optOut := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: appNamespace, Name: "opt-out",
			Annotations: map[string]string{"sidecar.istio.io/inject": "false"}}, Spec: podTemplate(nil).Spec}
		Expect(k8s.Create(ctx(), optOut)).To(Succeed())
		malformed := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: appNamespace, Name: "malformed",
			Annotations: map[string]string{"sidecar.istio.io/proxyCPU": "lots"}}, Spec: podTemplate(nil).Spec}
		err := k8s.Create(ctx(), malformed)
		Expect(err).To(MatchError(ContainSubstring("sidecar.istio.io/proxyCPU")), "the webhook rejects the pod")

		Eventually(func(g Gomega) {
			got := scrape(g)
			g.Expect(got[counter("injected")]-before[counter("injected")]).To(BeNumerically(">=", 2), "the Deployment's pods")
			g.Expect(got[counter("skipped")]-before[counter("skipped")]).To(BeNumerically(">=", 1), "the pod that opted out")
			g.Expect(got[counter("rejected")]-before[counter("rejected")]).To(BeNumerically(">=", 1), "the malformed pod")
			g.Expect(got[histogram] - before[histogram]).To(BeNumerically(">=", 4))
			g.Expect(got).To(HaveKeyWithValue(counter("error"), 0.0), "present at 0, so the first error counts in rate()")
			g.Expect(got).To(HaveKeyWithValue(`meshplane_controlplane_revision_injected_pods{control_plane="default",revision="default"}`, 2.0))
		}, timeout, poll).Should(Succeed())

		By("through Prometheus, as the dashboard's panels ask")
		Eventually(func(g Gomega) {
			g.Expect(query(g, `sum by (control_plane, revision) (meshplane_controlplane_revision_injected_pods)`)).To(Equal(map[string]string{
				`{"control_plane":"default","revision":"default"}`: "2",
			}))
			g.Expect(query(g, `sum by (outcome) (increase(meshplane_injection_webhook_admissions_total[5m])) > 0`)).
				To(HaveKey(`{"outcome":"injected"}`))
			g.Expect(query(g, `histogram_quantile(0.99, sum by (le) (rate(meshplane_injection_webhook_duration_seconds_bucket[5m])))`)).
				To(HaveLen(1))
		}, timeout, poll).Should(Succeed())
	})

	It("raises the not-ready and stalled alerts for a control plane that cannot make progress", func() {
		broken := &meshv1alpha1.MeshControlPlane{
			ObjectMeta: metav1.ObjectMeta{Name: "broken"},
			Spec: meshv1alpha1.MeshControlPlaneSpec{
				Namespace: "broken-system",
				Revision:  "broken",
				Security: &meshv1alpha1.SecuritySpec{CertificateAuthority: &meshv1alpha1.CertificateAuthority{
					Plugged: &meshv1alpha1.PluggedCA{SecretName: "missing"},
				}},
			},
		}
		Expect(k8s.Create(ctx(), broken)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(condition(g, "broken", meshv1alpha1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))
		}, timeout, poll).Should(Succeed())

		Eventually(func(g Gomega) {
			got := scrape(g)
			g.Expect(got).To(HaveKeyWithValue(`meshplane_controlplane_ready{control_plane="broken"}`, 0.0))
			g.Expect(got).To(HaveKeyWithValue(`meshplane_controlplane_status_condition{condition="Stalled",control_plane="broken",status="true"}`, 1.0))
		}, timeout, poll).Should(Succeed())

		By("Prometheus evaluating the shipped rules on the real series (pending: the alerts wait their `for`)")
		Eventually(func(g Gomega) {
			notReady := alertsNamed(g, "MeshplaneControlPlaneNotReady", "control_plane")
			g.Expect(notReady).To(HaveKey("broken"))
			g.Expect(notReady).NotTo(HaveKey("default"))
			g.Expect(notReady["broken"].State).To(Equal("pending"))
			g.Expect(notReady["broken"].Labels).To(HaveKeyWithValue("severity", "critical"))
			g.Expect(notReady["broken"].Annotations).To(HaveKeyWithValue("summary", "MeshControlPlane broken has not been Ready for 10 minutes."))
			g.Expect(notReady["broken"].Annotations["runbook"]).To(ContainSubstring("kubectl get mcp broken -o yaml"))
			stalled := alertsNamed(g, "MeshplaneControlPlaneStalled", "control_plane")
			g.Expect(stalled).To(HaveKey("broken"))
			g.Expect(stalled).NotTo(HaveKey("default"))
		}, timeout, poll).Should(Succeed())

		By("its series and alerts going with it")
		deleteMCP("broken")
		Eventually(func(g Gomega) {
			g.Expect(scrape(g)).NotTo(HaveKey(`meshplane_controlplane_ready{control_plane="broken"}`))
			g.Expect(alertsNamed(g, "MeshplaneControlPlaneNotReady", "control_plane")).NotTo(HaveKey("broken"))
			g.Expect(alertsNamed(g, "MeshplaneControlPlaneStalled", "control_plane")).NotTo(HaveKey("broken"))
		}, timeout, poll).Should(Succeed())
	})

	It("reports each Canary's phase, weight and last check under its namespace and name", func() {
		c := &meshv1alpha1.Canary{
			ObjectMeta: metav1.ObjectMeta{Namespace: appNamespace, Name: "web"},
			Spec: meshv1alpha1.CanarySpec{
				TargetRef: meshv1alpha1.CanaryTargetRef{Name: "web"},
				Service:   meshv1alpha1.CanaryService{Port: 80},
				Analysis: meshv1alpha1.CanaryAnalysis{
					Steps: []int32{10, 50},
					Metrics: []meshv1alpha1.CanaryMetric{
						{Name: meshv1alpha1.MetricRequestSuccessRate, ThresholdRange: meshv1alpha1.ThresholdRange{Min: ptr.To("99")}},
					},
					Prometheus: meshv1alpha1.PrometheusSource{Address: prom.URL},
				},
			},
		}
		Expect(k8s.Create(ctx(), c)).To(Succeed())
		// Whatever the Canary controller (if any) makes of it, the same series exist: one
		// per phase and per check outcome, and the weight.
		Eventually(func(g Gomega) {
			got := scrape(g)
			g.Expect(withPrefix(got, `meshplane_canary_phase{`)).To(HaveLen(11))
			for _, phase := range []string{"Initializing", "Progressing", "Failed", "Succeeded", "Paused"} {
				g.Expect(got).To(HaveKey(`meshplane_canary_phase{canary="web",namespace="shop",phase="` + phase + `"}`))
			}
			g.Expect(withPrefix(got, `meshplane_canary_last_check_outcome{`)).To(HaveLen(4))
			g.Expect(got).To(HaveKey(`meshplane_canary_last_check_outcome{canary="web",namespace="shop",outcome="Failed"}`))
			g.Expect(got).To(HaveKey(`meshplane_canary_target_weight{canary="web",namespace="shop"}`))
		}, timeout, poll).Should(Succeed())

		By("through Prometheus")
		Eventually(func(g Gomega) {
			g.Expect(query(g, `count by (namespace, canary) (meshplane_canary_phase)`)).To(Equal(map[string]string{
				`{"canary":"web","namespace":"shop"}`: "11",
			}))
		}, timeout, poll).Should(Succeed())

		Expect(k8s.Delete(ctx(), c)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(withPrefix(scrape(g), "meshplane_canary_")).To(BeEmpty())
		}, timeout, poll).Should(Succeed())
	})
})

func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	Expect(err).NotTo(HaveOccurred())
	return u.Host
}
