// Package render builds the desired Kubernetes objects of a MeshControlPlane from its spec:
// pure functions from typed input to typed apply configurations, with no API calls, so every
// object can be table-tested without a cluster.
package render

import (
	"encoding/json"
	"fmt"

	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/apply"
	"github.com/meshplane/meshplane/internal/versions"
)

// Labels every object meshplane creates carries.
const (
	// LabelManagedBy marks objects meshplane created; the operator's cache only holds these.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is LabelManagedBy's value.
	ManagedByValue = "meshplane"
	// LabelControlPlane names the MeshControlPlane an object belongs to, so the objects of one
	// control plane can be listed (and pruned) without listing everything.
	LabelControlPlane = "mesh.meshplane.io/control-plane"

	// LabelIstioRev selects a revision, on namespaces, pods and the control plane's objects.
	LabelIstioRev  = "istio.io/rev" // label.IoIstioRev
	labelComponent = "operator.istio.io/component"
)

// Object is a typed apply configuration of one desired object.
type Object = apply.Object

// ControlPlane is the resolved input of the builders: the spec with every default applied.
type ControlPlane struct {
	Owner     *meshv1alpha1.MeshControlPlane
	Release   versions.Release
	Hub       string
	Profile   meshv1alpha1.Profile
	Namespace string
	// Revision is the spec's revision; "" for the default revision.
	Revision string
	// Gateways are the spec's gateways, resolved, in spec order.
	Gateways []Gateway
	// CA is the certificate authority istiod runs with. Resolve sets its mode and Secret;
	// the reconciler adds the validated material's fingerprint (and, for cert-manager, the
	// converted data) before rendering.
	CA CA
	// Webhook, when set, is where the operator serves sidecar injection; the revision's
	// MutatingWebhookConfiguration is rendered only then.
	Webhook *WebhookEndpoint
	// Validation, when set, has the API server send Istio config to the revision's istiod
	// for validation: the revision's istio-validator is rendered only then, and istiod
	// patches it.
	Validation *ValidationEndpoint
}

// Resolve applies the defaults the CRD schema did not (objects created before a default
// existed, or built in tests) and checks what the schema cannot: that the version is in the
// supported table.
func Resolve(mcp *meshv1alpha1.MeshControlPlane) (*ControlPlane, error) {
	spec := mcp.Spec
	version := spec.Version
	if version == "" {
		version = versions.Default.Version
	}
	release, err := versions.Lookup(version)
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{
		Owner:     mcp,
		Release:   release,
		Hub:       spec.Hub,
		Profile:   spec.Profile,
		Namespace: spec.Namespace,
		Revision:  spec.Revision,
	}
	if cp.Hub == "" {
		cp.Hub = versions.DefaultHub
	}
	if cp.Profile == "" {
		cp.Profile = meshv1alpha1.ProfileDefault
	}
	if cp.Namespace == "" {
		cp.Namespace = "istio-system"
	}
	cp.resolveGateways()
	cp.resolveCA()
	return cp, nil
}

// RevisionLabel is the istio.io/rev value of this control plane ("default" when unnamed).
func (cp *ControlPlane) RevisionLabel() string {
	if cp.Revision == "" {
		return "default"
	}
	return cp.Revision
}

// suffixed appends "-<revision>" to a name for a named revision, as upstream's charts do.
func (cp *ControlPlane) suffixed(name string) string {
	if cp.Revision == "" {
		return name
	}
	return name + "-" + cp.Revision
}

// IstiodName is the name of istiod's Deployment, Service and ServiceAccount.
func (cp *ControlPlane) IstiodName() string { return cp.suffixed("istiod") }

// clusterScopedName names cluster-wide objects: they also carry the namespace, so control
// planes in different namespaces never collide.
func (cp *ControlPlane) clusterScopedName(name string) string {
	return cp.suffixed(name) + "-" + cp.Namespace
}

// Objects returns every desired object of the control plane, in apply order (identities and
// configuration before the workloads that use them).
func Objects(cp *ControlPlane) ([]Object, error) {
	mesh, err := MeshConfigYAML(cp)
	if err != nil {
		return nil, fmt.Errorf("rendering mesh config: %w", err)
	}
	objs := []Object{
		istiodServiceAccount(cp),
		readerServiceAccount(cp),
		meshConfigMap(cp, mesh),
	}
	objs = append(objs, rbac(cp)...)
	objs = append(objs, securityObjects(cp)...)
	tel, err := telemetryObject(cp)
	if err != nil {
		return nil, err
	}
	if tel != nil {
		objs = append(objs, tel)
	}
	objs = append(objs, istiodService(cp), istiodDeployment(cp))
	if hpa := istiodHPA(cp); hpa != nil {
		objs = append(objs, hpa)
	}
	if pdb := istiodPDB(cp); pdb != nil {
		objs = append(objs, pdb)
	}
	if cp.Webhook != nil {
		objs = append(objs, injectorWebhook(cp))
	}
	if cp.Validation != nil {
		objs = append(objs, validator(cp))
	}
	for i := range cp.Gateways {
		gw, err := gatewayObjects(cp, &cp.Gateways[i])
		if err != nil {
			return nil, err
		}
		objs = append(objs, gw...)
	}
	return objs, nil
}

// labels are the labels of every object of the control plane (upstream's plus meshplane's).
func (cp *ControlPlane) labels(component string) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":     "istiod",
		"app.kubernetes.io/instance": cp.IstiodName(),
		"app.kubernetes.io/part-of":  "istio",
		"app.kubernetes.io/version":  cp.Release.Version,
		LabelIstioRev:                cp.RevisionLabel(),
		labelComponent:               component,
		LabelManagedBy:               ManagedByValue,
		LabelControlPlane:            cp.Owner.Name,
	}
}

// ownerReference makes the MeshControlPlane the controller of a child, so the garbage
// collector removes children with it (a cluster-scoped owner may own objects in any scope).
func (cp *ControlPlane) ownerReference() *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(meshv1alpha1.GroupVersion.String()).
		WithKind("MeshControlPlane").
		WithName(cp.Owner.Name).
		WithUID(cp.Owner.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

// convert turns a core API value from the spec into its apply configuration. Both share
// the API's JSON field names, so a JSON round trip is exact; the inputs passed schema
// validation, so a failure here is a programming error.
func convert[T any](in any) *T {
	raw, err := json.Marshal(in)
	if err != nil {
		panic(fmt.Sprintf("render: marshalling %T: %v", in, err))
	}
	out := new(T)
	if err := json.Unmarshal(raw, out); err != nil {
		panic(fmt.Sprintf("render: converting %T: %v", in, err))
	}
	return out
}
