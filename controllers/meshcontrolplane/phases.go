package meshcontrolplane

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/internal/apply"
	"github.com/meshplane/meshplane/internal/render"
)

// AnnotationCreatedBy marks a namespace the operator created for a control plane.
const AnnotationCreatedBy = "mesh.meshplane.io/created-by"

// resolve applies defaults and checks the version against the supported table.
func (r *Reconciler) resolve(_ context.Context, s *scope) error {
	cp, err := render.Resolve(s.mcp)
	if err != nil {
		s.facts.invalidSpec = err.Error()
		return err
	}
	s.cp = cp
	if r.Webhook != nil {
		ep := *r.Webhook
		if r.CABundle != nil {
			ep.CABundle = r.CABundle()
		}
		cp.Webhook = &ep
	}
	if r.IstioValidation {
		cp.Validation = &render.ValidationEndpoint{}
		if r.IstiodWebhookURL != nil {
			cp.Validation.URL = r.IstiodWebhookURL(cp.Namespace, cp.Revision)
		}
	}
	return nil
}

// render builds the desired objects.
func (r *Reconciler) render(_ context.Context, s *scope) error {
	desired, err := render.Objects(s.cp)
	if err != nil {
		s.facts.invalidSpec = err.Error()
		return err
	}
	s.desired = desired
	return nil
}

// ensureNamespaces creates the namespaces of the control plane and its gateways that do
// not exist. They are deliberately not owned by the MeshControlPlane: users keep their own
// objects there (a plugged CA's cacerts Secret, a gateway's TLS Secrets), and deleting the
// MeshControlPlane must not take those with it.
func (r *Reconciler) ensureNamespaces(ctx context.Context, s *scope) error {
	var errs []error
	for _, name := range s.cp.Namespaces() {
		if err := r.ensureNamespace(ctx, s, name); err != nil {
			s.facts.applyErrors = append(s.facts.applyErrors, err.Error())
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Reconciler) ensureNamespace(ctx context.Context, s *scope, name string) error {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	err := r.Client.Get(ctx, client.ObjectKey{Name: name}, ns)
	switch {
	case err == nil:
		if ns.DeletionTimestamp != nil {
			return fmt.Errorf("namespace %s is being deleted", name)
		}
		return nil
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("reading namespace %s: %w", name, err)
	}
	create := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        name,
		Annotations: map[string]string{AnnotationCreatedBy: s.mcp.Name},
	}}
	switch err := r.Client.Create(ctx, create); {
	case apierrors.IsAlreadyExists(err):
		return nil // created since the cache last saw it
	case err != nil:
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	s.facts.writes++
	ctrl.LoggerFrom(ctx).Info("Created namespace", "namespace", klog.KObj(create))
	return nil
}

// applyObjects applies every desired object, skipping those already as desired. A conflict
// with a foreign object does not stop the others; it stalls the control plane.
//
// A conflict in one of a gateway's objects holds back the gateway's later objects: with a
// foreign Deployment of its name, its Service would route to and its autoscaler would scale
// someone else's pods.
func (r *Reconciler) applyObjects(ctx context.Context, s *scope) error {
	var errs []error
	heldBack := map[*render.Gateway]bool{}
	for _, obj := range s.desired {
		if s.facts.ca.hold && s.cp.IsIstiodDeployment(obj) {
			continue // keep istiod on the CA it runs with until the new one is usable
		}
		gw := s.cp.GatewayOf(obj)
		if gw != nil && heldBack[gw] {
			continue
		}
		changed, err := r.Applier.Apply(ctx, s.mcp, obj)
		var conflict *apply.ConflictError
		switch {
		case errors.As(err, &conflict):
			s.facts.conflicts = append(s.facts.conflicts, conflict.Error())
			errs = append(errs, err)
			if gw != nil {
				heldBack[gw] = true
			}
		case err != nil:
			s.facts.applyErrors = append(s.facts.applyErrors, err.Error())
			errs = append(errs, err)
		case changed:
			s.facts.writes++
		}
	}
	return errors.Join(errs...)
}

// prune deletes children an earlier spec needed and this one does not. It runs only after a
// clean apply, so a failed pass never removes what is still serving.
func (r *Reconciler) prune(ctx context.Context, s *scope) error {
	if s.facts.conflicts != nil || s.facts.applyErrors != nil || s.facts.ca.hold {
		return nil
	}
	n, err := r.Applier.Prune(ctx, s.mcp, client.MatchingLabels{render.LabelControlPlane: s.mcp.Name},
		r.ownedKinds, s.desired)
	s.facts.writes += n
	if err != nil {
		s.facts.applyErrors = append(s.facts.applyErrors, err.Error())
		return err
	}
	return nil
}

// observe reads the workloads' rollout state.
func (r *Reconciler) observe(ctx context.Context, s *scope) error {
	s.facts.revision = s.cp.RevisionLabel()
	s.facts.version = s.cp.Release.Version
	d := &appsv1.Deployment{}
	key := client.ObjectKey{Namespace: s.cp.Namespace, Name: s.cp.IstiodName()}
	c := componentFacts{name: key.Name, namespace: key.Namespace, component: "Pilot"}
	switch err := r.Client.Get(ctx, key, d); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("reading deployment %s: %w", key, err)
	case metav1.IsControlledBy(d, s.mcp):
		c.observe(d)
	}
	s.facts.components = append(s.facts.components, c)

	for i := range s.cp.Gateways {
		g, err := r.observeGateway(ctx, s, &s.cp.Gateways[i])
		if err != nil {
			return err
		}
		s.facts.gateways = append(s.facts.gateways, g)
	}

	// Injected pods are counted from a metadata-only cache of the pods carrying the
	// sidecar's tlsMode label; no pod specs are held. The injector records the revision in
	// the istio.io/rev annotation (as upstream's does, leaving a revision-tag label alone).
	// An index on the revision keeps this proportional to the revision's pods, not all.
	pods := &metav1.PartialObjectMetadataList{}
	pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := r.Client.List(ctx, pods, client.MatchingFields{podRevisionIndex: s.cp.RevisionLabel()}); err != nil {
		return fmt.Errorf("counting injected pods: %w", err)
	}
	for i := range pods.Items {
		if pods.Items[i].DeletionTimestamp == nil {
			s.facts.injectedPods++
		}
	}
	return nil
}

// observeGateway reads a gateway's rollout state and address. Objects the MeshControlPlane
// does not control (a foreign object of the same name) are not the gateway's.
func (r *Reconciler) observeGateway(ctx context.Context, s *scope, gw *render.Gateway) (gatewayFacts, error) {
	g := gatewayFacts{
		componentFacts: componentFacts{name: gw.Name, namespace: gw.Namespace, component: gw.Component()},
		gatewayType:    gw.Type,
	}
	key := client.ObjectKey{Namespace: gw.Namespace, Name: gw.Name}
	d := &appsv1.Deployment{}
	switch err := r.Client.Get(ctx, key, d); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return g, fmt.Errorf("reading deployment %s: %w", key, err)
	case metav1.IsControlledBy(d, s.mcp):
		g.observe(d)
	}
	svc := &corev1.Service{}
	switch err := r.Client.Get(ctx, key, svc); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return g, fmt.Errorf("reading service %s: %w", key, err)
	case metav1.IsControlledBy(svc, s.mcp):
		g.address = serviceAddress(svc)
	}
	return g, nil
}

// serviceAddress is where clients reach a gateway: a load balancer's first ingress point
// once assigned (nothing until then), else the cluster IP.
func serviceAddress(svc *corev1.Service) string {
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				return in.IP
			}
			if in.Hostname != "" {
				return in.Hostname
			}
		}
		return ""
	}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return ""
	}
	return svc.Spec.ClusterIP
}

// observe records a Deployment's rollout state: it is ready once the controller has seen
// the current template, every replica runs it, and enough are available.
func (c *componentFacts) observe(d *appsv1.Deployment) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	c.exists = true
	c.replicas = want
	c.readyReplicas = d.Status.ReadyReplicas
	c.ready = d.Status.ObservedGeneration >= d.Generation &&
		d.Status.UpdatedReplicas >= want &&
		d.Status.Replicas == d.Status.UpdatedReplicas &&
		d.Status.AvailableReplicas >= want
}

// stopped reports whether later phases must not run.
//
// A CA problem does not stop them: everything but istiod's Deployment is still applied.
func (f *facts) stopped() bool { return f.invalidSpec != "" }
