package inject

import (
	"context"
	"encoding/json"
	"testing"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/metrics"
)

// Every answer is counted once, by outcome, under the control plane that gave it; a path
// naming no existing control plane is counted without one, so it cannot mint series.
func TestHandleRecordsMetrics(t *testing.T) {
	s := runtime.NewScheme()
	if err := meshv1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := corev1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	mcp := &meshv1alpha1.MeshControlPlane{
		ObjectMeta: metav1.ObjectMeta{Name: "metrics-test", Generation: 1},
		Spec:       meshv1alpha1.MeshControlPlaneSpec{Revision: "blue"},
	}
	h := &Handler{Client: fake.NewClientBuilder().WithScheme(s).WithObjects(mcp).Build(), Decoder: admission.NewDecoder(s)}
	podReq := func(pod *corev1.Pod) admission.Request {
		raw, err := json.Marshal(pod)
		if err != nil {
			t.Fatal(err)
		}
		return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{Namespace: "shop", Object: runtime.RawExtension{Raw: raw}}}
	}
	pod := func(labels, annotations map[string]string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Namespace: "shop", Labels: labels, Annotations: annotations},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:1"}}},
		}
	}
	tests := []struct {
		name         string
		controlPlane string
		req          admission.Request
		want         []string // control_plane, revision, outcome
	}{
		{"injected", "metrics-test", podReq(pod(nil, nil)), []string{"metrics-test", "blue", metrics.OutcomeInjected}},
		{"opted out", "metrics-test", podReq(pod(map[string]string{"sidecar.istio.io/inject": "false"}, nil)), []string{"metrics-test", "blue", metrics.OutcomeSkipped}},
		{"malformed annotation", "metrics-test", podReq(pod(nil, map[string]string{"sidecar.istio.io/proxyCPU": "lots"})), []string{"metrics-test", "blue", metrics.OutcomeRejected}},
		{"undecodable pod", "metrics-test", admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			Object: runtime.RawExtension{Raw: []byte(`{"spec": 7}`)}}}, []string{"metrics-test", "blue", metrics.OutcomeError}},
		{"control plane gone", "no-such-control-plane", podReq(pod(nil, nil)), []string{"", "", metrics.OutcomeSkipped}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			before := admissions(t)
			ctx := context.WithValue(context.Background(), controlPlaneKey{}, tt.controlPlane)
			h.Handle(ctx, tt.req)
			after := admissions(t)
			for k, v := range after {
				if v == before[k] {
					delete(after, k)
				} else {
					after[k] = v - before[k]
				}
			}
			g.Expect(after).To(Equal(map[[3]string]float64{
				{tt.want[0], tt.want[1], tt.want[2]}: 1,
			}))
		})
	}
}

// admissions reads meshplane_injection_webhook_admissions_total from the registry the
// manager serves, by control plane, revision and outcome.
func admissions(t *testing.T) map[[3]string]float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[[3]string]float64{}
	for _, f := range families {
		if f.GetName() != "meshplane_injection_webhook_admissions_total" {
			continue
		}
		for _, m := range f.Metric {
			l := map[string]string{}
			for _, p := range m.Label {
				l[p.GetName()] = p.GetValue()
			}
			out[[3]string{l["control_plane"], l["revision"], l["outcome"]}] = m.Counter.GetValue()
		}
	}
	return out
}
