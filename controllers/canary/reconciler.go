// Package canary reconciles Canary: it observes the target Deployment, the primary and the
// VirtualService, runs a metrics check when one is due, lets the state machine
// (internal/canary) decide, applies what it asks for and persists its status.
package canary

import (
	"context"
	"fmt"
	"sync"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/apply"
	objects "github.com/meshplane/meshplane/internal/render/canary"
)

// FieldOwner is this controller's server-side apply field manager: of the objects a Canary
// owns, and of the target Deployment's spec.replicas alone.
const FieldOwner = "meshplane-canary"

// Finalizer holds a deleted Canary until the target runs its replicas again and receives
// all traffic, so deleting a Canary never leaves the workload scaled to zero.
const Finalizer = "mesh.meshplane.io/canary"

// targetIndex indexes Canaries by the name of their target Deployment.
const targetIndex = "spec.targetRef.name"

// OwnedTypes are the kinds of object a Canary owns; the operator caches only the ones
// labelled as meshplane's.
var OwnedTypes = []client.Object{
	&appsv1.Deployment{},
	&corev1.Service{},
	&networkingv1.DestinationRule{},
	&networkingv1.VirtualService{},
}

// Canary itself, and what it reads and writes.
// +kubebuilder:rbac:groups=mesh.meshplane.io,resources=canaries,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=mesh.meshplane.io,resources=canaries/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=mesh.meshplane.io,resources=canaries/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.istio.io,resources=destinationrules;virtualservices,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconciler reconciles a Canary.
type Reconciler struct {
	// Client reads from the operator's cache: Canaries, the objects they own (labelled as
	// meshplane's) and the metadata of every Deployment.
	Client client.Client
	// Identities caches the identity of every Deployment (NewIdentityCache in
	// internal/operator): a target is the user's and unlabelled, so the label-scoped cache
	// does not hold it; its resourceVersion says when to read it again.
	Identities cache.Cache
	// APIReader reads the API server: target Deployments (when their metadata changed) and
	// credentials Secrets, neither of which the cache holds.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Applier   *apply.Applier
	// Now is the clock, read once per reconcile.
	Now func() time.Time

	targets targetReader
	writes  writeTracker
	prom    promClients
}

// NewReconciler wires a Reconciler from a manager.
func NewReconciler(mgr ctrl.Manager) *Reconciler {
	r := &Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("meshplane-canary"),
		Applier:   apply.NewApplier(mgr.GetClient(), mgr.GetAPIReader(), mgr.GetScheme(), FieldOwner),
		Now:       time.Now,
	}
	return r
}

// SetupWithManager registers the controller. Besides Canaries and the objects they own, it
// watches every Deployment's identity (any change, status included, is a new
// resourceVersion), mapped to the Canaries targeting it by an index on spec.targetRef.name:
// the target is the user's and carries no meshplane label, so the label-scoped cache does
// not hold it.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &meshv1alpha1.Canary{}, targetIndex,
		func(o client.Object) []string {
			return []string{o.(*meshv1alpha1.Canary).Spec.TargetRef.Name}
		}); err != nil {
		return fmt.Errorf("indexing Canaries by target: %w", err)
	}
	if r.Identities == nil {
		return fmt.Errorf("the Canary controller needs an identity cache for Deployments")
	}
	r.targets.init(r.Identities, r.APIReader)
	b := ctrl.NewControllerManagedBy(mgr).
		Named("canary").
		// Every change of a Canary, our own status writes included: the state machine is a
		// fixpoint, so a pass after our write changes nothing and writes nothing.
		For(&meshv1alpha1.Canary{}).
		WithOptions(controller.Options{
			// Checks wait on Prometheus; other Canaries should not wait on them.
			MaxConcurrentReconciles: 4,
			// A conflict with a foreign object resolves when a person removes it; retry with
			// backoff, capped so the fix is noticed within a minute.
			RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](
				100*time.Millisecond, time.Minute),
		})
	for _, t := range OwnedTypes {
		b = b.Owns(t)
	}
	deployment := &metav1.PartialObjectMetadata{}
	deployment.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("Deployment"))
	b = b.WatchesRawSource(source.Kind(r.Identities, deployment, handler.TypedEnqueueRequestsFromMapFunc(
		func(ctx context.Context, d *metav1.PartialObjectMetadata) []reconcile.Request {
			return r.canariesOfTarget(ctx, d)
		})))
	return b.Complete(r)
}

// canariesOfTarget maps a Deployment to the Canaries that target it.
func (r *Reconciler) canariesOfTarget(ctx context.Context, d client.Object) []reconcile.Request {
	list := &meshv1alpha1.CanaryList{}
	if err := r.Client.List(ctx, list, client.InNamespace(d.GetNamespace()), client.MatchingFields{targetIndex: d.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing the Canaries of a Deployment", "deployment", klog.KObj(d))
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, c := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&c)})
	}
	return out
}

// Reconcile drives one Canary one step.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	c := &meshv1alpha1.Canary{}
	if err := r.Client.Get(ctx, req.NamespacedName, c); err != nil {
		if client.IgnoreNotFound(err) == nil {
			r.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if r.writes.stale(c) {
		// The cache has not caught up with our last write: acting on the older state could
		// run a check twice or step a weight back. The write's own event brings the Canary
		// back here once the cache holds it.
		return ctrl.Result{}, nil
	}
	if !c.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, c)
	}
	if !controllerutil.ContainsFinalizer(c, Finalizer) {
		if err := r.addFinalizer(ctx, c); err != nil {
			return ctrl.Result{}, err
		}
	}

	s := &scope{c: c, now: r.Now(), names: objects.NamesOf(c)}
	s.facts.targetName, s.facts.apexName = c.Spec.TargetRef.Name, s.names.Apex
	var errs []error
	for _, phase := range []func(context.Context, *scope) error{
		r.observe,
		r.measure,
		r.step,
		r.applyObjects,
		r.scaleTarget,
	} {
		if err := phase(ctx, s); err != nil {
			errs = append(errs, err)
		}
		if s.stop {
			break
		}
	}
	if err := r.patchStatus(ctx, s); err != nil {
		errs = append(errs, err)
	}
	if s.facts.writes > 0 {
		ctrl.LoggerFrom(ctx).V(1).Info("Applied the Canary's objects", "canary", klog.KObj(c), "writes", s.facts.writes)
	}
	if err := kerrors.NewAggregate(errs); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: s.actions.RequeueAfter}, nil
}

// patchStatus writes the status the pass computed, only when it changed, then records the
// pass's events: after the write, so a pass whose write failed and is retried does not
// announce its transitions twice.
func (r *Reconciler) patchStatus(ctx context.Context, s *scope) error {
	if s.status == nil {
		return nil // the pass stopped before the state machine ran
	}
	before := s.c
	after := before.DeepCopy()
	after.Status = *s.status
	computeStatus(before.Status.Conditions, &after.Status, before.Generation, s.facts, s.now)
	if !equality.Semantic.DeepEqual(before.Status, after.Status) {
		rv := before.ResourceVersion
		// Optimistic: a status computed from a Canary someone changed since is not written.
		if err := r.Client.Status().Patch(ctx, after, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
			return fmt.Errorf("patching status: %w", err)
		}
		r.writes.wrote(client.ObjectKeyFromObject(after), rv)
	}
	for _, e := range s.actions.Events {
		r.Recorder.Eventf(after, nil, e.Type, e.Reason, "Rollout", "%s", e.Message)
	}
	for _, e := range reconciledEvents(before.Status.Conditions, after.Status.Conditions) {
		r.Recorder.Eventf(after, nil, e.eventType, e.reason, "Reconcile", "%s", e.note)
	}
	return nil
}

// addFinalizer adds the finalizer, with an optimistic lock (the status is patched after it
// in the same pass, from this object).
func (r *Reconciler) addFinalizer(ctx context.Context, c *meshv1alpha1.Canary) error {
	before := c.DeepCopy()
	controllerutil.AddFinalizer(c, Finalizer)
	if err := r.Client.Patch(ctx, c, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("adding the finalizer: %w", err)
	}
	r.writes.wrote(client.ObjectKeyFromObject(c), before.ResourceVersion)
	return nil
}

// forget drops what the reconciler remembers of a Canary that is gone.
func (r *Reconciler) forget(key types.NamespacedName) {
	r.writes.forget(key)
	r.prom.forget(key)
	r.targets.forget(key)
}

// writeTracker remembers, per Canary, the resourceVersions our writes replaced since the
// cache last caught up: while the cache serves one of them, it is stale. (Versions are
// compared for equality only: their order is the API server's business.)
type writeTracker struct {
	mu       sync.Mutex
	replaced map[types.NamespacedName]map[string]bool
}

func (t *writeTracker) wrote(key types.NamespacedName, replaced string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.replaced == nil {
		t.replaced = map[types.NamespacedName]map[string]bool{}
	}
	if t.replaced[key] == nil {
		t.replaced[key] = map[string]bool{}
	}
	t.replaced[key][replaced] = true
}

func (t *writeTracker) stale(c *meshv1alpha1.Canary) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := client.ObjectKeyFromObject(c)
	if t.replaced[key][c.ResourceVersion] {
		return true
	}
	delete(t.replaced, key)
	return false
}

func (t *writeTracker) forget(key types.NamespacedName) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.replaced, key)
}

// targetReader reads target Deployments from the API server only when their
// resourceVersion in the metadata cache moved past the copy it holds: a Canary waiting for
// its next check costs no request.
type targetReader struct {
	cache  client.Reader
	api    client.Reader
	mu     sync.Mutex
	byKey  map[types.NamespacedName]*appsv1.Deployment
	owners map[types.NamespacedName]types.NamespacedName // Canary -> target, for forget
}

func (t *targetReader) init(cache, api client.Reader) {
	t.cache, t.api = cache, api
	t.byKey = map[types.NamespacedName]*appsv1.Deployment{}
	t.owners = map[types.NamespacedName]types.NamespacedName{}
}

// get returns the target, or nil when it does not exist.
func (t *targetReader) get(ctx context.Context, canaryKey, key types.NamespacedName) (*appsv1.Deployment, error) {
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("Deployment"))
	if err := t.cache.Get(ctx, key, meta); err != nil {
		if client.IgnoreNotFound(err) == nil {
			t.drop(canaryKey, key)
			return nil, nil
		}
		return nil, fmt.Errorf("reading Deployment %s: %w", key, err)
	}
	t.mu.Lock()
	held := t.byKey[key]
	t.mu.Unlock()
	if held != nil && held.ResourceVersion == meta.ResourceVersion {
		return held, nil
	}
	d := &appsv1.Deployment{}
	if err := t.api.Get(ctx, key, d); err != nil {
		if client.IgnoreNotFound(err) == nil {
			t.drop(canaryKey, key)
			return nil, nil
		}
		return nil, fmt.Errorf("reading Deployment %s: %w", key, err)
	}
	t.mu.Lock()
	t.byKey[key] = d
	t.owners[canaryKey] = key
	t.mu.Unlock()
	return d, nil
}

func (t *targetReader) drop(canaryKey, key types.NamespacedName) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.byKey, key)
	delete(t.owners, canaryKey)
}

func (t *targetReader) forget(canaryKey types.NamespacedName) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if key, ok := t.owners[canaryKey]; ok {
		delete(t.byKey, key)
		delete(t.owners, canaryKey)
	}
}
