package prom

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
)

// Target is the workload a built-in query measures, as Istio's metrics label it.
type Target struct {
	Namespace string // destination_workload_namespace
	Workload  string // destination_workload: the Deployment's name
}

// selector matches the requests t received, as its own sidecar reported them
// (reporter="destination"; the client's sidecar reports the same requests again).
func (t Target) selector() string {
	return `reporter="destination",destination_workload_namespace=` + strconv.Quote(t.Namespace) +
		`,destination_workload=` + strconv.Quote(t.Workload)
}

func (t Target) validate() error {
	var errs []error
	if t.Namespace == "" {
		errs = append(errs, errors.New("no namespace"))
	}
	if t.Workload == "" {
		errs = append(errs, errors.New("no workload"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("query target: %w", errors.Join(errs...))
	}
	return nil
}

// Duration formats d as a PromQL duration ("1m", "1m30s", "500ms"). It must be a positive
// whole number of milliseconds.
func Duration(d time.Duration) (string, error) {
	if d < time.Millisecond || d%time.Millisecond != 0 {
		return "", fmt.Errorf("window %s: PromQL takes a positive whole number of milliseconds", d)
	}
	return model.Duration(d).String(), nil
}

func build(t Target, window time.Duration, format string) (string, error) {
	if err := t.validate(); err != nil {
		return "", err
	}
	w, err := Duration(window)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf(format, t.selector(), w), nil
}

// RequestSuccessRateQuery is the share of t's requests over the window that did not fail
// with a 5xx, from 0 to 1 (Flagger's request-success-rate, which is in percent, divided by
// 100). With no requests in the window the answer is NaN or empty: no data. When every
// request failed, the non-5xx side has no series at all; "or vector(0)" makes that 0
// rather than no data.
func RequestSuccessRateQuery(t Target, window time.Duration) (string, error) {
	return build(t, window,
		`(sum(rate(istio_requests_total{%[1]s,response_code!~"5.."}[%[2]s])) or vector(0))`+
			` / sum(rate(istio_requests_total{%[1]s}[%[2]s]))`)
}

// RequestDurationP99Query is the 99th percentile of t's request durations over the window,
// in milliseconds (Flagger's request-duration). No requests in the window: no data.
func RequestDurationP99Query(t Target, window time.Duration) (string, error) {
	return build(t, window,
		`histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{%[1]s}[%[2]s])))`)
}

// RequestCountQuery is how many requests t received over the window, for a minimum request
// count. It is extrapolated like every increase(), so not always a whole number. No request
// ever seen in the window's range: no data, which means zero.
func RequestCountQuery(t Target, window time.Duration) (string, error) {
	return build(t, window, `sum(increase(istio_requests_total{%[1]s}[%[2]s]))`)
}
