package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Outcomes of an injection admission, the values of the outcome label.
const (
	// OutcomeInjected: the pod was mutated to run the sidecar.
	OutcomeInjected = "injected"
	// OutcomeSkipped: the pod was admitted unchanged (opted out, or its control plane is gone).
	OutcomeSkipped = "skipped"
	// OutcomeRejected: the pod was denied, for example for a malformed annotation: the
	// user's to fix.
	OutcomeRejected = "rejected"
	// OutcomeError: the webhook could not answer (the request could not be decoded, the
	// control plane could not be read): the operator's to fix, and with failurePolicy Fail
	// the pod is not created.
	OutcomeError = "error"
)

var (
	injectionAdmissions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshplane_injection_webhook_admissions_total",
		Help: "Admissions answered by the sidecar injection webhook, by outcome: injected, skipped, rejected or error.",
	}, []string{"control_plane", "revision", "outcome"})
	injectionDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "meshplane_injection_webhook_duration_seconds",
		Help: "Time the sidecar injection webhook took to decide an admission, from reading the control plane to the response (controller_runtime_webhook_latency_seconds covers the whole HTTP request).",
		// Injection takes about a millisecond; the API server gives up after the webhook's
		// 10s timeout.
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"control_plane", "revision"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(injectionAdmissions, injectionDuration)
}

// InjectionLabels say which control plane answered an admission. The handler fills them in
// as it learns them: both stay empty until the MeshControlPlane named in the request path
// is found, so a request naming no control plane cannot mint series, and Revision stays
// empty until the control plane's injection config is resolved.
type InjectionLabels struct {
	ControlPlane string
	Revision     string
}

// ObserveInjection records one answered admission and the time it took.
func ObserveInjection(l InjectionLabels, resp admission.Response, took time.Duration) {
	if _, seen := initialized.Load(l); !seen {
		initInjectionSeries(l)
	}
	injectionAdmissions.WithLabelValues(l.ControlPlane, l.Revision, InjectionOutcome(resp)).Inc()
	injectionDuration.WithLabelValues(l.ControlPlane, l.Revision).Observe(took.Seconds())
}

var (
	injectionOutcomes = []string{OutcomeInjected, OutcomeSkipped, OutcomeRejected, OutcomeError}
	// initialized holds the InjectionLabels whose series exist.
	initialized sync.Map
)

// initInjectionSeries creates a control plane revision's admission counters at 0 for every
// outcome. Prometheus cannot tell how a counter first seen at 3 got there, so rate() and
// increase() would miss a control plane's first admissions of each outcome (its first
// errors, say) if the series appeared only with them. The status collector calls it for
// every revision it reports, so the series exist before the first pod is admitted.
func initInjectionSeries(l InjectionLabels) {
	for _, o := range injectionOutcomes {
		injectionAdmissions.WithLabelValues(l.ControlPlane, l.Revision, o)
	}
	initialized.Store(l, struct{}{})
}

// InjectionOutcome classifies a response of the injection handler: allowed with a patch is
// injected, allowed without one skipped, denied (admission.Denied's 403) rejected, and any
// other refusal (admission.Errored) an error.
func InjectionOutcome(resp admission.Response) string {
	switch {
	case resp.Allowed && (len(resp.Patches) > 0 || len(resp.Patch) > 0):
		return OutcomeInjected
	case resp.Allowed:
		return OutcomeSkipped
	case resp.Result != nil && resp.Result.Code == http.StatusForbidden:
		return OutcomeRejected
	default:
		return OutcomeError
	}
}
