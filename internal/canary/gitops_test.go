package canary

import (
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/argocdhealth"
)

// TestGitOpsHealth drives the machine into every phase and reads the resulting Canary as
// kstatus and as the Argo CD health check (config/argocd/health/Canary.lua) do.
//
// The choices, for GitOps users: a rollout in flight is InProgress/Progressing; a Canary
// whose rollout failed and was rolled back is Failed/Degraded, not Current: the revision in
// Git does not serve traffic, as Argo Rollouts and Flagger report an aborted or failed
// rollout. Argo CD's Suspended marks the two pauses that wait for a person: Paused (for a
// retryToken; kstatus has no such state and reads its Stalled as Failed) and
// AwaitingPromotion (for a promoteToken; InProgress for kstatus, which waits at the gate).
// RollingBack is already Degraded for Argo CD while kstatus waits for it to finish.
func TestGitOpsHealth(t *testing.T) {
	for _, tc := range []struct {
		name        string
		world       func(t *testing.T) *world
		phase       meshv1alpha1.CanaryPhase
		wantKstatus kstatus.Status
		wantArgo    string
	}{
		{
			name: "initializing",
			world: func(t *testing.T) *world {
				w := newWorld(t, newSpec())
				w.slowPrimary = true
				w.converge()
				return w
			},
			phase: meshv1alpha1.CanaryInitializing, wantKstatus: kstatus.InProgressStatus, wantArgo: argocdhealth.Progressing,
		},
		{
			name:  "stable",
			world: func(t *testing.T) *world { return stableWorld(t, newSpec()) },
			phase: meshv1alpha1.CanaryStable, wantKstatus: kstatus.CurrentStatus, wantArgo: argocdhealth.Healthy,
		},
		{
			name: "stable, the primary not ready",
			world: func(t *testing.T) *world {
				w := stableWorld(t, newSpec())
				w.primaryReady = false
				w.converge()
				return w
			},
			phase: meshv1alpha1.CanaryStable, wantKstatus: kstatus.InProgressStatus, wantArgo: argocdhealth.Progressing,
		},
		{
			name: "stable, a new revision held by spec.abort",
			world: func(t *testing.T) *world {
				w := stableWorld(t, newSpec(func(s *meshv1alpha1.CanarySpec) { s.Abort = true }))
				w.newRevision(revA)
				w.converge()
				return w
			},
			phase: meshv1alpha1.CanaryStable, wantKstatus: kstatus.FailedStatus, wantArgo: argocdhealth.Degraded,
		},
		{
			name: "progressing",
			world: func(t *testing.T) *world {
				w := stableWorld(t, newSpec())
				w.newRevision(revA)
				w.converge()
				w.untilDue()
				return w
			},
			phase: meshv1alpha1.CanaryProgressing, wantKstatus: kstatus.InProgressStatus, wantArgo: argocdhealth.Progressing,
		},
		{
			name: "progressing, Prometheus unreachable three checks in a row",
			world: func(t *testing.T) *world {
				w := stableWorld(t, newSpec())
				w.newRevision(revA)
				w.converge()
				w.checks = broken
				for range stalledAfterErrors {
					w.untilDue()
				}
				return w
			},
			phase: meshv1alpha1.CanaryProgressing, wantKstatus: kstatus.FailedStatus, wantArgo: argocdhealth.Degraded,
		},
		{
			name: "restarting",
			world: func(t *testing.T) *world {
				w := stableWorld(t, newSpec())
				w.newRevision(revA)
				w.converge()
				for range 4 { // two steps passed: 50%
					w.untilDue()
				}
				w.newRevision(revB)
				w.converge()
				return w
			},
			phase: meshv1alpha1.CanaryRestarting, wantKstatus: kstatus.InProgressStatus, wantArgo: argocdhealth.Progressing,
		},
		{
			name: "awaiting promotion (gated)",
			world: func(t *testing.T) *world {
				w := stableWorld(t, newSpec(gated))
				w.newRevision(revA)
				w.converge()
				for range 4 * 2 {
					w.untilDue()
				}
				return w
			},
			phase: meshv1alpha1.CanaryAwaitingPromotion, wantKstatus: kstatus.InProgressStatus, wantArgo: argocdhealth.Suspended,
		},
		{
			name:  "promoting",
			world: promoting,
			phase: meshv1alpha1.CanaryPromoting, wantKstatus: kstatus.InProgressStatus, wantArgo: argocdhealth.Progressing,
		},
		{
			name: "finalizing",
			world: func(t *testing.T) *world {
				w := promoting(t)
				w.primaryReady = true
				w.pass() // the VirtualService carries the weight 0 written here from the next pass on
				return w
			},
			phase: meshv1alpha1.CanaryFinalizing, wantKstatus: kstatus.InProgressStatus, wantArgo: argocdhealth.Progressing,
		},
		{
			name: "succeeded",
			world: func(t *testing.T) *world {
				w := promoting(t)
				w.primaryReady = true
				w.converge()
				return w
			},
			phase: meshv1alpha1.CanarySucceeded, wantKstatus: kstatus.CurrentStatus, wantArgo: argocdhealth.Healthy,
		},
		{
			name:  "rolling back",
			world: rollingBack,
			phase: meshv1alpha1.CanaryRollingBack, wantKstatus: kstatus.InProgressStatus, wantArgo: argocdhealth.Degraded,
		},
		{
			name: "failed: rolled back, traffic on the primary",
			world: func(t *testing.T) *world {
				w := rollingBack(t)
				w.converge()
				return w
			},
			phase: meshv1alpha1.CanaryFailed, wantKstatus: kstatus.FailedStatus, wantArgo: argocdhealth.Degraded,
		},
		{
			name: "paused: no data three times in a row",
			world: func(t *testing.T) *world {
				w := stableWorld(t, newSpec())
				w.newRevision(revA)
				w.converge()
				w.checks = empty
				for range 3 {
					w.untilDue()
				}
				return w
			},
			phase: meshv1alpha1.CanaryPaused, wantKstatus: kstatus.FailedStatus, wantArgo: argocdhealth.Suspended,
		},
		{
			name: "the target Deployment is gone",
			world: func(t *testing.T) *world {
				w := stableWorld(t, newSpec())
				st, _ := Step(w.spec, w.st, Observations{Generation: 1, Primary: w.observe().Primary, AppliedWeight: w.vs}, w.now)
				w.st = roundTrip(t, st)
				return w
			},
			phase: meshv1alpha1.CanaryStable, wantKstatus: kstatus.FailedStatus, wantArgo: argocdhealth.Degraded,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			w := tc.world(t)
			g.Expect(w.st.Phase).To(Equal(tc.phase))
			g.Expect(meta.IsStatusConditionTrue(w.st.Conditions, meshv1alpha1.ConditionReconciling) &&
				meta.IsStatusConditionTrue(w.st.Conditions, meshv1alpha1.ConditionStalled)).To(BeFalse(),
				"kstatus takes whichever of Reconciling and Stalled comes first: never both True")

			c := &meshv1alpha1.Canary{
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Generation: 1},
				Spec:       *w.spec, Status: *w.st,
			}
			u, err := argocdhealth.ToUnstructured(c)
			g.Expect(err).NotTo(HaveOccurred())
			res, err := kstatus.Compute(u)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(res.Status).To(Equal(tc.wantKstatus), res.Message)
			health, err := argocdhealth.Check(c)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(health.Status).To(Equal(tc.wantArgo), health.Message)
			g.Expect(health.Message).NotTo(BeEmpty())

			// A spec change (a token, abort) the operator has not seen yet: in progress.
			c.Generation = 2
			res, err = kstatus.Compute(must(argocdhealth.ToUnstructured(c)))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(res.Status).To(Equal(kstatus.InProgressStatus))
			g.Expect(argocdhealth.Check(c)).To(HaveField("Status", argocdhealth.Progressing))
		})
	}
}

// promoting is a Canary that passed every step, with a primary slow to roll out.
func promoting(t *testing.T) *world {
	w := stableWorld(t, newSpec())
	w.newRevision(revA)
	w.converge()
	w.slowPrimary = true
	for range 4 * 2 {
		w.untilDue()
	}
	return w
}

// rollingBack is a Canary whose first check failed, before the VirtualService has carried
// traffic back to the primary.
func rollingBack(t *testing.T) *world {
	w := stableWorld(t, newSpec())
	w.newRevision(revA)
	w.converge()
	w.checks = failing
	w.now = w.st.NextCheckTime.Time
	w.pass()
	return w
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
