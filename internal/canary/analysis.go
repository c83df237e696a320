package canary

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// verdict is one check judged against the spec.
type verdict struct {
	outcome  meshv1alpha1.CheckOutcome
	requests string
	metrics  []meshv1alpha1.CanaryMetricResult
	// summary explains a Failed, NoData or Error outcome in a sentence fragment.
	summary string
}

// evaluate judges a check: Failed if any metric is outside its thresholds, else Error if any
// query failed, else NoData if any metric had no value, else Passed. With minRequestCount
// set, too few requests (or none counted) make it NoData, and a failed count Error,
// whatever the metrics say: a metric over a handful of requests is not evidence.
func evaluate(a *meshv1alpha1.CanaryAnalysis, c *Check) verdict {
	var v verdict
	if c.Requests.hasValue() {
		v.requests = formatCount(*c.Requests.Value)
	}
	var failed, errored, missing []string
	for _, m := range a.Metrics {
		r := c.Metrics[m.Name]
		res := meshv1alpha1.CanaryMetricResult{Name: m.Name}
		switch {
		case r.Err != nil:
			res.Outcome = meshv1alpha1.CheckError
			res.Message = truncate("query failed: "+r.Err.Error(), 256)
			errored = append(errored, m.Name+" "+res.Message)
		case !r.hasValue():
			res.Outcome = meshv1alpha1.CheckNoData
			res.Message = "no data"
			missing = append(missing, m.Name)
		default:
			res.Value = formatValue(*r.Value)
			res.Outcome, res.Message = judge(*r.Value, m.ThresholdRange)
			if res.Outcome == meshv1alpha1.CheckFailed {
				failed = append(failed, m.Name+" "+res.Message)
			}
		}
		v.metrics = append(v.metrics, res)
	}

	if minimum := a.MinRequestCount; minimum > 0 {
		switch {
		case c.Requests.Err != nil:
			v.outcome = meshv1alpha1.CheckError
			v.summary = truncate("counting the canary's requests failed: "+c.Requests.Err.Error(), 256)
			return v
		case !c.Requests.hasValue():
			v.outcome = meshv1alpha1.CheckNoData
			v.summary = fmt.Sprintf("the canary's requests could not be counted (minRequestCount %d)", minimum)
			return v
		case *c.Requests.Value < float64(minimum):
			v.outcome = meshv1alpha1.CheckNoData
			v.summary = fmt.Sprintf("the canary served %s requests, fewer than minRequestCount %d", v.requests, minimum)
			return v
		}
	}
	switch {
	case len(failed) > 0:
		v.outcome, v.summary = meshv1alpha1.CheckFailed, strings.Join(failed, "; ")
	case len(errored) > 0:
		v.outcome, v.summary = meshv1alpha1.CheckError, strings.Join(errored, "; ")
	case len(missing) > 0:
		v.outcome, v.summary = meshv1alpha1.CheckNoData, "no data for "+strings.Join(missing, ", ")
	default:
		v.outcome = meshv1alpha1.CheckPassed
	}
	return v
}

// judge compares a value with a threshold range (bounds included).
func judge(value float64, t meshv1alpha1.ThresholdRange) (meshv1alpha1.CheckOutcome, string) {
	if t.Min != nil {
		if lo, err := strconv.ParseFloat(*t.Min, 64); err != nil {
			return meshv1alpha1.CheckError, fmt.Sprintf("thresholdRange.min %q is not a number", *t.Min)
		} else if value < lo {
			return meshv1alpha1.CheckFailed, fmt.Sprintf("%s is below the minimum %s", formatValue(value), *t.Min)
		}
	}
	if t.Max != nil {
		if hi, err := strconv.ParseFloat(*t.Max, 64); err != nil {
			return meshv1alpha1.CheckError, fmt.Sprintf("thresholdRange.max %q is not a number", *t.Max)
		} else if value > hi {
			return meshv1alpha1.CheckFailed, fmt.Sprintf("%s is above the maximum %s", formatValue(value), *t.Max)
		}
	}
	return meshv1alpha1.CheckPassed, ""
}

// formatValue prints a measured value exactly (the shortest decimal that reads back as
// the same float64: rounding could print "99 is below the minimum 99"), in at most 24
// characters, with an exponent only for very large or very small values.
func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case v != 0 && (math.Abs(v) >= 1e12 || math.Abs(v) < 1e-6):
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// formatCount prints a request count (a rate times a window: not always whole).
func formatCount(v float64) string {
	if math.IsInf(v, 0) || math.Abs(v) >= 1e12 {
		return formatValue(v)
	}
	return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
