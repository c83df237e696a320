// Package operator assembles the meshplane manager: scheme, cache, controllers and health
// checks. The binary, the demo and the test suites all start the operator through it, so
// what is tested is what ships.
package operator

import (
	"fmt"
	"reflect"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	telemetryv1 "istio.io/client-go/pkg/apis/telemetry/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/controllers/canary"
	"github.com/meshplane/meshplane/controllers/meshcontrolplane"
	meshmetrics "github.com/meshplane/meshplane/internal/metrics"
	"github.com/meshplane/meshplane/internal/render"
)

// Options configure the manager.
type Options struct {
	// MetricsBindAddress serves Prometheus metrics; "0" disables them.
	MetricsBindAddress string
	// SecureMetrics serves metrics over HTTPS with authentication and authorization.
	SecureMetrics bool
	// HealthProbeBindAddress serves /healthz and /readyz; "0" disables them.
	HealthProbeBindAddress string
	// LeaderElection makes only one replica reconcile at a time.
	LeaderElection          bool
	LeaderElectionNamespace string
	// SyncPeriod overrides how often informers resync (controller-runtime's default: 10h).
	SyncPeriod *time.Duration
	// Namespace is the operator's own namespace: its webhook certificate lives there and it
	// is never injected.
	Namespace string
	// Webhooks configures the admission webhook server; nil runs without webhooks (no
	// sidecar injection).
	Webhooks *WebhookOptions
	// IstioValidation renders each revision's istio-validator ValidatingWebhookConfiguration,
	// so the API server has istiod validate Istio config (the binary's default).
	IstioValidation bool
	// IstiodWebhookURL, when set, returns the base URL ("https://127.0.0.1:15017") at which
	// the API server reaches the istiod of a namespace and revision ("" for the default
	// revision) instead of its Service. Only for istiod running outside the cluster, as in
	// the local control plane's tests; nil in a cluster.
	IstiodWebhookURL func(namespace, revision string) string
	// SkipControllerNameValidation lets a process build a second manager after stopping the
	// first (controller names must otherwise be unique per process): only for tests that
	// restart the operator.
	SkipControllerNameValidation bool
}

// LeaderElectionID names the Lease the operator's replicas elect a leader with.
const LeaderElectionID = "meshplane.mesh.meshplane.io"

// Scheme returns the types the operator reads and writes.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(meshv1alpha1.AddToScheme(s))
	utilruntime.Must(securityv1.AddToScheme(s))
	utilruntime.Must(networkingv1.AddToScheme(s))
	utilruntime.Must(telemetryv1.AddToScheme(s))
	return s
}

// CacheOptions keep the operator's memory bounded on large clusters: of the kinds it
// creates it caches only objects labelled as meshplane's (a cluster's other ConfigMaps or
// Deployments are never held), and keeps their managedFields, which the applier compares
// against. Everything else drops managedFields.
//
// controller-runtime keeps one configuration per kind in a cache, for its typed and its
// metadata-only informers alike, so the identities of unlabelled objects of these same
// kinds (a Canary's target Deployment, a plugged CA's Secret) are watched through a cache
// of their own: NewIdentityCache.
func CacheOptions(syncPeriod *time.Duration) cache.Options {
	managed := labels.SelectorFromSet(labels.Set{render.LabelManagedBy: render.ManagedByValue})
	keep := func(o any) (any, error) { return o, nil }
	byObject := map[client.Object]cache.ByObject{}
	seen := map[reflect.Type]bool{}
	for _, t := range append(append([]client.Object{}, meshcontrolplane.OwnedTypes...), canary.OwnedTypes...) {
		if seen[reflect.TypeOf(t)] {
			continue // both controllers own Deployments and Services
		}
		seen[reflect.TypeOf(t)] = true
		byObject[t] = cache.ByObject{Label: managed, Transform: keep}
	}
	pods := &metav1.PartialObjectMetadata{}
	pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	byObject[pods] = cache.ByObject{Label: meshcontrolplane.InjectedPodsSelector}
	return cache.Options{
		ByObject:         byObject,
		DefaultTransform: cache.TransformStripManagedFields(),
		SyncPeriod:       syncPeriod,
	}
}

// NewIdentityCache is a cache of object identities (name, namespace, UID,
// resourceVersion, deletion), unscoped, for watching objects meshplane reads but does not
// own: every change is a new resourceVersion, which reconciles the owners that read the
// object itself from the API server. Only what identifies an object is kept, not its labels
// or annotations (which kubectl's last-applied-configuration would fill with a Secret's
// data or a Deployment's whole spec). The manager starts it.
func NewIdentityCache(mgr ctrl.Manager, syncPeriod *time.Duration) (cache.Cache, error) {
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient:       mgr.GetHTTPClient(),
		Scheme:           mgr.GetScheme(),
		Mapper:           mgr.GetRESTMapper(),
		DefaultTransform: identityOnly,
		SyncPeriod:       syncPeriod,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the identity cache: %w", err)
	}
	if err := mgr.Add(c); err != nil {
		return nil, fmt.Errorf("adding the identity cache: %w", err)
	}
	return c, nil
}

// identityOnly keeps only what identifies an object's metadata.
func identityOnly(o any) (any, error) {
	if m, ok := o.(*metav1.PartialObjectMetadata); ok {
		m.ObjectMeta = metav1.ObjectMeta{
			Name: m.Name, Namespace: m.Namespace, UID: m.UID,
			ResourceVersion: m.ResourceVersion, DeletionTimestamp: m.DeletionTimestamp,
		}
	}
	return o, nil
}

// NewManager builds the manager with every controller registered.
func NewManager(cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	metrics := metricsserver.Options{BindAddress: opts.MetricsBindAddress, SecureServing: opts.SecureMetrics}
	if opts.SecureMetrics {
		// Only scrapers the API server authenticates and authorises may read metrics.
		metrics.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	var hooks *webhooks
	var server webhook.Server
	if opts.Webhooks != nil {
		var err error
		if hooks, server, err = newWebhooks(opts.Namespace, *opts.Webhooks); err != nil {
			return nil, err
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		WebhookServer:                 server,
		Scheme:                        Scheme(),
		Cache:                         CacheOptions(opts.SyncPeriod),
		Metrics:                       metrics,
		HealthProbeBindAddress:        opts.HealthProbeBindAddress,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Controller:                    config.Controller{SkipNameValidation: &opts.SkipControllerNameValidation},
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	identities, err := NewIdentityCache(mgr, opts.SyncPeriod)
	if err != nil {
		return nil, err
	}
	mcp := meshcontrolplane.NewReconciler(mgr)
	mcp.Identities = identities
	mcp.IstioValidation = opts.IstioValidation
	mcp.IstiodWebhookURL = opts.IstiodWebhookURL
	if hooks != nil {
		if err := hooks.register(mgr); err != nil {
			return nil, fmt.Errorf("setting up the webhooks: %w", err)
		}
		mcp.Webhook = &hooks.endpoint
		mcp.CABundle = hooks.store.CABundle
		mcp.CABundleChanged = hooks.caChanged
	}
	if err := mcp.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the MeshControlPlane controller: %w", err)
	}
	canaries := canary.NewReconciler(mgr)
	canaries.Identities = identities
	if err := canaries.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the Canary controller: %w", err)
	}
	if err := meshmetrics.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the status metrics: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}
