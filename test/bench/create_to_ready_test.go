// Package bench measures meshplane on the real local control plane (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok) with the operator running as its own
// user, as internal/devcluster starts it.
//
// The control plane starts only when a benchmark of this package runs, so `go test ./...`
// does not pay for it. Run with a fixed iteration count, since one iteration takes about a
// second and the default benchtime would give too few samples for a median:
//
//	go test -run '^$' -bench . -benchtime=7x ./test/bench/
package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/devcluster"
)

const (
	startTimeout = 3 * time.Minute
	// waitTimeout bounds one wait for Ready or for the cleanup to finish.
	waitTimeout = 2 * time.Minute
	// pollInterval is short next to a create-to-Ready time of about a second, so polling
	// adds little to the figure.
	pollInterval = 20 * time.Millisecond
)

var (
	startOnce  sync.Once
	cluster    *devcluster.Cluster
	startErr   error
	iterations int // across -count runs, so every iteration gets fresh names
)

func TestMain(m *testing.M) {
	code := m.Run()
	if stopProm != nil {
		stopProm()
	}
	if cluster != nil {
		cluster.Stop()
	}
	os.Exit(code)
}

// devCluster starts the control plane and the operator on first use: only a benchmark of
// this package that actually runs pays for it.
func devCluster(b *testing.B) *devcluster.Cluster {
	b.Helper()
	startOnce.Do(func() {
		// The operator's logs would drown the benchmark's output.
		ctrl.SetLogger(logr.Discard())
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		cluster, startErr = devcluster.Start(ctx, devcluster.Options{})
	})
	if startErr != nil {
		b.Fatalf("starting the local control plane: %v", startErr)
	}
	return cluster
}

// BenchmarkCreateToReady measures the time from creating a MeshControlPlane to its Ready
// condition being True for its generation: the operator's reconciles, the API server's
// writes, and kube-controller-manager, the scheduler and kwok bringing istiod's pod up.
// Cleanup between iterations is not timed.
func BenchmarkCreateToReady(b *testing.B) {
	k8s := devCluster(b).Admin
	var samples []time.Duration
	for b.Loop() {
		name := fmt.Sprintf("bench-%d", iterations)
		iterations++
		mcp := &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: name}}
		mcp.Spec.Namespace = name + "-system"

		start := time.Now()
		if err := k8s.Create(context.Background(), mcp); err != nil {
			b.Fatalf("creating MeshControlPlane %s: %v", name, err)
		}
		if err := waitFor(func(ctx context.Context) (bool, error) { return isReady(ctx, k8s, name) }); err != nil {
			b.Fatalf("waiting for MeshControlPlane %s to be Ready: %v", name, err)
		}
		samples = append(samples, time.Since(start).Round(100*time.Microsecond))

		b.StopTimer()
		if err := deleteAndWait(k8s, mcp); err != nil {
			b.Fatalf("cleaning up MeshControlPlane %s: %v", name, err)
		}
		b.StartTimer()
	}

	// In run order: the first iteration is usually the slowest (cold caches and connections).
	b.Logf("create-to-Ready, in run order: %v", samples)
	slices.Sort(samples)
	b.ReportMetric(ms(median(samples)), "ms-to-ready-median")
	b.ReportMetric(ms(percentile(samples, 90)), "ms-to-ready-p90")
	b.ReportMetric(ms(samples[0]), "ms-to-ready-min")
	b.ReportMetric(ms(samples[len(samples)-1]), "ms-to-ready-max")
	// ns/op would be the mean, which the figures above say better.
	b.ReportMetric(0, "ns/op")
}

// isReady says whether the MeshControlPlane is Ready for its current generation.
func isReady(ctx context.Context, k8s client.Client, name string) (bool, error) {
	m := &meshv1alpha1.MeshControlPlane{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: name}, m); err != nil {
		return false, err
	}
	c := meta.FindStatusCondition(m.Status.Conditions, meshv1alpha1.ConditionReady)
	return m.Status.ObservedGeneration == m.Generation &&
		c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == m.Generation, nil
}

// deleteAndWait deletes the MeshControlPlane and waits until the garbage collector has
// removed its istiod Deployment and its injector webhook configuration (cluster-scoped, with
// upstream's name, which the next iteration's default revision needs), so the next
// iteration does not share the control plane with this one's teardown.
func deleteAndWait(k8s client.Client, mcp *meshv1alpha1.MeshControlPlane) error {
	if err := client.IgnoreNotFound(k8s.Delete(context.Background(), mcp)); err != nil {
		return err
	}
	key := client.ObjectKey{Namespace: mcp.Spec.Namespace, Name: "istiod"}
	return waitFor(func(ctx context.Context) (bool, error) {
		for _, obj := range []struct {
			key client.ObjectKey
			obj client.Object
		}{
			{key, &appsv1.Deployment{}},
			{client.ObjectKey{Name: "istio-sidecar-injector"}, &admissionregistrationv1.MutatingWebhookConfiguration{}},
		} {
			err := k8s.Get(ctx, obj.key, obj.obj)
			if !apierrors.IsNotFound(err) {
				return false, err
			}
		}
		return true, nil
	})
}

// waitFor calls done at once and then every pollInterval until it returns true or an
// error, or waitTimeout passes.
func waitFor(done func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		ok, err := done(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// median returns the median of sorted samples: the mean of the middle two for an even count.
func median(sorted []time.Duration) time.Duration {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// percentile returns the nearest-rank percentile p of sorted samples.
func percentile(sorted []time.Duration, p int) time.Duration {
	i := (p*len(sorted)+99)/100 - 1
	return sorted[max(i, 0)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
