package canary

import (
	"context"
	"errors"
	"fmt"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/apply"
	"github.com/meshplane/meshplane/internal/canary"
	objects "github.com/meshplane/meshplane/internal/render/canary"
)

// scope holds what one reconcile learns; phases record facts in it, status.go turns them
// into conditions.
type scope struct {
	c     *meshv1alpha1.Canary
	now   time.Time
	names objects.Names

	// target is the user's Deployment (nil when it does not exist); primary and vs are the
	// Canary's own (nil when absent or not the Canary's).
	target  *appsv1.Deployment
	primary *appsv1.Deployment
	vs      *networkingv1.VirtualService

	obs     canary.Observations
	status  *meshv1alpha1.CanaryStatus
	actions canary.Actions
	facts   facts
	// stop ends the pass after the current phase.
	stop bool
}

// observe reads the target, the primary and the VirtualService into observations.
func (r *Reconciler) observe(ctx context.Context, s *scope) error {
	c := s.c
	s.obs.Generation = c.Generation
	target, err := r.targets.get(ctx, client.ObjectKeyFromObject(c), client.ObjectKey{Namespace: c.Namespace, Name: c.Spec.TargetRef.Name})
	if err != nil {
		s.facts.applyErrors = append(s.facts.applyErrors, err.Error())
		s.stop = true
		return err
	}
	if target == nil {
		s.facts.targetMissing = true
	} else {
		s.target = target
		if err := objects.ValidateTarget(c, target); err != nil {
			s.facts.invalidTarget = err.Error()
		}
		s.obs.Target = canary.Workload{Found: true, Revision: objects.TemplateRevision(&target.Spec.Template), Ready: objects.DeploymentReady(target)}
	}

	primary := &appsv1.Deployment{}
	switch err := r.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: s.names.Primary}, primary); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return r.readFailed(s, "Deployment", s.names.Primary, err)
	case metav1.IsControlledBy(primary, c):
		s.primary = primary
		s.obs.Primary = canary.Workload{Found: true, Revision: objects.PrimaryRevision(primary), Ready: objects.DeploymentReady(primary)}
	}

	vs := &networkingv1.VirtualService{}
	switch err := r.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: s.names.Apex}, vs); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return r.readFailed(s, "VirtualService", s.names.Apex, err)
	case metav1.IsControlledBy(vs, c):
		s.vs = vs
		s.obs.AppliedWeight = objects.AppliedWeight(c, vs)
	}
	return nil
}

func (r *Reconciler) readFailed(s *scope, kind, name string, err error) error {
	err = fmt.Errorf("reading %s %s: %w", kind, name, err)
	s.facts.applyErrors = append(s.facts.applyErrors, err.Error())
	s.stop = true
	return err
}

// measure runs the metrics check when one is due, at the pass's one reading of the clock.
func (r *Reconciler) measure(ctx context.Context, s *scope) error {
	if s.target != nil && canary.Due(&s.c.Spec, &s.c.Status, s.now) {
		s.obs.Check = r.check(ctx, s.c, s.now)
	}
	return nil
}

// step runs the state machine.
func (r *Reconciler) step(_ context.Context, s *scope) error {
	s.status, s.actions = canary.Step(&s.c.Spec, &s.c.Status, s.obs, s.now)
	if s.target == nil || s.facts.invalidTarget != "" {
		// Nothing can be built from a target that is missing or unusable: what exists keeps
		// serving as it is until the target is fixed (its change reconciles).
		s.stop = true
	}
	return nil
}

// applyObjects applies the primary, the Services, the DestinationRules and the
// VirtualService. A conflict with a foreign object holds back the VirtualService: it would
// send traffic to whatever the foreign object selects.
func (r *Reconciler) applyObjects(ctx context.Context, s *scope) error {
	c, target := s.c, s.target
	var errs []error
	record := func(err error, changed bool) {
		var conflict *apply.ConflictError
		switch {
		case errors.As(err, &conflict):
			s.facts.conflicts = append(s.facts.conflicts, conflict.Error())
			errs = append(errs, err)
		case err != nil:
			s.facts.applyErrors = append(s.facts.applyErrors, err.Error())
			errs = append(errs, err)
		case changed:
			s.facts.writes++
		}
	}

	if p, ok := r.desiredPrimary(s); ok {
		changed, err := r.Applier.Apply(ctx, c, objects.PrimaryDeployment(c, target, p))
		record(err, changed)
	}

	primaryPods, targetPods := objects.PrimarySelector(target), objects.TargetSelector(target)
	apexPods := primaryPods
	if s.status.Phase == meshv1alpha1.CanaryInitializing {
		// The primary is not serving yet: clients outside the mesh reach the target.
		apexPods = targetPods
	}
	for _, obj := range []apply.Object{
		objects.Service(c, s.names.Primary, primaryPods),
		objects.Service(c, s.names.Canary, targetPods),
		objects.DestinationRule(c, s.names.Primary),
		objects.DestinationRule(c, s.names.Canary),
	} {
		changed, err := r.Applier.Apply(ctx, c, obj)
		record(err, changed)
	}
	changed, err := r.Applier.Apply(ctx, c, objects.Service(c, s.names.Apex, apexPods))
	var conflict *apply.ConflictError
	if errors.As(err, &conflict) {
		// The user's Service of that name: the VirtualService routes its host, and it is
		// left as it is.
		s.facts.externalApex = true
	} else {
		record(err, changed)
	}

	if len(errs) == 0 {
		changed, err := r.Applier.Apply(ctx, c, objects.VirtualService(c, s.actions.Weight))
		record(err, changed)
	}
	return errors.Join(errs...)
}

// desiredPrimary decides the primary's pod template. It is copied from the target when the
// state machine promotes (the template observed in this very pass), and re-copied when the
// target runs exactly the revision the primary was copied from, or the stable revision and
// the primary is gone: the same template, so a hand edit of the primary is undone but an
// untested template never reaches it. Otherwise the primary keeps the template the operator
// applied last. ok is false when there is none to apply.
func (r *Reconciler) desiredPrimary(s *scope) (objects.Primary, bool) {
	target, primary := s.target, s.primary
	rev := s.obs.Target.Revision
	p := objects.Primary{Replicas: objects.IntendedReplicas(target, primary, FieldOwner)}
	switch {
	case s.actions.Promote,
		primary != nil && objects.PrimaryRevision(primary) == rev,
		primary == nil && rev == s.status.StableRevision:
		p.Template, p.Revision = objects.PrimaryTemplate(target), rev
		return p, true
	case primary != nil:
		last, err := appsv1ac.ExtractDeployment(primary, FieldOwner)
		if err != nil || last.Spec == nil || last.Spec.Template == nil {
			s.facts.applyErrors = append(s.facts.applyErrors, fmt.Sprintf(
				"Deployment %s holds no pod template applied by %s to keep: it is replaced at the next promotion", s.names.Primary, FieldOwner))
			return p, false
		}
		p.Template, p.Revision = last.Spec.Template, objects.PrimaryRevision(primary)
		return p, true
	}
	s.facts.primaryMissing = fmt.Sprintf(
		"Deployment %s does not exist and Deployment %s runs revision %s, not the stable revision %s: it is created again when the target returns to the stable revision or a revision is promoted",
		s.names.Primary, s.c.Spec.TargetRef.Name, rev, s.status.StableRevision)
	return p, false
}

// scaleTarget sets the target's spec.replicas, the one field of the user's Deployment the
// operator owns: zero while idle, the intended replicas while it serves or is about to.
// It waits for a clean pass: traffic must not lose pods because routing could not be
// applied.
func (r *Reconciler) scaleTarget(ctx context.Context, s *scope) error {
	if len(s.facts.conflicts) > 0 || len(s.facts.applyErrors) > 0 {
		return nil
	}
	want := int32(0)
	if s.actions.ScaleTarget == canary.ScaleUp {
		want = objects.IntendedReplicas(s.target, s.primary, FieldOwner)
	}
	if objects.Replicas(s.target) == want {
		return nil
	}
	if err := r.Client.Apply(ctx, objects.TargetScale(s.c, want), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		err = fmt.Errorf("scaling Deployment %s to %d: %w", s.c.Spec.TargetRef.Name, want, err)
		s.facts.applyErrors = append(s.facts.applyErrors, err.Error())
		return err
	}
	s.facts.writes++
	return nil
}
