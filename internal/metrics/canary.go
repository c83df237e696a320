package metrics

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

var (
	canaryPhase = newDesc("meshplane_canary_phase",
		"The Canary's phase: one series per phase, 1 for the current one (all 0 before the operator first records one).",
		"namespace", "canary", "phase")
	canaryStatusReason = newDesc("meshplane_canary_status_reason",
		"The cause of the Canary's current phase or step (status.reason, a CamelCase constant such as AnalysisFailed or Aborted): 1, with the reason as a label.",
		"namespace", "canary", "reason")
	canaryTargetWeight = newDesc("meshplane_canary_target_weight",
		"The canary's traffic percentage the operator wants (status.targetWeight); the rest goes to the primary.",
		"namespace", "canary")
	canaryAppliedWeight = newDesc("meshplane_canary_applied_weight",
		"The canary's traffic percentage read back from the VirtualService (status.appliedWeight); absent while the VirtualService does not exist.",
		"namespace", "canary")
	canaryLastCheckOutcome = newDesc("meshplane_canary_last_check_outcome",
		"The outcome of the Canary's last analysis check: one series per outcome (Passed, Failed, NoData, Error), 1 for the last check's (all 0 before the first check).",
		"namespace", "canary", "outcome")
	canaryLastCheckTime = newDesc("meshplane_canary_last_check_timestamp_seconds",
		"When the Canary's last analysis check was recorded (Unix time); absent before the first check.",
		"namespace", "canary")
)

// canaryPhases and checkOutcomes are the API's enumerations (a test compares them with the
// CRD), one series each.
var (
	canaryPhases = []string{
		string(meshv1alpha1.CanaryInitializing), string(meshv1alpha1.CanaryStable),
		string(meshv1alpha1.CanaryProgressing), string(meshv1alpha1.CanaryRestarting),
		string(meshv1alpha1.CanaryAwaitingPromotion), string(meshv1alpha1.CanaryPromoting),
		string(meshv1alpha1.CanaryFinalizing), string(meshv1alpha1.CanarySucceeded),
		string(meshv1alpha1.CanaryRollingBack), string(meshv1alpha1.CanaryFailed),
		string(meshv1alpha1.CanaryPaused),
	}
	checkOutcomes = []string{
		string(meshv1alpha1.CheckPassed), string(meshv1alpha1.CheckFailed),
		string(meshv1alpha1.CheckNoData), string(meshv1alpha1.CheckError),
	}
)

func init() { register(canaries{}) }

type canaries struct{}

func (canaries) kind() string          { return "Canary" }
func (canaries) object() client.Object { return &meshv1alpha1.Canary{} }

func (canaries) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{canaryPhase, canaryStatusReason, canaryTargetWeight,
		canaryAppliedWeight, canaryLastCheckOutcome, canaryLastCheckTime} {
		ch <- d
	}
}

func (canaries) collect(ctx context.Context, r client.Reader, ch chan<- prometheus.Metric) error {
	list := &meshv1alpha1.CanaryList{}
	if err := r.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	for i := range list.Items {
		collectCanary(ch, &list.Items[i])
	}
	return nil
}

func collectCanary(ch chan<- prometheus.Metric, c *meshv1alpha1.Canary) {
	ns, name, st := c.Namespace, c.Name, &c.Status
	oneOf(ch, canaryPhase, canaryPhases, string(st.Phase), ns, name)
	if st.Reason != "" {
		gauge(ch, canaryStatusReason, 1, ns, name, st.Reason)
	}
	gauge(ch, canaryTargetWeight, float64(st.TargetWeight), ns, name)
	if st.AppliedWeight != nil {
		gauge(ch, canaryAppliedWeight, float64(*st.AppliedWeight), ns, name)
	}
	last := ""
	if n := len(st.Checks); n > 0 {
		last = string(st.Checks[n-1].Outcome) // oldest first
	}
	oneOf(ch, canaryLastCheckOutcome, checkOutcomes, last, ns, name)
	if st.LastCheckTime != nil {
		gauge(ch, canaryLastCheckTime, float64(st.LastCheckTime.Unix()), ns, name)
	}
}
