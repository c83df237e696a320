// Package meshcontrolplane reconciles MeshControlPlane into an istiod install.
package meshcontrolplane

import (
	"context"
	"fmt"
	"time"

	"istio.io/api/annotation"
	"istio.io/api/label"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	telemetryv1 "istio.io/client-go/pkg/apis/telemetry/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/apply"
	"github.com/meshplane/meshplane/internal/render"
)

// FieldOwner is the server-side apply field manager of this controller.
const FieldOwner = "meshplane-meshcontrolplane"

// OwnedTypes are the kinds of object a MeshControlPlane's install consists of. The operator's
// cache holds only the ones labelled as meshplane's, and pruning looks at each of them.
var OwnedTypes = []client.Object{
	&corev1.ServiceAccount{},
	&corev1.ConfigMap{},
	&corev1.Service{},
	&rbacv1.ClusterRole{},
	&rbacv1.ClusterRoleBinding{},
	&rbacv1.Role{},
	&rbacv1.RoleBinding{},
	&appsv1.Deployment{},
	&autoscalingv2.HorizontalPodAutoscaler{},
	&policyv1.PodDisruptionBudget{},
	&admissionregistrationv1.MutatingWebhookConfiguration{},
	&admissionregistrationv1.ValidatingWebhookConfiguration{},
	&corev1.Secret{},
	&securityv1.PeerAuthentication{},
	&telemetryv1.Telemetry{},
}

// podRevisionIndex indexes the cached injected pods by their istio.io/rev annotation.
const podRevisionIndex = "metadata.annotations.istio.io/rev"

// InjectedPodsSelector selects the pods that run a sidecar; the operator caches only their
// metadata, to count them per revision.
var InjectedPodsSelector = labels.SelectorFromSet(labels.Set{label.SecurityTlsMode.Name: "istio"})

// Reconciler reconciles a MeshControlPlane.
type Reconciler struct {
	Client    client.Client
	APIReader client.Reader
	Recorder  events.EventRecorder
	Applier   *apply.Applier

	// Webhook is where the operator serves sidecar injection (nil: no injection webhooks).
	Webhook *render.WebhookEndpoint
	// CABundle returns the current CA bundle of the operator's serving certificate.
	CABundle func() []byte
	// CABundleChanged delivers an event whenever the CA bundle changes, so every webhook
	// configuration is re-rendered with it.
	CABundleChanged <-chan event.GenericEvent

	// Identities caches the identity of every Secret (NewIdentityCache in internal/operator):
	// the Secrets a CA reads are not meshplane's, so the label-scoped cache misses them.
	Identities cache.Cache

	// IstioValidation renders each revision's istio-validator, through which the API server
	// has istiod validate Istio config.
	IstioValidation bool
	// IstiodWebhookURL, when set, returns the base URL at which the API server calls the
	// istiod of a namespace and revision ("" for the default revision), instead of its
	// Service: for istiod running outside the cluster, as in the local control plane's tests.
	IstiodWebhookURL func(namespace, revision string) string

	ownedKinds []schema.GroupVersionKind
}

// NewReconciler wires a Reconciler from a manager.
func NewReconciler(mgr ctrl.Manager) *Reconciler {
	return &Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("meshplane-meshcontrolplane"),
		Applier:   apply.NewApplier(mgr.GetClient(), mgr.GetAPIReader(), mgr.GetScheme(), FieldOwner),
	}
}

// SetupWithManager registers the controller: it watches MeshControlPlanes and every kind of
// object they own, so drift and readiness changes of children reconcile their owner.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	pod := &metav1.PartialObjectMetadata{}
	pod.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), pod, podRevisionIndex, func(o client.Object) []string {
		if rev, ok := o.GetAnnotations()[annotation.IoIstioRev.Name]; ok {
			return []string{rev}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing injected pods by revision: %w", err)
	}
	for _, t := range OwnedTypes {
		gvk, err := mgr.GetClient().GroupVersionKindFor(t)
		if err != nil {
			return fmt.Errorf("looking up the kind of %T: %w", t, err)
		}
		r.ownedKinds = append(r.ownedKinds, gvk)
	}
	// cert-manager's Certificate has no Go type here and may not be installed: it is pruned
	// when installed, and watched (metadata only) below when its API exists at start.
	r.ownedKinds = append(r.ownedKinds, CertificateGVK)
	b := ctrl.NewControllerManagedBy(mgr).
		Named("meshcontrolplane").
		// Our own status writes do not change the generation and need no reconcile.
		For(&meshv1alpha1.MeshControlPlane{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		WithOptions(controller.Options{
			// A conflict with a foreign object resolves when a person removes it; retry with
			// backoff, capped so the fix is noticed within a minute.
			RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](
				100*time.Millisecond, time.Minute),
		})
	for _, t := range OwnedTypes {
		b = b.Owns(t)
	}
	// Pods come and go under a revision: recount them (metadata only).
	b = b.WatchesMetadata(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.controlPlaneOfPod))
	// The Secrets a CA reads (a plugged CA's, cert-manager's issued one) are the user's and
	// cert-manager's, unlabelled: they are read from the API server when reconciling, and
	// their identities watched through the identity cache, so a fix or a re-issue reconciles.
	if r.Identities == nil {
		return fmt.Errorf("the MeshControlPlane controller needs an identity cache for Secrets")
	}
	secret := &metav1.PartialObjectMetadata{}
	secret.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	b = b.WatchesRawSource(source.Kind(r.Identities, secret, handler.TypedEnqueueRequestsFromMapFunc(
		func(ctx context.Context, s *metav1.PartialObjectMetadata) []reconcile.Request {
			return r.controlPlanesOfSecret(ctx, s)
		})))
	// When cert-manager is installed, its progress on our Certificates (an issuer appearing,
	// an issuance failing or succeeding) reconciles too: every status change is a new
	// resourceVersion, which a metadata-only watch sees.
	if _, err := mgr.GetRESTMapper().RESTMapping(CertificateGVK.GroupKind(), CertificateGVK.Version); err == nil {
		cert := &metav1.PartialObjectMetadata{}
		cert.SetGroupVersionKind(CertificateGVK)
		b = b.WatchesMetadata(cert, handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(),
			&meshv1alpha1.MeshControlPlane{}, handler.OnlyControllerOwner()))
	}
	if r.CABundleChanged != nil {
		b = b.WatchesRawSource(source.Channel(r.CABundleChanged, handler.EnqueueRequestsFromMapFunc(r.allControlPlanes)))
	}
	return b.Complete(r)
}

// controlPlaneOfPod maps an injected pod to the MeshControlPlane of its revision.
func (r *Reconciler) controlPlaneOfPod(ctx context.Context, pod client.Object) []reconcile.Request {
	rev, ok := pod.GetAnnotations()[annotation.IoIstioRev.Name]
	if !ok {
		return nil
	}
	var out []reconcile.Request
	for _, m := range r.controlPlanes(ctx) {
		if m.Spec.Revision == rev || (m.Spec.Revision == "" && rev == "default") {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&m)})
		}
	}
	return out
}

// allControlPlanes enqueues every MeshControlPlane.
func (r *Reconciler) allControlPlanes(ctx context.Context, _ client.Object) []reconcile.Request {
	var out []reconcile.Request
	for _, m := range r.controlPlanes(ctx) {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&m)})
	}
	return out
}

// controlPlanes lists the MeshControlPlanes from the cache (there are few).
func (r *Reconciler) controlPlanes(ctx context.Context) []meshv1alpha1.MeshControlPlane {
	list := &meshv1alpha1.MeshControlPlaneList{}
	if err := r.Client.List(ctx, list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing MeshControlPlanes")
		return nil
	}
	return list.Items
}

// scope holds what one reconcile learns; phases record facts in it, status.go turns them
// into conditions.
type scope struct {
	mcp *meshv1alpha1.MeshControlPlane
	cp  *render.ControlPlane
	// desired are the rendered objects, in apply order.
	desired []render.Object
	facts   facts
}

// Reconcile converges one MeshControlPlane.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	log := ctrl.LoggerFrom(ctx)
	mcp := &meshv1alpha1.MeshControlPlane{}
	if err := r.Client.Get(ctx, req.NamespacedName, mcp); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !mcp.DeletionTimestamp.IsZero() {
		// Every child carries an owner reference; the garbage collector removes them.
		return ctrl.Result{}, nil
	}
	if r.Webhook != nil && len(r.CABundle()) == 0 {
		// Until the webhook certificate is loaded, the injector's configuration cannot be
		// rendered, and applying the rest would prune it. The certificate's arrival
		// enqueues every MeshControlPlane.
		return ctrl.Result{}, nil
	}

	s := &scope{mcp: mcp}
	before := mcp.DeepCopy()
	defer func() {
		if err := r.patchStatus(ctx, before, s); err != nil {
			retErr = kerrors.NewAggregate([]error{retErr, err})
		}
	}()

	var errs []error
	for _, phase := range []func(context.Context, *scope) error{
		r.resolve,
		r.certificateAuthority,
		r.render,
		r.ensureNamespaces,
		r.applyObjects,
		r.prune,
		r.observe,
	} {
		if err := phase(ctx, s); err != nil {
			errs = append(errs, err)
			if s.facts.stopped() {
				break
			}
		}
	}
	if s.facts.writes > 0 {
		log.Info("Converged the control plane", "meshControlPlane", klog.KObj(mcp), "writes", s.facts.writes)
	}
	err := kerrors.NewAggregate(errs)
	if s.facts.invalidSpec != "" {
		// Nothing changes until the spec does; the generation change will reconcile again.
		return ctrl.Result{}, reconcile.TerminalError(err)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: s.facts.requeueAfter(time.Now())}, nil
}

// patchStatus computes the status from the facts and writes it, only when it changed.
func (r *Reconciler) patchStatus(ctx context.Context, before *meshv1alpha1.MeshControlPlane, s *scope) error {
	after := before.DeepCopy()
	computeStatus(&after.Status, after.Generation, s.facts)
	if equality.Semantic.DeepEqual(before.Status, after.Status) {
		return nil
	}
	if err := r.Client.Status().Patch(ctx, after, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("patching status: %w", err)
	}
	for _, e := range transitionEvents(before.Status.Conditions, after.Status.Conditions) {
		r.Recorder.Eventf(after, nil, e.eventType, e.reason, e.action, "%s", e.note)
	}
	return nil
}
