package canary

import (
	"math"
	"time"
)

// Observations are the facts the controller read this pass, as plain data.
type Observations struct {
	// Generation is the Canary's metadata.generation, stamped on the conditions and on
	// status.observedGeneration (what kstatus compares it with).
	Generation int64

	// Target is the user's Deployment (spec.targetRef): it runs the canary.
	Target Workload

	// Primary is the <name>-primary Deployment the operator keeps: it runs the stable version.
	Primary Workload

	// AppliedWeight is the canary's weight read back from the VirtualService; nil while the
	// VirtualService does not exist or carries no split the operator recognises.
	AppliedWeight *int32

	// Check holds the results of the metrics check the controller ran this pass because
	// Due said one was due; nil when it ran none.
	Check *Check
}

// Workload is what the machine needs to know about a Deployment.
type Workload struct {
	// Found is false when the Deployment does not exist.
	Found bool

	// Revision identifies the pod template: for the target, a hash of its pod template; for
	// the primary, the target revision its template was copied from (recorded by the
	// controller when it copied it).
	Revision string

	// Ready is true when the Deployment has rolled out its current pod template: observed
	// generation current, every wanted replica updated and available, and at least one
	// replica (a target scaled to zero is not ready to receive traffic).
	Ready bool
}

// Check holds the results of one metrics check.
type Check struct {
	// Requests is the number of requests the canary served over the check's window. It is
	// only judged when spec.analysis.minRequestCount is set.
	Requests Result

	// Metrics are the results by metric name (spec.analysis.metrics[].name). A metric
	// missing from the map counts as no data.
	Metrics map[string]Result
}

// Result is the outcome of one query: a value, no data, or an error.
type Result struct {
	// Value is the measured value; nil means the query returned nothing. NaN also counts
	// as no data; ±Inf is a value (a latency beyond the last histogram bucket).
	Value *float64

	// Err is the query's error. It wins over Value.
	Err error
}

// Measured is a Result holding the value v.
func Measured(v float64) Result { return Result{Value: &v} }

// NoData is a Result without a value.
func NoData() Result { return Result{} }

// QueryFailed is a Result for a query that failed with err.
func QueryFailed(err error) Result { return Result{Err: err} }

func (r Result) hasValue() bool { return r.Err == nil && r.Value != nil && !math.IsNaN(*r.Value) }

// Actions are what the controller must do after a pass. They are complete desired state,
// not deltas: applying them again changes nothing.
type Actions struct {
	// Weight is the canary's share of traffic in percent (0-100) the VirtualService must
	// carry; the primary gets the rest.
	Weight int32

	// Promote asks for the target's pod template, as observed in this pass (the revision
	// in Observations.Target), to be copied to the primary Deployment when the primary runs
	// another revision. When false the primary's template must be left as it is.
	Promote bool

	// ScaleTarget says whether the target Deployment runs its replicas or is scaled to zero.
	ScaleTarget Scale

	// Events are the transitions of this pass, to be recorded as Kubernetes events on the
	// Canary, in order.
	Events []Event

	// RequeueAfter is when the next time-based step is due (a check, a step down while
	// Restarting); zero when the machine only waits for observations to change.
	RequeueAfter time.Duration
}

// Scale is the desired scale of the target Deployment.
type Scale string

const (
	// ScaleUp runs the target at its replicas: it serves canary traffic, or is about to.
	ScaleUp Scale = "Up"
	// ScaleDown scales the target to zero: no traffic reaches it.
	ScaleDown Scale = "Down"
)

// Event is one transition to record as a Kubernetes event.
type Event struct {
	// Type is "Normal" or "Warning" (corev1.EventTypeNormal, corev1.EventTypeWarning).
	Type string
	// Reason is a CamelCase constant from the API package (v1alpha1.Reason*).
	Reason string
	// Message says what happened, deterministically (no timestamps).
	Message string
}
