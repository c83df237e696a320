package canary

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/render"
	objects "github.com/meshplane/meshplane/internal/render/canary"
)

// restoreTimeout bounds how long a deletion waits for the target to become ready again
// before it goes on anyway (a target that cannot start must not keep its Canary forever).
const restoreTimeout = 5 * time.Minute

// finalize undoes what the Canary did to the user's workload before its objects go:
//
//  1. the target's spec.replicas is set back to what the user intends (the primary's
//     count), explicitly, before the operator lets go of the field;
//  2. once the target is ready (or restoreTimeout passed), the VirtualService sends it all
//     traffic, and the apex Service, if the operator created it, is handed over: it selects
//     the target's pods and loses its owner reference, so it stays when the rest goes;
//  3. the operator's field manager is removed from the target (the replicas stay as set:
//     removing a manager's entry does not remove its fields, unlike applying without them,
//     which would leave spec.replicas unset and the Deployment at one replica);
//  4. the finalizer goes, and the garbage collector removes the primary, the primary and
//     canary Services, the DestinationRules and the VirtualService.
//
// Each step is checked against the live state on every pass, so an interrupted deletion
// resumes where it stopped.
func (r *Reconciler) finalize(ctx context.Context, c *meshv1alpha1.Canary) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(c, Finalizer) {
		r.forget(client.ObjectKeyFromObject(c))
		return ctrl.Result{}, nil
	}
	now := r.Now()
	names := objects.NamesOf(c)
	target, err := r.targets.get(ctx, client.ObjectKeyFromObject(c), client.ObjectKey{Namespace: c.Namespace, Name: c.Spec.TargetRef.Name})
	if err != nil {
		return ctrl.Result{}, err
	}
	primary := &appsv1.Deployment{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: names.Primary}, primary); err != nil || !metav1.IsControlledBy(primary, c) {
		if client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, err
		}
		primary = nil
	}

	// A target being deleted (with its namespace, say) needs nothing restored; one the
	// operator never scaled needs no waiting for.
	restore := target != nil && target.DeletionTimestamp.IsZero()
	if restore && objects.ManagesReplicas(target, FieldOwner) {
		intended := objects.IntendedReplicas(target, primary, FieldOwner)
		if objects.Replicas(target) != intended {
			patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, intended)
			if err := r.Client.Patch(ctx, target.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(patch)), client.FieldOwner(FieldOwner)); err != nil {
				return ctrl.Result{}, fmt.Errorf("scaling Deployment %s back to %d replicas: %w", target.Name, intended, err)
			}
			r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, meshv1alpha1.ReasonDeleting, "Delete",
				"Scaling Deployment %s back to %d replicas; once ready it gets all traffic and the Canary's objects are removed", target.Name, intended)
			return ctrl.Result{}, nil // the target's change brings the Canary back
		}
		if waited := now.Sub(c.DeletionTimestamp.Time); intended > 0 && !objects.DeploymentReady(target) {
			if waited < restoreTimeout {
				msg := fmt.Sprintf("Deleting: waiting for Deployment %s to run %d ready replicas before it gets all traffic back", target.Name, intended)
				return ctrl.Result{RequeueAfter: restoreTimeout - waited}, r.patchDeletingStatus(ctx, c, msg, now)
			}
			r.Recorder.Eventf(c, nil, corev1.EventTypeWarning, meshv1alpha1.ReasonDeleting, "Delete",
				"Deployment %s is not ready after %s: giving it all traffic anyway", target.Name, restoreTimeout)
		}
	}
	if restore {
		if err := r.routeAllToTarget(ctx, c); err != nil {
			return ctrl.Result{}, err
		}
		if err := r.handOverApex(ctx, c, target); err != nil {
			return ctrl.Result{}, err
		}
		if err := r.release(ctx, target); err != nil {
			return ctrl.Result{}, fmt.Errorf("releasing Deployment %s's spec.replicas: %w", target.Name, err)
		}
	}

	before := c.DeepCopy()
	controllerutil.RemoveFinalizer(c, Finalizer)
	if err := r.Client.Patch(ctx, c, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if restore {
		r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, meshv1alpha1.ReasonTargetRestored, "Delete",
			"Deployment %s runs %d replicas and receives all traffic; the Canary's objects are being removed", target.Name, objects.Replicas(target))
	}
	r.forget(client.ObjectKeyFromObject(c))
	return ctrl.Result{}, nil
}

// routeAllToTarget sets the Canary's VirtualService to 100% canary: whichever goes first,
// the VirtualService or the primary, clients keep reaching the target.
func (r *Reconciler) routeAllToTarget(ctx context.Context, c *meshv1alpha1.Canary) error {
	vs := &networkingv1.VirtualService{}
	switch err := r.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: c.Spec.TargetRef.Name}, vs); {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("reading VirtualService %s: %w", c.Spec.TargetRef.Name, err)
	case !metav1.IsControlledBy(vs, c):
		return nil
	}
	if _, err := r.Applier.Apply(ctx, c, objects.VirtualService(c, 100)); err != nil {
		return err
	}
	return nil
}

// handOverApex leaves the apex Service the operator created in place for the target: it
// selects the target's pods and is no longer the Canary's (no owner reference, no
// meshplane label, no field owned by the operator's apply), so clients calling it keep
// working after the Canary is gone. A user's Service of that name was never touched.
func (r *Reconciler) handOverApex(ctx context.Context, c *meshv1alpha1.Canary, target *appsv1.Deployment) error {
	svc := &corev1.Service{}
	switch err := r.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: c.Spec.TargetRef.Name}, svc); {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("reading Service %s: %w", c.Spec.TargetRef.Name, err)
	case !metav1.IsControlledBy(svc, c):
		return nil
	}
	ops := []jsonPatchOp{
		{Op: "test", Path: "/metadata/resourceVersion", Value: svc.ResourceVersion},
		{Op: "replace", Path: "/spec/selector", Value: objects.TargetSelector(target)},
	}
	if _, ok := svc.Labels[render.LabelManagedBy]; ok {
		ops = append(ops, jsonPatchOp{Op: "remove", Path: "/metadata/labels/" + escapePointer(render.LabelManagedBy)})
	}
	var others []metav1.OwnerReference
	for _, o := range svc.OwnerReferences {
		if o.UID != c.UID {
			others = append(others, o)
		}
	}
	if len(others) == 0 {
		ops = append(ops, jsonPatchOp{Op: "remove", Path: "/metadata/ownerReferences"})
	} else {
		ops = append(ops, jsonPatchOp{Op: "replace", Path: "/metadata/ownerReferences", Value: others})
	}
	if keep, changed := withoutManager(svc.ManagedFields, FieldOwner); changed {
		ops = append(ops, jsonPatchOp{Op: "replace", Path: "/metadata/managedFields", Value: keep})
	}
	if err := r.jsonPatch(ctx, svc, ops); err != nil {
		return fmt.Errorf("handing Service %s over to Deployment %s: %w", svc.Name, target.Name, err)
	}
	return nil
}

// release removes the operator's field manager from the target: it owned spec.replicas,
// which keeps its value and is nobody's until the user sets it.
func (r *Reconciler) release(ctx context.Context, target *appsv1.Deployment) error {
	keep, changed := withoutManager(target.ManagedFields, FieldOwner)
	if !changed {
		return nil
	}
	return r.jsonPatch(ctx, target.DeepCopy(), []jsonPatchOp{
		{Op: "test", Path: "/metadata/resourceVersion", Value: target.ResourceVersion},
		{Op: "replace", Path: "/metadata/managedFields", Value: keep},
	})
}

// withoutManager returns the managedFields entries of every other manager, and whether
// manager had any. The API server keeps an object's entries when sent an empty list; a
// list holding one empty entry clears them.
func withoutManager(entries []metav1.ManagedFieldsEntry, manager string) ([]metav1.ManagedFieldsEntry, bool) {
	keep := make([]metav1.ManagedFieldsEntry, 0, len(entries))
	for _, e := range entries {
		if e.Manager != manager {
			keep = append(keep, e)
		}
	}
	if len(keep) == len(entries) {
		return nil, false
	}
	if len(keep) == 0 {
		keep = []metav1.ManagedFieldsEntry{{}}
	}
	return keep, true
}

type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

func (r *Reconciler) jsonPatch(ctx context.Context, obj client.Object, ops []jsonPatchOp) error {
	raw, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	return r.Client.Patch(ctx, obj, client.RawPatch(types.JSONPatchType, raw), client.FieldOwner(FieldOwner))
}

// escapePointer escapes a JSON pointer token (RFC 6901).
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// patchDeletingStatus reports what a deletion waits for, when that changed.
func (r *Reconciler) patchDeletingStatus(ctx context.Context, c *meshv1alpha1.Canary, msg string, now time.Time) error {
	after := c.DeepCopy()
	deletingStatus(c.Status.Conditions, &after.Status, c.Generation, msg, now)
	if equality.Semantic.DeepEqual(c.Status, after.Status) {
		return nil
	}
	if err := r.Client.Status().Patch(ctx, after, client.MergeFromWithOptions(c, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("patching status: %w", err)
	}
	r.writes.wrote(client.ObjectKeyFromObject(c), c.ResourceVersion)
	return nil
}
