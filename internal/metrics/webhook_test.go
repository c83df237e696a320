package metrics

import (
	"errors"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

func TestInjectionOutcome(t *testing.T) {
	tests := []struct {
		name string
		resp admission.Response
		want string
	}{
		{"patched", admission.Patched("", jsonpatch.JsonPatchOperation{Operation: "add", Path: "/spec", Value: map[string]any{}}), OutcomeInjected},
		{"raw patch", admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{
			Allowed: true, Patch: []byte(`[{"op":"add","path":"/spec","value":{}}]`)}}, OutcomeInjected},
		{"allowed", admission.Allowed("not injected"), OutcomeSkipped},
		{"denied", admission.Denied(`sidecar.istio.io/proxyCPU: "lots" is not a quantity`), OutcomeRejected},
		{"errored", admission.Errored(http.StatusInternalServerError, errors.New("reading MeshControlPlane default: timeout")), OutcomeError},
		{"bad request", admission.Errored(http.StatusBadRequest, errors.New("not a pod")), OutcomeError},
		{"no control plane in path", admission.Errored(http.StatusNotFound, errors.New("no MeshControlPlane named in the webhook path")), OutcomeError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(InjectionOutcome(tt.resp)).To(Equal(tt.want))
		})
	}
}

func TestObserveInjection(t *testing.T) {
	g := NewWithT(t)
	l := InjectionLabels{ControlPlane: "observe-test", Revision: "default"}
	injected := injectionAdmissions.WithLabelValues(l.ControlPlane, l.Revision, OutcomeInjected)
	before := testutil.ToFloat64(injected)

	ObserveInjection(l, admission.Patched("", jsonpatch.JsonPatchOperation{Operation: "add", Path: "/spec", Value: 1}), 3*time.Millisecond)
	ObserveInjection(l, admission.Denied("no"), time.Millisecond)

	g.Expect(testutil.ToFloat64(injected) - before).To(Equal(1.0))
	g.Expect(testutil.ToFloat64(injectionAdmissions.WithLabelValues(l.ControlPlane, l.Revision, OutcomeRejected))).To(Equal(1.0))
	got := series(t, injectionDuration)
	g.Expect(got).To(HaveKeyWithValue(`meshplane_injection_webhook_duration_seconds_count{control_plane="observe-test",revision="default"}`, 2.0))
	g.Expect(got[`meshplane_injection_webhook_duration_seconds_sum{control_plane="observe-test",revision="default"}`]).To(BeNumerically("~", 0.004, 1e-9))
}

// A control plane's admission counters exist at 0 for every outcome before its first
// admission, once the status collector has reported its revision, and every outcome's once
// any admission was counted: rate() then counts the first admission of each.
func TestInjectionSeriesStartAtZero(t *testing.T) {
	g := NewWithT(t)
	mcp := readyControlPlane()
	mcp.Name = "zero-test"
	series(t, newCollector(fakeReader(t, mcp)))
	got := withPrefix(series(t, injectionAdmissions), "meshplane_injection_webhook_admissions_total")
	for _, o := range []string{OutcomeInjected, OutcomeSkipped, OutcomeRejected, OutcomeError} {
		g.Expect(got).To(HaveKeyWithValue(`meshplane_injection_webhook_admissions_total{control_plane="zero-test",outcome="`+o+`",revision="default"}`, 0.0))
	}

	l := InjectionLabels{ControlPlane: "zero-test-2", Revision: "blue"}
	ObserveInjection(l, admission.Allowed("not injected"), time.Millisecond)
	got = withPrefix(series(t, injectionAdmissions), "meshplane_injection_webhook_admissions_total")
	g.Expect(got).To(HaveKeyWithValue(`meshplane_injection_webhook_admissions_total{control_plane="zero-test-2",outcome="skipped",revision="blue"}`, 1.0))
	g.Expect(got).To(HaveKeyWithValue(`meshplane_injection_webhook_admissions_total{control_plane="zero-test-2",outcome="error",revision="blue"}`, 0.0))
}
