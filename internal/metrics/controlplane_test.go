package metrics

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

func condition(typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, LastTransitionTime: metav1.Now()}
}

// readyControlPlane is the default control plane as the operator reports it once Ready:
// istiod and an ingress gateway available, 7 pods injected, a cert-manager CA.
func readyControlPlane() *meshv1alpha1.MeshControlPlane {
	return &meshv1alpha1.MeshControlPlane{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Status: meshv1alpha1.MeshControlPlaneStatus{
			ObservedGeneration: 1,
			Conditions: []metav1.Condition{
				condition(meshv1alpha1.ConditionReady, metav1.ConditionTrue, meshv1alpha1.ReasonAvailable),
				condition(meshv1alpha1.ConditionReconciled, metav1.ConditionTrue, meshv1alpha1.ReasonApplied),
				condition(meshv1alpha1.ConditionProgressing, metav1.ConditionFalse, meshv1alpha1.ReasonRolledOut),
				condition(meshv1alpha1.ConditionStalled, metav1.ConditionFalse, meshv1alpha1.ReasonNoProblems),
			},
			Components: []meshv1alpha1.ComponentStatus{
				{Name: "istiod", Component: "Pilot", Namespace: "istio-system", Ready: true, Replicas: 2, ReadyReplicas: 2},
				{Name: "istio-ingressgateway", Component: "IngressGateway", Namespace: "istio-ingress", Ready: true, Replicas: 1, ReadyReplicas: 1},
			},
			Revisions: []meshv1alpha1.RevisionStatus{{Name: "default", Version: "1.31.1", Ready: true, InjectedPods: 7}},
			CertificateAuthority: &meshv1alpha1.CertificateAuthorityStatus{
				Mode:     meshv1alpha1.CAModeCertManager,
				NotAfter: &metav1.Time{Time: time.Unix(1900000000, 0)},
			},
		},
	}
}

// stalledControlPlane is a canary revision whose plugged CA is unusable: not Ready, Stalled,
// istiod never rolled out, a condition whose status is Unknown.
func stalledControlPlane() *meshv1alpha1.MeshControlPlane {
	return &meshv1alpha1.MeshControlPlane{
		ObjectMeta: metav1.ObjectMeta{Name: "canary"},
		Spec:       meshv1alpha1.MeshControlPlaneSpec{Revision: "canary"},
		Status: meshv1alpha1.MeshControlPlaneStatus{
			Conditions: []metav1.Condition{
				condition(meshv1alpha1.ConditionReady, metav1.ConditionFalse, meshv1alpha1.ReasonInvalidCA),
				condition(meshv1alpha1.ConditionReconciled, metav1.ConditionFalse, meshv1alpha1.ReasonInvalidCA),
				condition(meshv1alpha1.ConditionProgressing, metav1.ConditionUnknown, meshv1alpha1.ReasonInvalidCA),
				condition(meshv1alpha1.ConditionStalled, metav1.ConditionTrue, meshv1alpha1.ReasonInvalidCA),
			},
			Components: []meshv1alpha1.ComponentStatus{
				{Name: "istiod-canary", Component: "Pilot", Namespace: "istio-system", Replicas: 1},
			},
			Revisions: []meshv1alpha1.RevisionStatus{{Name: "canary", Version: "1.30.3"}},
		},
	}
}

func TestControlPlaneMetrics(t *testing.T) {
	tests := []struct {
		name string
		mcp  *meshv1alpha1.MeshControlPlane
		want map[string]float64
	}{{
		name: "ready",
		mcp:  readyControlPlane(),
		want: map[string]float64{
			`meshplane_controlplane_ready{control_plane="default"}`:                                                                                                  1,
			`meshplane_controlplane_status_condition{condition="Ready",control_plane="default",status="true"}`:                                                       1,
			`meshplane_controlplane_status_condition{condition="Ready",control_plane="default",status="false"}`:                                                      0,
			`meshplane_controlplane_status_condition{condition="Ready",control_plane="default",status="unknown"}`:                                                    0,
			`meshplane_controlplane_status_condition{condition="Reconciled",control_plane="default",status="true"}`:                                                  1,
			`meshplane_controlplane_status_condition{condition="Reconciled",control_plane="default",status="false"}`:                                                 0,
			`meshplane_controlplane_status_condition{condition="Reconciled",control_plane="default",status="unknown"}`:                                               0,
			`meshplane_controlplane_status_condition{condition="Progressing",control_plane="default",status="true"}`:                                                 0,
			`meshplane_controlplane_status_condition{condition="Progressing",control_plane="default",status="false"}`:                                                1,
			`meshplane_controlplane_status_condition{condition="Progressing",control_plane="default",status="unknown"}`:                                              0,
			`meshplane_controlplane_status_condition{condition="Stalled",control_plane="default",status="true"}`:                                                     0,
			`meshplane_controlplane_status_condition{condition="Stalled",control_plane="default",status="false"}`:                                                    1,
			`meshplane_controlplane_status_condition{condition="Stalled",control_plane="default",status="unknown"}`:                                                  0,
			`meshplane_controlplane_component_ready{component="Pilot",control_plane="default",deployment="istiod",namespace="istio-system"}`:                         1,
			`meshplane_controlplane_component_ready{component="IngressGateway",control_plane="default",deployment="istio-ingressgateway",namespace="istio-ingress"}`: 1,
			`meshplane_controlplane_revision_ready{control_plane="default",revision="default",version="1.31.1"}`:                                                     1,
			`meshplane_controlplane_revision_injected_pods{control_plane="default",revision="default"}`:                                                              7,
			`meshplane_controlplane_ca_expiry_timestamp_seconds{control_plane="default"}`:                                                                            1900000000,
		},
	}, {
		name: "stalled",
		mcp:  stalledControlPlane(),
		want: map[string]float64{
			`meshplane_controlplane_ready{control_plane="canary"}`:                                                                                 0,
			`meshplane_controlplane_status_condition{condition="Ready",control_plane="canary",status="true"}`:                                      0,
			`meshplane_controlplane_status_condition{condition="Ready",control_plane="canary",status="false"}`:                                     1,
			`meshplane_controlplane_status_condition{condition="Ready",control_plane="canary",status="unknown"}`:                                   0,
			`meshplane_controlplane_status_condition{condition="Reconciled",control_plane="canary",status="true"}`:                                 0,
			`meshplane_controlplane_status_condition{condition="Reconciled",control_plane="canary",status="false"}`:                                1,
			`meshplane_controlplane_status_condition{condition="Reconciled",control_plane="canary",status="unknown"}`:                              0,
			`meshplane_controlplane_status_condition{condition="Progressing",control_plane="canary",status="true"}`:                                0,
			`meshplane_controlplane_status_condition{condition="Progressing",control_plane="canary",status="false"}`:                               0,
			`meshplane_controlplane_status_condition{condition="Progressing",control_plane="canary",status="unknown"}`:                             1,
			`meshplane_controlplane_status_condition{condition="Stalled",control_plane="canary",status="true"}`:                                    1,
			`meshplane_controlplane_status_condition{condition="Stalled",control_plane="canary",status="false"}`:                                   0,
			`meshplane_controlplane_status_condition{condition="Stalled",control_plane="canary",status="unknown"}`:                                 0,
			`meshplane_controlplane_component_ready{component="Pilot",control_plane="canary",deployment="istiod-canary",namespace="istio-system"}`: 0,
			`meshplane_controlplane_revision_ready{control_plane="canary",revision="canary",version="1.30.3"}`:                                     0,
			`meshplane_controlplane_revision_injected_pods{control_plane="canary",revision="canary"}`:                                              0,
		},
	}, {
		// Created a moment ago: the operator has not written a status yet.
		name: "new",
		mcp:  &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "new"}},
		want: map[string]float64{
			`meshplane_controlplane_ready{control_plane="new"}`: 0,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got := series(t, newCollector(fakeReader(t, tt.mcp)))
			g.Expect(withPrefix(got, "meshplane_controlplane_")).To(Equal(tt.want))
		})
	}
}

// Series follow the objects: a deleted control plane's series are gone at the next scrape,
// with nothing to clean up.
func TestDeletedControlPlaneLeavesNoSeries(t *testing.T) {
	g := NewWithT(t)
	r := fakeReader(t, readyControlPlane(), stalledControlPlane())
	c := newCollector(r)
	g.Expect(withPrefix(series(t, c), "meshplane_controlplane_ready")).To(HaveLen(2))

	g.Expect(r.Delete(context.Background(), stalledControlPlane())).To(Succeed())
	g.Expect(withPrefix(series(t, c), "meshplane_controlplane_ready")).To(Equal(map[string]float64{
		`meshplane_controlplane_ready{control_plane="default"}`: 1,
	}))
}
