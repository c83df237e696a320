package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// CanarySpec is the desired progressive delivery of one Deployment.
type CanarySpec struct {
	// targetRef names the Deployment (in the Canary's namespace) whose pod template changes
	// are rolled out progressively. The operator runs the stable version in a copy named
	// <name>-primary and shifts traffic from it to the target step by step. It cannot be
	// changed: create another Canary for another Deployment.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="targetRef is immutable; create another Canary for another Deployment"
	// +required
	TargetRef CanaryTargetRef `json:"targetRef"`

	// service describes the Services and the routing (VirtualService and DestinationRule)
	// the operator generates for the target: the user never edits that routing.
	// +required
	Service CanaryService `json:"service"`

	// analysis says how traffic moves to the canary and how each step is judged.
	// +required
	Analysis CanaryAnalysis `json:"analysis"`

	// promotion is Automatic (the default: promote once every step has passed) or Gated
	// (after the last step, keep the canary at its final weight, still checking it, until
	// promoteToken changes).
	// +kubebuilder:default=Automatic
	// +optional
	Promotion PromotionMode `json:"promotion,omitempty"`

	// abort, while true, rolls back a rollout in progress (all traffic to primary, the target
	// scaled down) and keeps new revisions from starting. Clearing it lets a new revision
	// start; the aborted revision needs a new retryToken. A rollout whose promotion has
	// begun is not aborted: the primary already runs the new revision.
	// +optional
	Abort bool `json:"abort,omitempty"`

	// promoteToken promotes a Gated canary waiting in AwaitingPromotion when it changes to a
	// new non-empty value (any string, for example a date or a ticket number). A token set in
	// any other phase is recorded as handled, with a warning event, and does not approve a
	// later promotion: set a new one once the Canary awaits promotion.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[^\x00-\x1F\x7F-\x9F]*$`
	// +optional
	PromoteToken string `json:"promoteToken,omitempty"`

	// retryToken restarts the analysis, when it changes to a new non-empty value, of a Failed
	// canary (from the first step, without changing the pod template) or of a Paused one
	// (from its current step). In any other phase, or while abort is true, it is recorded as
	// handled, with a warning event.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[^\x00-\x1F\x7F-\x9F]*$`
	// +optional
	RetryToken string `json:"retryToken,omitempty"`
}

// CanaryTargetRef names the Deployment a Canary rolls out.
type CanaryTargetRef struct {
	// name of the Deployment, in the Canary's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=238
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +required
	Name string `json:"name"`
}

// PromotionMode says who decides the promotion of a canary that passed its analysis.
// +kubebuilder:validation:Enum=Automatic;Gated
type PromotionMode string

const (
	// PromotionAutomatic promotes as soon as the last step has passed.
	PromotionAutomatic PromotionMode = "Automatic"
	// PromotionGated waits at the last step for a new spec.promoteToken.
	PromotionGated PromotionMode = "Gated"
)

// CanaryService describes the target's Services and the routing the operator generates:
// Services <name> (the one clients call), <name>-primary and <name>-canary, a
// DestinationRule and a VirtualService splitting the traffic between primary and canary.
type CanaryService struct {
	// port the Services expose.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +required
	Port int32 `json:"port"`

	// portName names the Services' port; Istio takes the protocol from it, so it should start
	// with the protocol, as in "http" (the default), "http-web" or "grpc".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:default=http
	// +optional
	PortName string `json:"portName,omitempty"`

	// targetPort is the container port, a number or a port name, traffic is sent to (default:
	// port).
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? (self >= 1 && self <= 65535) : (size(self) <= 15 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))",message="targetPort must be a port number from 1 to 65535 or a port name of at most 15 lowercase letters, digits and '-'"
	// +optional
	TargetPort *intstr.IntOrString `json:"targetPort,omitempty"`

	// hosts the VirtualService routes, as in Istio's VirtualService.hosts (default: the
	// <name> Service).
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	// +optional
	Hosts []Hostname `json:"hosts,omitempty"`

	// gateways the VirtualService is bound to, as "<namespace>/<name>" or "<name>" (default:
	// only the sidecars of the mesh). When set, list "mesh" too for traffic inside the mesh.
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	// +optional
	Gateways []GatewayName `json:"gateways,omitempty"`

	// match restricts the route to requests matching any of these conditions, as Istio's
	// HTTPRoute.match does; requests matching none are not routed. Empty matches every request.
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	Match []HTTPMatch `json:"match,omitempty"`

	// timeout of a request through the route (default: Istio's, no timeout).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('1h')",message="service.timeout must be more than 0s and at most 1h"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// retries sets the route's retry policy (default: Istio's).
	// +optional
	Retries *HTTPRetry `json:"retries,omitempty"`
}

// Hostname is a host a VirtualService routes: a DNS name, optionally starting with "*.".
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
type Hostname string

// GatewayName is an Istio Gateway, "<namespace>/<name>" or "<name>", or "mesh".
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
type GatewayName string

// HTTPMatch is a typed subset of Istio's HTTPMatchRequest: every condition set must match.
type HTTPMatch struct {
	// uri matches the request path.
	// +optional
	URI *StringMatch `json:"uri,omitempty"`

	// method matches the HTTP method.
	// +optional
	Method *StringMatch `json:"method,omitempty"`

	// headers match request headers by name (lowercase).
	// +kubebuilder:validation:MaxProperties=16
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 128 && k.matches('^[a-z0-9][-a-z0-9_.]*$'))",message="match.headers keys must be lowercase HTTP header names (letters, digits, '-', '_', '.') of at most 128 characters"
	// +optional
	Headers map[string]StringMatch `json:"headers,omitempty"`
}

// StringMatch matches a string in exactly one way.
// +kubebuilder:validation:XValidation:rule="[has(self.exact), has(self.prefix), has(self.regex)].filter(x, x).size() == 1",message="a string match must set exactly one of exact, prefix or regex"
type StringMatch struct {
	// exact matches the whole string.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Exact *string `json:"exact,omitempty"`

	// prefix matches the start of the string.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Prefix *string `json:"prefix,omitempty"`

	// regex matches an RE2 regular expression against the whole string.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Regex *string `json:"regex,omitempty"`
}

// HTTPRetry is a typed subset of Istio's HTTPRetry.
type HTTPRetry struct {
	// attempts is how many times a request is retried (0 turns retries off).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +required
	Attempts int32 `json:"attempts"`

	// perTryTimeout is the timeout of each attempt (default: the route's timeout).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('1h')",message="retries.perTryTimeout must be more than 0s and at most 1h"
	// +optional
	PerTryTimeout *metav1.Duration `json:"perTryTimeout,omitempty"`

	// retryOn lists the conditions that trigger a retry, comma-separated, as Envoy's
	// x-envoy-retry-on (for example "5xx,connect-failure,reset").
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[a-z0-9-]+(,[a-z0-9-]+)*$`
	// +optional
	RetryOn string `json:"retryOn,omitempty"`
}

// CanaryAnalysis says how traffic moves to the canary and how each step is judged. The
// weights are either the explicit list steps, or stepWeight, 2×stepWeight, … up to maxWeight.
// +kubebuilder:validation:XValidation:rule="has(self.steps) != has(self.stepWeight)",message="analysis must set either steps (the list of weights) or stepWeight with maxWeight, not both and not neither"
// +kubebuilder:validation:XValidation:rule="has(self.stepWeight) == has(self.maxWeight)",message="analysis.stepWeight and analysis.maxWeight must be set together"
// +kubebuilder:validation:XValidation:rule="!has(self.stepWeight) || !has(self.maxWeight) || self.stepWeight <= self.maxWeight",message="analysis.maxWeight must be at least analysis.stepWeight"
type CanaryAnalysis struct {
	// steps are the canary's traffic percentages, one per step, strictly increasing from 1
	// to 100, for example [10, 25, 50, 75]. Promotion follows the last step.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=20
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=100
	// +kubebuilder:validation:XValidation:rule="self.isSorted() && self.all(w, self.indexOf(w) == self.lastIndexOf(w))",message="analysis.steps must be strictly increasing percentages, for example [10, 25, 50, 75]"
	// +listType=atomic
	// +optional
	Steps []int32 `json:"steps,omitempty"`

	// stepWeight is the percentage added at each step, up to maxWeight (the last step is
	// maxWeight even when it is not a multiple of stepWeight).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	StepWeight *int32 `json:"stepWeight,omitempty"`

	// maxWeight is the canary's percentage at the last step, with stepWeight.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	MaxWeight *int32 `json:"maxWeight,omitempty"`

	// interval between two checks of the metrics (at least 10s; default 1m). It is also the
	// default settleTime.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s') && duration(self) <= duration('1h')",message="analysis.interval must be at least 10s and at most 1h"
	// +kubebuilder:default="1m"
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`

	// settleTime is how long the canary runs at a new weight, once the VirtualService carries
	// it and the canary is ready, before the first check at that weight (default: one
	// interval, so the first check sees only traffic at the new weight; "0s" checks one
	// second after the weight is in effect).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('1h')",message="analysis.settleTime must be at most 1h"
	// +optional
	SettleTime *metav1.Duration `json:"settleTime,omitempty"`

	// checksPerStep is how many checks must pass at a weight before the next step.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=1
	// +optional
	ChecksPerStep int32 `json:"checksPerStep,omitempty"`

	// failureThreshold is how many failed checks at one step roll the canary back (default
	// 1: the first failed check). Checks without data or with a query error do not count.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=1
	// +optional
	FailureThreshold int32 `json:"failureThreshold,omitempty"`

	// minRequestCount is the number of requests the canary must have served during a check
	// for its metrics to count; a check with fewer is a check without data (default 0: any).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000000
	// +optional
	MinRequestCount int32 `json:"minRequestCount,omitempty"`

	// noData says what happens when checks find no data (no requests, fewer than
	// minRequestCount, or an empty or NaN result): the step is held, and after limit such
	// checks in a row the action is taken.
	// +kubebuilder:default={}
	// +optional
	NoData *NoDataPolicy `json:"noData,omitempty"`

	// metrics are checked at every check; a check passes when every metric is within its
	// thresholds.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +listType=map
	// +listMapKey=name
	// +required
	Metrics []CanaryMetric `json:"metrics"`

	// prometheus is the server the metrics are queried from.
	// +required
	Prometheus PrometheusSource `json:"prometheus"`
}

// NoDataAction is what happens after too many checks without data in a row.
// +kubebuilder:validation:Enum=Pause;Rollback;Pass
type NoDataAction string

const (
	// NoDataPause stops the analysis at the current weight (phase Paused) until a new
	// retryToken resumes it, spec.abort rolls it back or a new revision replaces it.
	NoDataPause NoDataAction = "Pause"
	// NoDataRollback rolls the canary back, as a failed analysis does.
	NoDataRollback NoDataAction = "Rollback"
	// NoDataPass counts the check as passed: for workloads whose traffic is too sparse to
	// judge, where the rollout should go on without evidence.
	NoDataPass NoDataAction = "Pass"
)

// NoDataPolicy holds a step while checks find no data, then acts.
type NoDataPolicy struct {
	// limit is how many checks in a row may find no data before the action is taken.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=5
	// +optional
	Limit int32 `json:"limit,omitempty"`

	// action is Pause (the default), Rollback or Pass.
	// +kubebuilder:default=Pause
	// +optional
	Action NoDataAction `json:"action,omitempty"`
}

// Built-in metrics, computed from Istio's standard metrics for the canary's workload.
const (
	// MetricRequestSuccessRate is the percentage (0-100) of the canary's requests not
	// answered with a 5xx, from istio_requests_total.
	MetricRequestSuccessRate = "request-success-rate"
	// MetricRequestDuration is the canary's 99th percentile request duration in
	// milliseconds, from istio_request_duration_milliseconds_bucket.
	MetricRequestDuration = "request-duration"
)

// CanaryMetric is one metric a check evaluates.
// +kubebuilder:validation:XValidation:rule="self.name in ['request-success-rate', 'request-duration'] || has(self.query)",messageExpression="'metric ' + self.name + ' is not a built-in metric (request-success-rate, request-duration): give it a PromQL query'"
// +kubebuilder:validation:XValidation:rule="!(self.name in ['request-success-rate', 'request-duration']) || !has(self.query)",message="the built-in metrics request-success-rate and request-duration take no query; give a custom metric another name"
type CanaryMetric struct {
	// name identifies the metric: "request-success-rate" (percentage of requests without a
	// 5xx) and "request-duration" (99th percentile in milliseconds) are built in; any other
	// name is a custom metric with a query.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +required
	Name string `json:"name"`

	// query is the PromQL of a custom metric; it must return a single sample. An empty
	// result or NaN counts as no data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Query string `json:"query,omitempty"`

	// thresholdRange is the range the value must stay in for the check to pass.
	// +required
	ThresholdRange ThresholdRange `json:"thresholdRange"`
}

// ThresholdRange bounds a metric's value: the value passes when min <= value <= max.
// +kubebuilder:validation:XValidation:rule="has(self.min) || has(self.max)",message="thresholdRange must set min, max or both"
// +kubebuilder:validation:XValidation:rule="!has(self.min) || !has(self.max) || double(self.min) <= double(self.max)",message="thresholdRange.min must not exceed thresholdRange.max"
type ThresholdRange struct {
	// min is the lowest passing value, a decimal number such as "99" or "99.5".
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^-?[0-9]+(\.[0-9]+)?$`
	// +optional
	Min *string `json:"min,omitempty"`

	// max is the highest passing value, a decimal number such as "500".
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^-?[0-9]+(\.[0-9]+)?$`
	// +optional
	Max *string `json:"max,omitempty"`
}

// PrometheusSource is a Prometheus server and how to authenticate to it.
type PrometheusSource struct {
	// address is the server's base URL, for example
	// "http://prometheus.monitoring.svc:9090".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^https?://[^\s/?#]+(/[^\s?#]*)?$`
	// +required
	Address string `json:"address"`

	// credentialsSecretRef names a Secret in the Canary's namespace with the credentials:
	// "username" and "password" (basic auth) or "token" (bearer), and optionally "ca.crt" to
	// verify the server. Without it, requests are not authenticated.
	// +optional
	CredentialsSecretRef *LocalSecretReference `json:"credentialsSecretRef,omitempty"`
}

// LocalSecretReference names a Secret in the referrer's namespace.
type LocalSecretReference struct {
	// name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +required
	Name string `json:"name"`
}

// CanaryPhase is where a Canary is in its lifecycle. The package internal/canary documents
// the transitions.
// +kubebuilder:validation:Enum=Initializing;Stable;Progressing;Restarting;AwaitingPromotion;Promoting;Finalizing;Succeeded;RollingBack;Failed;Paused
type CanaryPhase string

const (
	// CanaryInitializing: the primary Deployment is being created from the target, which
	// serves all traffic meanwhile.
	CanaryInitializing CanaryPhase = "Initializing"
	// CanaryStable: the primary serves the target's revision; no rollout has run since.
	CanaryStable CanaryPhase = "Stable"
	// CanaryProgressing: traffic moves to the canary step by step, each step judged by checks.
	CanaryProgressing CanaryPhase = "Progressing"
	// CanaryRestarting: a new revision replaced the canary mid-rollout; traffic steps back
	// to the first step's weight before the analysis restarts there.
	CanaryRestarting CanaryPhase = "Restarting"
	// CanaryAwaitingPromotion: every step passed; a Gated canary waits for promoteToken,
	// still checked at its final weight.
	CanaryAwaitingPromotion CanaryPhase = "AwaitingPromotion"
	// CanaryPromoting: the primary rolls out the canary's revision.
	CanaryPromoting CanaryPhase = "Promoting"
	// CanaryFinalizing: traffic returns to the promoted primary; the target is scaled down
	// after.
	CanaryFinalizing CanaryPhase = "Finalizing"
	// CanarySucceeded: the last rollout was promoted.
	CanarySucceeded CanaryPhase = "Succeeded"
	// CanaryRollingBack: the canary failed or was aborted; traffic returns to the primary.
	CanaryRollingBack CanaryPhase = "RollingBack"
	// CanaryFailed: the last rollout was rolled back; it waits for retryToken or a new
	// revision.
	CanaryFailed CanaryPhase = "Failed"
	// CanaryPaused: checks found no data too many times in a row; the weight is held until
	// retryToken resumes the analysis.
	CanaryPaused CanaryPhase = "Paused"
)

// CheckOutcome is the verdict of one check or one metric.
// +kubebuilder:validation:Enum=Passed;Failed;NoData;Error
type CheckOutcome string

const (
	// CheckPassed: every metric was within its thresholds.
	CheckPassed CheckOutcome = "Passed"
	// CheckFailed: a metric was outside its thresholds.
	CheckFailed CheckOutcome = "Failed"
	// CheckNoData: a metric had no data, or the canary served fewer requests than
	// minRequestCount. Not a failure: the step is held.
	CheckNoData CheckOutcome = "NoData"
	// CheckError: a query failed. Not a failure: the step is held and the check retried at
	// the next interval.
	CheckError CheckOutcome = "Error"
)

// CanaryAnalysisStatus counts the checks of the current step.
type CanaryAnalysisStatus struct {
	// passed is the number of passed checks at the current step.
	// +optional
	Passed int32 `json:"passed"`
	// failed is the number of failed checks at the current step.
	// +optional
	Failed int32 `json:"failed"`
	// noData is the number of checks without data at the current step.
	// +optional
	NoData int32 `json:"noData"`
	// errors is the number of checks whose queries failed at the current step.
	// +optional
	Errors int32 `json:"errors"`
	// consecutiveNoData is the number of checks in a row without data (compared with
	// analysis.noData.limit).
	// +optional
	ConsecutiveNoData int32 `json:"consecutiveNoData"`
	// consecutiveErrors is the number of checks in a row whose queries failed.
	// +optional
	ConsecutiveErrors int32 `json:"consecutiveErrors"`
}

// CanaryCheck records one check.
type CanaryCheck struct {
	// time the check was recorded.
	// +required
	Time metav1.Time `json:"time"`
	// revision of the canary checked.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Revision string `json:"revision,omitempty"`
	// stepIndex is the step (from 0) the check belongs to.
	// +optional
	StepIndex int32 `json:"stepIndex"`
	// weight is the canary's traffic percentage during the check.
	// +optional
	Weight int32 `json:"weight"`
	// outcome of the check: Failed when a metric failed, else Error when a query failed, else
	// NoData when data was missing, else Passed.
	// +required
	Outcome CheckOutcome `json:"outcome"`
	// message explains an outcome other than Passed.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Message string `json:"message,omitempty"`
	// requests the canary served during the check, when measured.
	// +kubebuilder:validation:MaxLength=32
	// +optional
	Requests string `json:"requests,omitempty"`
	// metrics are the metrics' values and verdicts, in spec order.
	// +kubebuilder:validation:MaxItems=8
	// +listType=atomic
	// +optional
	Metrics []CanaryMetricResult `json:"metrics,omitempty"`
}

// CanaryMetricResult is one metric's value in one check.
type CanaryMetricResult struct {
	// name of the metric.
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`
	// value measured (empty without data or on error).
	// +kubebuilder:validation:MaxLength=32
	// +optional
	Value string `json:"value,omitempty"`
	// outcome for this metric.
	// +required
	Outcome CheckOutcome `json:"outcome"`
	// message explains an outcome other than Passed (the threshold crossed, the query error).
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Message string `json:"message,omitempty"`
}

// CanaryStatus is the persisted state of a Canary: everything the state machine needs to
// resume exactly after a restart, timers included.
type CanaryStatus struct {
	// observedGeneration is the generation the phase and conditions describe. It starts at 0,
	// so a Canary the operator has not seen yet reads as in progress, not as done.
	// +kubebuilder:default=0
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// phase is where the Canary is in its lifecycle.
	// +optional
	Phase CanaryPhase `json:"phase,omitempty"`

	// reason is the CamelCase cause of the current phase or step (for example StepAdvanced,
	// Superseded, AnalysisFailed, Aborted, NoData), as in the event that announced it. Failed
	// keeps the cause of its rollback.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Reason string `json:"reason,omitempty"`

	// message explains the reason in a sentence.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`

	// stableRevision is the revision (the target's pod template hash) the primary serves.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	StableRevision string `json:"stableRevision,omitempty"`

	// canaryRevision is the revision being rolled out, or last rolled out.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	CanaryRevision string `json:"canaryRevision,omitempty"`

	// stepIndex is the current step (from 0) in the analysis weights.
	// +kubebuilder:validation:Minimum=0
	// +optional
	StepIndex int32 `json:"stepIndex"`

	// targetWeight is the canary's traffic percentage the operator wants, from the spec and
	// the step; the rest goes to the primary.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	TargetWeight int32 `json:"targetWeight"`

	// appliedWeight is the canary's percentage read back from the VirtualService (absent
	// while it does not exist).
	// +optional
	AppliedWeight *int32 `json:"appliedWeight,omitempty"`

	// analysis counts the checks of the current step.
	// +optional
	Analysis CanaryAnalysisStatus `json:"analysis"`

	// stepStartTime is when the current step's weight was requested (absent while the step
	// waits for the canary to be ready).
	// +optional
	StepStartTime *metav1.Time `json:"stepStartTime,omitempty"`

	// settleStartTime is when the VirtualService was seen carrying the current weight with
	// the canary ready: the settle time runs from here.
	// +optional
	SettleStartTime *metav1.Time `json:"settleStartTime,omitempty"`

	// lastCheckTime is when the last check was recorded.
	// +optional
	LastCheckTime *metav1.Time `json:"lastCheckTime,omitempty"`

	// nextCheckTime is when the next check is due.
	// +optional
	NextCheckTime *metav1.Time `json:"nextCheckTime,omitempty"`

	// checks are the last checks, oldest first (at most 10).
	// +kubebuilder:validation:MaxItems=10
	// +listType=atomic
	// +optional
	Checks []CanaryCheck `json:"checks,omitempty"`

	// lastPromoteToken is the last spec.promoteToken handled (acted on, or ignored with an
	// event).
	// +kubebuilder:validation:MaxLength=128
	// +optional
	LastPromoteToken string `json:"lastPromoteToken,omitempty"`

	// lastRetryToken is the last spec.retryToken handled (acted on, or ignored with an event).
	// +kubebuilder:validation:MaxLength=128
	// +optional
	LastRetryToken string `json:"lastRetryToken,omitempty"`

	// conditions: Ready (the summary: the primary serves all traffic and no rollout is in
	// flight or failed), Progressing (a rollout is in flight), Reconciling (the operator still
	// has work to do: kstatus' InProgress) and Stalled (it cannot go on without a change by
	// the user: kstatus' Failed).
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Canary condition reasons (conditions types are shared with MeshControlPlane: Ready,
// Progressing, Reconciling, Stalled). They are also the reasons of the Canary's events.
const (
	// ReasonInitializing: the primary Deployment is being created from the target.
	ReasonInitializing = "Initializing"
	// ReasonInitialized: the primary serves the target's revision.
	ReasonInitialized = "Initialized"
	// ReasonNewRevision: the target's pod template changed; a rollout starts.
	ReasonNewRevision = "NewRevision"
	// ReasonStepAdvanced: the canary passed a step and moves to the next weight.
	ReasonStepAdvanced = "StepAdvanced"
	// ReasonSuperseded: a new revision replaced the canary mid-rollout.
	ReasonSuperseded = "Superseded"
	// ReasonRestarted: traffic is back at the first step's weight; the analysis restarts.
	ReasonRestarted = "Restarted"
	// ReasonReverted: the target went back to the stable revision mid-rollout.
	ReasonReverted = "Reverted"
	// ReasonAwaitingPromotion: every step passed; a Gated canary waits for promoteToken.
	ReasonAwaitingPromotion = "AwaitingPromotion"
	// ReasonPromoting: the primary rolls out the canary's revision.
	ReasonPromoting = "Promoting"
	// ReasonPromoted: the primary runs the canary's revision; traffic returns to it.
	ReasonPromoted = "Promoted"
	// ReasonSucceeded: the rollout is complete.
	ReasonSucceeded = "Succeeded"
	// ReasonAnalysisFailed: failureThreshold checks failed at a step.
	ReasonAnalysisFailed = "AnalysisFailed"
	// ReasonAborted: spec.abort is true.
	ReasonAborted = "Aborted"
	// ReasonNoData: checks found no data analysis.noData.limit times in a row.
	ReasonNoData = "NoData"
	// ReasonRolledBack: traffic is back on the primary after a failed or aborted rollout.
	ReasonRolledBack = "RolledBack"
	// ReasonRetried: a new retryToken restarted the analysis.
	ReasonRetried = "Retried"
	// ReasonCheckFailed: a check failed (an event; the step may still hold).
	ReasonCheckFailed = "CheckFailed"
	// ReasonWeightDrift: the VirtualService carried another weight than the one wanted (edited
	// by hand); it is corrected and the settle time restarts.
	ReasonWeightDrift = "WeightDrift"
	// ReasonTokenIgnored: a promoteToken or retryToken arrived in a phase that does not use it.
	ReasonTokenIgnored = "TokenIgnored"
	// ReasonRoutingPending: the VirtualService does not carry the wanted weight yet.
	ReasonRoutingPending = "RoutingPending"
	// ReasonPrimaryNotReady: the <name>-primary Deployment is not ready.
	ReasonPrimaryNotReady = "PrimaryNotReady"
	// ReasonTargetNotFound: the Deployment of spec.targetRef does not exist.
	ReasonTargetNotFound = "TargetNotFound"
	// ReasonMetricQueryFailed: several checks in a row could not query Prometheus.
	ReasonMetricQueryFailed = "MetricQueryFailed"

	// Reasons the controller sets besides the state machine's (ResourceConflict, ApplyFailed
	// and Applied are shared with MeshControlPlane).

	// ReasonInvalidTarget: the target Deployment cannot be rolled out by a Canary as it is:
	// its name does not fit the Services' names, or its selector would also select the
	// primary's pods.
	ReasonInvalidTarget = "InvalidTarget"
	// ReasonServiceNotManaged: a Service named after the target exists and the operator did
	// not create it. The VirtualService routes that host and the Service is left as it is.
	ReasonServiceNotManaged = "ServiceNotManaged"
	// ReasonDeleting: the Canary is being deleted; the target is scaled back up and given all
	// traffic before the operator's objects go.
	ReasonDeleting = "Deleting"
	// ReasonTargetRestored: the target runs its replicas again and serves all traffic; the
	// operator's objects are removed.
	ReasonTargetRestored = "TargetRestored"
)

// Canary rolls out a Deployment's new pod templates progressively: it shifts traffic from
// the stable version (<name>-primary) to the new one step by step, checks metrics from
// Prometheus at each step, and promotes or rolls back.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,categories=meshplane
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Weight",type=integer,JSONPath=`.status.targetWeight`
// +kubebuilder:printcolumn:name="Applied",type=integer,JSONPath=`.status.appliedWeight`,priority=1
// +kubebuilder:printcolumn:name="Step",type=integer,JSONPath=`.status.stepIndex`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Canary struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired progressive delivery.
	// +required
	Spec CanarySpec `json:"spec"`

	// status is the persisted state of the rollout. The schema defaults it to
	// observedGeneration 0 until the operator writes it, so kstatus and Argo CD never take an
	// unseen Canary for a reconciled one.
	// +kubebuilder:default={}
	// +optional
	Status CanaryStatus `json:"status,omitempty"`
}

// CanaryList contains a list of Canary.
// +kubebuilder:object:root=true
type CanaryList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Canary `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Canary{}, &CanaryList{})
}
