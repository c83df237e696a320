package metrics

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gomodules.xyz/jsonpatch/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// listReader answers lists from fixed items without copying them, as the manager's cache
// does with UnsafeDisableDeepCopy: the benchmark measures the collector, not a fake client.
type listReader struct {
	client.Reader
	controlPlanes []meshv1alpha1.MeshControlPlane
	canaries      []meshv1alpha1.Canary
}

func (r listReader) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	switch l := list.(type) {
	case *meshv1alpha1.MeshControlPlaneList:
		l.Items = r.controlPlanes
	case *meshv1alpha1.CanaryList:
		l.Items = r.canaries
	default:
		return fmt.Errorf("unexpected list %T", list)
	}
	return nil
}

// BenchmarkScrape measures one scrape of the status metrics (collect and gather, as the
// metrics endpoint does) for 2 control planes and a cluster's worth of Canaries, each with
// a full history of checks: the cost a Prometheus scrape puts on the leader.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("canaries=%d", n), func(b *testing.B) {
			r := listReader{controlPlanes: []meshv1alpha1.MeshControlPlane{*readyControlPlane(), *stalledControlPlane()}}
			history := make([]meshv1alpha1.CanaryCheck, 10)
			for i := range history {
				history[i] = check(meshv1alpha1.CheckPassed)
			}
			for i := range n {
				c := progressingCanary()
				c.Name = fmt.Sprintf("web-%d", i)
				c.Status.Checks = history
				r.canaries = append(r.canaries, *c)
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(newCollector(r))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := reg.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkObserveInjection measures what the injection handler adds to each admission.
func BenchmarkObserveInjection(b *testing.B) {
	l := InjectionLabels{ControlPlane: "bench", Revision: "default"}
	resp := admission.Patched("", jsonpatch.JsonPatchOperation{Operation: "add", Path: "/spec", Value: 1})
	took := time.Millisecond
	b.ReportAllocs()
	for b.Loop() {
		ObserveInjection(l, resp, took)
	}
}
