package e2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/ptr"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

var _ = Describe("MeshControlPlane admission", func() {
	DescribeTable("rejects invalid specs with a message the user can act on",
		func(mutate func(*meshv1alpha1.MeshControlPlaneSpec), message string) {
			m := newMCP("invalid", "", mutate)
			err := k8s.Create(ctx(), m)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("an unsupported version", func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Version = "1.20.0" },
			`spec.version: Unsupported value: "1.20.0": supported values: "1.31.1", "1.30.3", "1.29.6"`),
		Entry("replicas and autoscaling together", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Pilot = &meshv1alpha1.PilotSpec{Replicas: ptr.To[int32](2), Autoscaling: &meshv1alpha1.Autoscaling{}}
		}, "set either pilot.replicas (a fixed count) or pilot.autoscaling, not both"),
		Entry("an autoscaling minimum above the maximum", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Pilot = &meshv1alpha1.PilotSpec{Autoscaling: &meshv1alpha1.Autoscaling{MinReplicas: ptr.To[int32](5), MaxReplicas: ptr.To[int32](2)}}
		}, "autoscaling.minReplicas must not exceed autoscaling.maxReplicas"),
		Entry("zero replicas", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Pilot = &meshv1alpha1.PilotSpec{Replicas: ptr.To[int32](0)}
		}, "spec.pilot.replicas: Invalid value: 0: spec.pilot.replicas in body should be greater than or equal to 1"),
		Entry("a system namespace", func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Namespace = "kube-system" },
			"namespace must not be kube-system, kube-public, kube-node-lease or default"),
		Entry("a namespace that is not a DNS label", func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Namespace = "Istio_System" },
			"spec.namespace: Invalid value"),
		Entry("the reserved revision name", func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Revision = "default" },
			`revision "default" is reserved; leave revision empty for the default revision`),
		Entry("a revision too long for istiod's names", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Revision = "a234567890123456789012345678901234567890123456789012345678"
		}, "spec.revision: Too long"),
		Entry("env the operator derives", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Pilot = &meshv1alpha1.PilotSpec{Env: []corev1.EnvVar{{Name: "REVISION", Value: "x"}}}
		}, "pilot.env must not set REVISION"),
		Entry("env listed twice", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Pilot = &meshv1alpha1.PilotSpec{Env: []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "A", Value: "2"}}}
		}, `spec.pilot.env[1]: Duplicate value: {"name":"A"}`),
		Entry("a hub with a tag", func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Hub = "docker.io/istio@sha256 " },
			"spec.hub: Invalid value"),
		Entry("a sampling percentage above 100", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.MeshConfig = &meshv1alpha1.MeshConfig{Tracing: &meshv1alpha1.Tracing{SamplingPercentage: "101"}}
		}, "spec.meshConfig.tracing.samplingPercentage: Invalid value"),
		Entry("a control character in the access log path", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.MeshConfig = &meshv1alpha1.MeshConfig{AccessLogFile: ptr.To("/dev/stdout\n")}
		}, "spec.meshConfig.accessLogFile: Invalid value"),
		Entry("a proxyMetadata key that is no variable name", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.MeshConfig = &meshv1alpha1.MeshConfig{DefaultConfig: &meshv1alpha1.ProxyConfig{
				ProxyMetadata: map[string]meshv1alpha1.ProxyMetadataValue{"NOT-A-NAME": "x"}}}
		}, "proxyMetadata keys must be environment variable names"),
		Entry("an unknown profile", func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Profile = "ambient" },
			`spec.profile: Unsupported value: "ambient"`),
	)

	It("keeps the namespace immutable", func() {
		m := newMCP("immutable", "immutable-system", nil)
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(deleteMCP, m.Name)
		m.Spec.Namespace = "elsewhere"
		err := k8s.Update(ctx(), m)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("namespace is immutable; create a new MeshControlPlane to move the control plane"))
	})
})

var _ = Describe("MeshControlPlane steady state", Serial, func() {
	It("makes zero writes once Ready, through resyncs and unrelated events", func() {
		m := newMCP("steady", "steady-system", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Pilot = &meshv1alpha1.PilotSpec{Replicas: ptr.To[int32](2)}
			s.MeshConfig = &meshv1alpha1.MeshConfig{AccessLogFile: ptr.To("/dev/stdout")}
		})
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(deleteMCP, m.Name)
		expectReady(m.Name)
		// Let the last status write and the events of the rollout settle: the window starts
		// once the operator has gone quiet for a few seconds.
		var since time.Time
		Eventually(func(g Gomega) {
			since = time.Now()
			g.Consistently(func() []string { return operatorWrites(since) }, 3*time.Second, 500*time.Millisecond).Should(BeEmpty())
		}, readyTimeout, poll).Should(Succeed())
		since = time.Now()
		reconcilesBefore := reconcileCount()

		By("unrelated events: other objects change, the MeshControlPlane gets a label")
		unrelated := &corev1.ConfigMap{}
		unrelated.Name, unrelated.Namespace = "unrelated", "steady-system"
		Expect(k8s.Create(ctx(), unrelated)).To(Succeed())
		unrelated.Data = map[string]string{"a": "b"}
		Expect(k8s.Update(ctx(), unrelated)).To(Succeed())
		Eventually(func(g Gomega) {
			got := getMCP(g, m.Name)
			got.Labels = map[string]string{"team": "platform"}
			g.Expect(k8s.Update(ctx(), got)).To(Succeed())
		}, 10*time.Second, poll).Should(Succeed())

		By("a minute of resyncs (every " + syncPeriod.String() + ")")
		Consistently(func() []string { return operatorWrites(since) }, time.Minute, time.Second).Should(BeEmpty())
		Expect(meta.IsStatusConditionTrue(getMCP(Default, m.Name).Status.Conditions, meshv1alpha1.ConditionReady)).To(BeTrue())
		// The silence is the operator's judgement, not its absence: it kept reconciling.
		Expect(reconcileCount() - reconcilesBefore).To(BeNumerically(">=", 5))
	})
})

// reconcileCount is controller-runtime's count of MeshControlPlane reconciles so far.
func reconcileCount() float64 {
	families, err := crmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	total := 0.0
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "meshcontrolplane" {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}
