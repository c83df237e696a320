package meshcontrolplane

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/argocdhealth"
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func conditions(st meshv1alpha1.MeshControlPlaneStatus) map[string]string {
	out := map[string]string{}
	for _, c := range st.Conditions {
		out[c.Type] = string(c.Status) + "/" + c.Reason
	}
	return out
}

func TestComputeStatus(t *testing.T) {
	ready := componentFacts{name: "istiod", namespace: "istio-system", component: "Pilot", exists: true, ready: true, replicas: 1, readyReplicas: 1}
	rolling := ready
	rolling.ready, rolling.readyReplicas = false, 0

	tests := []struct {
		name     string
		facts    facts
		want     map[string]string
		wantComp []meshv1alpha1.ComponentStatus
		// What kstatus and Argo CD's health check (config/argocd) make of it.
		wantKstatus kstatus.Status
		wantArgo    string
	}{
		{
			name:  "available",
			facts: facts{components: []componentFacts{ready}, revision: "default", version: "1.31.1"},
			want: map[string]string{
				"Ready": "True/Available", "Reconciled": "True/Applied",
				"Progressing": "False/RolledOut", "Stalled": "False/NoProblems", "Reconciling": "False/UpToDate",
			},
			wantKstatus: kstatus.CurrentStatus, wantArgo: argocdhealth.Healthy,
			wantComp: []meshv1alpha1.ComponentStatus{{Name: "istiod", Component: "Pilot", Namespace: "istio-system",
				Ready: true, Replicas: 1, ReadyReplicas: 1}},
		},
		{
			name:  "rolling out",
			facts: facts{components: []componentFacts{rolling}, revision: "default", version: "1.31.1"},
			want: map[string]string{
				"Ready": "False/ComponentsNotReady", "Reconciled": "True/Applied",
				"Progressing": "True/RollingOut", "Stalled": "False/NoProblems", "Reconciling": "True/ComponentsNotReady",
			},
			wantKstatus: kstatus.InProgressStatus, wantArgo: argocdhealth.Progressing,
			wantComp: []meshv1alpha1.ComponentStatus{{Name: "istiod", Component: "Pilot", Namespace: "istio-system", Replicas: 1}},
		},
		{
			name: "an invalid CA stalls, and istiod keeps serving",
			facts: facts{components: []componentFacts{ready}, revision: "default", version: "1.31.1",
				ca: caFacts{reason: meshv1alpha1.ReasonInvalidCA, message: "the CA in Secret istio-system/cacerts cannot be used: x", hold: true}},
			want: map[string]string{
				"Ready": "False/InvalidCA", "Reconciled": "False/InvalidCA",
				"Progressing": "False/ReconcileError", "Stalled": "True/InvalidCA", "Reconciling": "False/InvalidCA",
			},
			wantKstatus: kstatus.FailedStatus, wantArgo: argocdhealth.Degraded,
			wantComp: []meshv1alpha1.ComponentStatus{{Name: "istiod", Component: "Pilot", Namespace: "istio-system",
				Ready: true, Replicas: 1, ReadyReplicas: 1}},
		},
		{
			name: "waiting for cert-manager progresses without stalling",
			facts: facts{components: []componentFacts{ready}, revision: "default", version: "1.31.1",
				ca: caFacts{reason: meshv1alpha1.ReasonCertificateNotReady, message: "waiting for cert-manager", hold: true}},
			want: map[string]string{
				"Ready": "False/CertificateNotReady", "Reconciled": "False/CertificateNotReady",
				"Progressing": "True/CertificateNotReady", "Stalled": "False/NoProblems", "Reconciling": "True/CertificateNotReady",
			},
			wantKstatus: kstatus.InProgressStatus, wantArgo: argocdhealth.Progressing,
			wantComp: []meshv1alpha1.ComponentStatus{{Name: "istiod", Component: "Pilot", Namespace: "istio-system",
				Ready: true, Replicas: 1, ReadyReplicas: 1}},
		},
		{
			name:  "conflict stalls",
			facts: facts{conflicts: []string{"b conflict", "a conflict"}, components: []componentFacts{ready}},
			want: map[string]string{
				"Ready": "False/ResourceConflict", "Reconciled": "False/ResourceConflict",
				"Progressing": "False/ReconcileError", "Stalled": "True/ResourceConflict", "Reconciling": "False/ResourceConflict",
			},
			wantKstatus: kstatus.FailedStatus, wantArgo: argocdhealth.Degraded,
			wantComp: []meshv1alpha1.ComponentStatus{{Name: "istiod", Component: "Pilot", Namespace: "istio-system",
				Ready: true, Replicas: 1, ReadyReplicas: 1}},
		},
		{
			name:  "apply error is retried, not stalled",
			facts: facts{applyErrors: []string{"applying Service istio-system/istiod: boom"}},
			want: map[string]string{
				"Ready": "False/ApplyFailed", "Reconciled": "False/ApplyFailed",
				"Progressing": "False/ReconcileError", "Stalled": "False/NoProblems", "Reconciling": "True/ApplyFailed",
			},
			wantKstatus: kstatus.InProgressStatus, wantArgo: argocdhealth.Progressing,
		},
		{
			name:  "invalid spec stalls and keeps the last observation",
			facts: facts{invalidSpec: `Istio version "1.2.3" is not supported`},
			want: map[string]string{
				"Ready": "False/InvalidSpec", "Reconciled": "False/InvalidSpec",
				"Progressing": "False/ReconcileError", "Stalled": "True/InvalidSpec", "Reconciling": "False/InvalidSpec",
			},
			wantKstatus: kstatus.FailedStatus, wantArgo: argocdhealth.Degraded,
			wantComp: []meshv1alpha1.ComponentStatus{{Name: "previous"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			st := meshv1alpha1.MeshControlPlaneStatus{ObservedGeneration: 3, Components: []meshv1alpha1.ComponentStatus{{Name: "previous"}}}
			computeStatus(&st, 7, tt.facts)
			g.Expect(conditions(st)).To(Equal(tt.want))
			g.Expect(st.ObservedGeneration).To(BeEquivalentTo(7), "the conditions describe generation 7, whatever their verdict")
			g.Expect(meta.IsStatusConditionTrue(st.Conditions, meshv1alpha1.ConditionReconciling) &&
				meta.IsStatusConditionTrue(st.Conditions, meshv1alpha1.ConditionStalled)).To(BeFalse(),
				"kstatus takes whichever of Reconciling and Stalled comes first: never both True")
			g.Expect(st.Components).To(Equal(tt.wantComp))
			for _, c := range st.Conditions {
				g.Expect(c.ObservedGeneration).To(BeEquivalentTo(7))
				g.Expect(c.Message).NotTo(BeEmpty())
			}

			mcp := &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "default", Generation: 7}, Status: st}
			u, err := argocdhealth.ToUnstructured(mcp)
			g.Expect(err).NotTo(HaveOccurred())
			res, err := kstatus.Compute(u)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(res.Status).To(Equal(tt.wantKstatus), res.Message)
			health, err := argocdhealth.Check(mcp)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(health.Status).To(Equal(tt.wantArgo), health.Message)
			g.Expect(health.Message).NotTo(BeEmpty())

			// The next generation, before the operator has seen it: in progress for both.
			mcp.Generation = 8
			res, err = kstatus.Compute(must(argocdhealth.ToUnstructured(mcp)))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(res.Status).To(Equal(kstatus.InProgressStatus))
			g.Expect(argocdhealth.Check(mcp)).To(Equal(argocdhealth.Health{Status: argocdhealth.Progressing,
				Message: "Waiting for the operator to observe generation 8 (status is for 7)"}))
		})
	}
}

func TestComputeStatusGateways(t *testing.T) {
	istiod := componentFacts{name: "istiod", namespace: "istio-system", component: "Pilot", exists: true, ready: true, replicas: 1, readyReplicas: 1}
	ingress := gatewayFacts{
		componentFacts: componentFacts{name: "public", namespace: "edge", component: "IngressGateway", exists: true, ready: true, replicas: 2, readyReplicas: 2},
		gatewayType:    meshv1alpha1.GatewayTypeIngress,
	}
	egress := gatewayFacts{
		componentFacts: componentFacts{name: "egress", namespace: "istio-system", component: "EgressGateway", exists: true, replicas: 1},
		gatewayType:    meshv1alpha1.GatewayTypeEgress,
		address:        "10.0.0.7",
	}

	tests := []struct {
		name         string
		gateways     []gatewayFacts
		wantReady    string
		wantRevReady bool
		wantMessage  string
	}{
		{name: "every gateway ready (a pending load balancer has no address)", gateways: []gatewayFacts{ingress},
			wantReady: "True/Available", wantRevReady: true, wantMessage: "The control plane is available"},
		{name: "a gateway rolling out holds Ready back, not the revision", gateways: []gatewayFacts{ingress, egress},
			wantReady: "False/ComponentsNotReady", wantRevReady: true, wantMessage: "Not ready yet: egress"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			st := meshv1alpha1.MeshControlPlaneStatus{}
			computeStatus(&st, 2, facts{components: []componentFacts{istiod}, gateways: tt.gateways, revision: "default", version: "1.31.1"})
			g.Expect(conditions(st)["Ready"]).To(Equal(tt.wantReady))
			g.Expect(meta.FindStatusCondition(st.Conditions, "Ready").Message).To(Equal(tt.wantMessage))
			g.Expect(st.Revisions[0].Ready).To(Equal(tt.wantRevReady))
			g.Expect(st.Components).To(HaveLen(1 + len(tt.gateways)))
			g.Expect(st.Gateways).To(HaveLen(len(tt.gateways)))
			for i, gw := range tt.gateways {
				g.Expect(st.Gateways[i]).To(Equal(meshv1alpha1.GatewayStatus{
					Name: gw.name, Namespace: gw.namespace, Type: gw.gatewayType, Ready: gw.ready,
					Replicas: gw.replicas, ReadyReplicas: gw.readyReplicas, Address: gw.address,
				}))
				g.Expect(st.Components[1+i].Component).To(Equal(gw.component))
			}
		})
	}

	g := NewWithT(t)
	st := meshv1alpha1.MeshControlPlaneStatus{}
	computeStatus(&st, 2, facts{components: []componentFacts{istiod}, gateways: []gatewayFacts{ingress}})
	computeStatus(&st, 3, facts{components: []componentFacts{istiod}})
	g.Expect(st.Gateways).To(BeNil(), "a removed gateway leaves the status")
}

func TestServiceAddress(t *testing.T) {
	svc := func(typ corev1.ServiceType, clusterIP string, ingress ...corev1.LoadBalancerIngress) *corev1.Service {
		s := &corev1.Service{Spec: corev1.ServiceSpec{Type: typ, ClusterIP: clusterIP}}
		s.Status.LoadBalancer.Ingress = ingress
		return s
	}
	tests := []struct {
		name string
		svc  *corev1.Service
		want string
	}{
		{"cluster IP", svc(corev1.ServiceTypeClusterIP, "10.0.0.1"), "10.0.0.1"},
		{"node port: its cluster IP", svc(corev1.ServiceTypeNodePort, "10.0.0.2"), "10.0.0.2"},
		{"pending load balancer", svc(corev1.ServiceTypeLoadBalancer, "10.0.0.3"), ""},
		{"load balancer IP", svc(corev1.ServiceTypeLoadBalancer, "10.0.0.3", corev1.LoadBalancerIngress{IP: "203.0.113.9"}), "203.0.113.9"},
		{"load balancer hostname", svc(corev1.ServiceTypeLoadBalancer, "10.0.0.3", corev1.LoadBalancerIngress{Hostname: "lb.example.com"}), "lb.example.com"},
		{"headless", svc(corev1.ServiceTypeClusterIP, corev1.ClusterIPNone), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(serviceAddress(tt.svc)).To(Equal(tt.want))
		})
	}
}

func TestComputeStatusIsStable(t *testing.T) {
	g := NewWithT(t)
	f := facts{conflicts: []string{"ConfigMap x/istio …", "Service x/istiod …"}}
	first := meshv1alpha1.MeshControlPlaneStatus{}
	computeStatus(&first, 1, f)
	// Same facts in another order, computed again on the result: nothing changes, so the
	// controller sends no status write.
	f.conflicts = []string{"Service x/istiod …", "ConfigMap x/istio …"}
	second := *first.DeepCopy()
	computeStatus(&second, 1, f)
	g.Expect(second).To(Equal(first))
	g.Expect(meta.FindStatusCondition(first.Conditions, "Stalled").Message).To(HavePrefix("ConfigMap x/istio …; Service x/istiod …"))
}

func TestTransitionEvents(t *testing.T) {
	g := NewWithT(t)
	cond := func(typ string, s metav1.ConditionStatus, reason string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: reason}
	}
	notReady := []metav1.Condition{cond("Ready", "False", "ComponentsNotReady"), cond("Progressing", "True", "RollingOut"), cond("Stalled", "False", "NoProblems")}
	ready := []metav1.Condition{cond("Ready", "True", "Available"), cond("Progressing", "False", "RolledOut"), cond("Stalled", "False", "NoProblems")}
	conflict := []metav1.Condition{cond("Ready", "False", "ResourceConflict"), cond("Progressing", "False", "ReconcileError"), cond("Stalled", "True", "ResourceConflict")}

	reasons := func(evs []transition) []string {
		var out []string
		for _, e := range evs {
			out = append(out, e.eventType+"/"+e.reason)
		}
		return out
	}
	g.Expect(reasons(transitionEvents(nil, notReady))).To(Equal([]string{"Normal/RollingOut"}))
	g.Expect(reasons(transitionEvents(notReady, ready))).To(Equal([]string{"Normal/Ready"}))
	g.Expect(reasons(transitionEvents(ready, ready))).To(BeEmpty())
	g.Expect(reasons(transitionEvents(ready, conflict))).To(Equal([]string{"Warning/NotReady", "Warning/ResourceConflict"}))
	g.Expect(reasons(transitionEvents(conflict, conflict))).To(BeEmpty())
}

func TestCAWarningCondition(t *testing.T) {
	g := NewWithT(t)
	ready := componentFacts{name: "istiod", namespace: "istio-system", component: "Pilot", exists: true, ready: true, replicas: 1, readyReplicas: 1}
	plugged := &meshv1alpha1.CertificateAuthorityStatus{Mode: meshv1alpha1.CAModePlugged, SecretName: "cacerts"}
	st := meshv1alpha1.MeshControlPlaneStatus{}

	computeStatus(&st, 1, facts{components: []componentFacts{ready}, ca: caFacts{status: plugged, warnings: []string{}}})
	g.Expect(conditions(st)).To(HaveKeyWithValue(meshv1alpha1.ConditionCAWarning, "False/NoWarnings"))
	g.Expect(conditions(st)).To(HaveKeyWithValue("Ready", "True/Available"), "a warning is not a fault")

	before := append([]metav1.Condition(nil), st.Conditions...)
	computeStatus(&st, 1, facts{components: []componentFacts{ready}, ca: caFacts{status: plugged, warnings: []string{"Secret istio-system/cacerts: ca-cert.pem expires soon"}}})
	g.Expect(conditions(st)).To(HaveKeyWithValue(meshv1alpha1.ConditionCAWarning, "True/NeedsAttention"))
	g.Expect(conditions(st)).To(HaveKeyWithValue("Ready", "True/Available"))
	g.Expect(transitionEvents(before, st.Conditions)).To(ContainElement(transition{
		corev1.EventTypeWarning, "CertificateAuthorityWarning", "Reconcile", "Secret istio-system/cacerts: ca-cert.pem expires soon"}))

	computeStatus(&st, 1, facts{components: []componentFacts{ready}, ca: caFacts{reason: meshv1alpha1.ReasonInvalidCA, message: "expired", hold: true}})
	g.Expect(conditions(st)).NotTo(HaveKey(meshv1alpha1.ConditionCAWarning), "unusable material is reported in Reconciled")

	computeStatus(&st, 1, facts{components: []componentFacts{ready}, ca: caFacts{status: plugged, warnings: []string{}}})
	computeStatus(&st, 1, facts{components: []componentFacts{ready}, ca: caFacts{status: &meshv1alpha1.CertificateAuthorityStatus{Mode: meshv1alpha1.CAModeSelfSigned}}})
	g.Expect(conditions(st)).NotTo(HaveKey(meshv1alpha1.ConditionCAWarning), "istiod's own CA needs no warning")
}

func TestRequeueForCAWarning(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	g.Expect((&facts{}).requeueAfter(now)).To(BeZero(), "no time-based wait without CA material to watch")
	f := &facts{ca: caFacts{nextWarning: now.Add(time.Hour)}}
	g.Expect(f.requeueAfter(now)).To(Equal(time.Hour + time.Second))
	g.Expect(f.requeueAfter(now.Add(2*time.Hour))).To(Equal(time.Second), "never a negative wait")
}
