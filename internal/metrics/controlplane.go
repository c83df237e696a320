package metrics

import (
	"context"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

var (
	controlPlaneReady = newDesc("meshplane_controlplane_ready",
		"Whether the MeshControlPlane's Ready condition is True (1) or not (0).",
		"control_plane")
	controlPlaneCondition = newDesc("meshplane_controlplane_status_condition",
		"The MeshControlPlane's status conditions: for each condition, one series per status (true, false, unknown), 1 for the current one.",
		"control_plane", "condition", "status")
	controlPlaneComponentReady = newDesc("meshplane_controlplane_component_ready",
		"Whether a workload of the control plane (istiod, a gateway) runs the desired pod template on all its replicas and is available (1) or not (0).",
		"control_plane", "namespace", "deployment", "component")
	controlPlaneRevisionReady = newDesc("meshplane_controlplane_revision_ready",
		"Whether the revision's istiod is available (1) or not (0).",
		"control_plane", "revision", "version")
	controlPlaneRevisionInjectedPods = newDesc("meshplane_controlplane_revision_injected_pods",
		"Pods currently running the revision's sidecar.",
		"control_plane", "revision")
	controlPlaneCAExpiry = newDesc("meshplane_controlplane_ca_expiry_timestamp_seconds",
		"When the CA certificate istiod signs with expires (Unix time), for a plugged or cert-manager CA; absent for istiod's self-signed CA, which istiod renews itself.",
		"control_plane")
)

// conditionStatuses are the values of the status label, as kube-state-metrics spells them.
var conditionStatuses = []string{"true", "false", "unknown"}

func init() { register(controlPlanes{}) }

type controlPlanes struct{}

func (controlPlanes) kind() string          { return "MeshControlPlane" }
func (controlPlanes) object() client.Object { return &meshv1alpha1.MeshControlPlane{} }

func (controlPlanes) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{controlPlaneReady, controlPlaneCondition, controlPlaneComponentReady,
		controlPlaneRevisionReady, controlPlaneRevisionInjectedPods, controlPlaneCAExpiry} {
		ch <- d
	}
}

func (controlPlanes) collect(ctx context.Context, r client.Reader, ch chan<- prometheus.Metric) error {
	list := &meshv1alpha1.MeshControlPlaneList{}
	// Read-only: no copy of each object per scrape.
	if err := r.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	for i := range list.Items {
		collectControlPlane(ch, &list.Items[i])
	}
	return nil
}

func collectControlPlane(ch chan<- prometheus.Metric, mcp *meshv1alpha1.MeshControlPlane) {
	name, st := mcp.Name, &mcp.Status
	ready := false
	for _, c := range st.Conditions {
		ready = ready || (c.Type == meshv1alpha1.ConditionReady && c.Status == metav1.ConditionTrue)
		oneOf(ch, controlPlaneCondition, conditionStatuses, strings.ToLower(string(c.Status)), name, c.Type)
	}
	gauge(ch, controlPlaneReady, boolValue(ready), name)
	for _, c := range st.Components {
		gauge(ch, controlPlaneComponentReady, boolValue(c.Ready), name, c.Namespace, c.Name, c.Component)
	}
	for _, rev := range st.Revisions {
		gauge(ch, controlPlaneRevisionReady, boolValue(rev.Ready), name, rev.Name, rev.Version)
		gauge(ch, controlPlaneRevisionInjectedPods, float64(rev.InjectedPods), name, rev.Name)
		initInjectionSeries(InjectionLabels{ControlPlane: name, Revision: rev.Name})
	}
	if ca := st.CertificateAuthority; ca != nil && ca.NotAfter != nil {
		gauge(ch, controlPlaneCAExpiry, float64(ca.NotAfter.Unix()), name)
	}
}
