package render

import (
	"fmt"

	securityv1beta1 "istio.io/api/security/v1beta1"
	istiometav1ac "istio.io/client-go/pkg/applyconfiguration/meta/v1"
	securityv1ac "istio.io/client-go/pkg/applyconfiguration/security/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/apply"
)

// AnnotationCAFingerprint on istiod's pod template is the fingerprint of the plugged or
// issued CA material it runs with (cacerts.Fingerprint): a new CA rolls istiod, which reads
// /etc/cacerts only at start.
const AnnotationCAFingerprint = "mesh.meshplane.io/ca-fingerprint"

// CertificateGVK is cert-manager's Certificate. The operator handles it unstructured: its
// few fields do not justify cert-manager's API module and the dependency tree it brings.
const (
	CertManagerGroup   = "cert-manager.io"
	CertificateVersion = "cert-manager.io/v1"
	CertificateKind    = "Certificate"
)

// selfSignedSecretName is where upstream istiod looks for a plugged CA; with a self-signed
// CA the Secret stays optional, as in upstream's chart.
const selfSignedSecretName = "cacerts"

// CA is the resolved certificate authority of the control plane.
type CA struct {
	// Mode is meshv1alpha1.CAModeSelfSigned, CAModePlugged or CAModeCertManager.
	Mode string
	// SecretName is the cacerts Secret istiod mounts.
	SecretName string
	// Fingerprint of the validated CA material (cacerts.Fingerprint); empty until the
	// reconciler has validated some, or for a self-signed CA.
	Fingerprint string
	// Data is the cacerts content the operator writes into SecretName (certManager only,
	// once cert-manager has issued and the material is valid).
	Data map[string][]byte
}

// resolveCA fills the CA's mode and Secret name from the spec.
func (cp *ControlPlane) resolveCA() {
	cp.CA = CA{Mode: meshv1alpha1.CAModeSelfSigned, SecretName: selfSignedSecretName}
	sec := cp.Owner.Spec.Security
	if sec == nil || sec.CertificateAuthority == nil {
		return
	}
	switch ca := sec.CertificateAuthority; {
	case ca.Plugged != nil:
		cp.CA.Mode = meshv1alpha1.CAModePlugged
		if ca.Plugged.SecretName != "" {
			cp.CA.SecretName = ca.Plugged.SecretName
		}
	case ca.CertManager != nil:
		cp.CA.Mode = meshv1alpha1.CAModeCertManager
		cp.CA.SecretName = cp.IstiodName() + "-cacerts"
	}
}

// CertManagerCA is the spec's cert-manager CA, or nil.
func (cp *ControlPlane) CertManagerCA() *meshv1alpha1.CertManagerCA {
	if sec := cp.Owner.Spec.Security; sec != nil && sec.CertificateAuthority != nil {
		return sec.CertificateAuthority.CertManager
	}
	return nil
}

// CACertificateName names the cert-manager Certificate of istiod's intermediate CA.
func (cp *ControlPlane) CACertificateName() string { return cp.IstiodName() + "-ca" }

// IssuedCASecretName is the Secret cert-manager writes the issued CA into; the operator
// converts it into CA.SecretName.
func (cp *ControlPlane) IssuedCASecretName() string { return cp.IstiodName() + "-ca-issued" }

// TrustDomain is the mesh's SPIFFE trust domain.
func (cp *ControlPlane) TrustDomain() string { return meshConfigOf(cp).TrustDomain }

// securityObjects are the PeerAuthentication and, for a cert-manager CA, its Certificate and
// the cacerts Secret istiod mounts.
func securityObjects(cp *ControlPlane) []Object {
	var objs []Object
	if pa := peerAuthentication(cp); pa != nil {
		objs = append(objs, pa)
	}
	if cp.CA.Mode == meshv1alpha1.CAModeCertManager {
		objs = append(objs, caCertificate(cp))
		if cp.CA.Data != nil {
			objs = append(objs, caSecret(cp))
		}
	}
	return objs
}

// PeerAuthenticationApplyConfiguration is Istio's generated apply configuration with the
// accessors controller-runtime's Client.Apply and the applier need, which Istio's lacks.
type PeerAuthenticationApplyConfiguration struct {
	*securityv1ac.PeerAuthenticationApplyConfiguration
}

// IsApplyConfiguration marks it as an apply configuration.
func (PeerAuthenticationApplyConfiguration) IsApplyConfiguration() {}

// GetAPIVersion returns the apiVersion.
func (p PeerAuthenticationApplyConfiguration) GetAPIVersion() *string { return p.APIVersion }

// GetKind returns the kind.
func (p PeerAuthenticationApplyConfiguration) GetKind() *string { return p.Kind }

// GetName returns the name.
func (p PeerAuthenticationApplyConfiguration) GetName() *string { return p.Name }

// GetNamespace returns the namespace.
func (p PeerAuthenticationApplyConfiguration) GetNamespace() *string { return p.Namespace }

// peerAuthentication is the mesh-wide PeerAuthentication "default" in the root namespace,
// or nil when spec.security.mtls.mode is unset.
func peerAuthentication(cp *ControlPlane) Object {
	sec := cp.Owner.Spec.Security
	if sec == nil || sec.MTLS == nil || sec.MTLS.Mode == "" {
		return nil
	}
	mode, ok := securityv1beta1.PeerAuthentication_MutualTLS_Mode_value[string(sec.MTLS.Mode)]
	if !ok {
		panic(fmt.Sprintf("render: mTLS mode %q passed schema validation", sec.MTLS.Mode))
	}
	pa := securityv1ac.PeerAuthentication("default", cp.Namespace).
		WithLabels(cp.labels("Base")).
		WithOwnerReferences(convert[istiometav1ac.OwnerReferenceApplyConfiguration](cp.ownerReference()))
	// Set directly: protobuf messages must not be copied, which WithSpec's value does.
	pa.Spec = &securityv1beta1.PeerAuthentication{Mtls: &securityv1beta1.PeerAuthentication_MutualTLS{
		Mode: securityv1beta1.PeerAuthentication_MutualTLS_Mode(mode),
	}}
	return &PeerAuthenticationApplyConfiguration{pa}
}

// caCertificate asks cert-manager for istiod's intermediate CA. istiod verifies its CA
// certificate with Go's default options, which require the server auth usage; it signs
// workload certificates with it (cert sign) and its SPIFFE identity names the trust domain.
func caCertificate(cp *ControlPlane) Object {
	in := cp.CertManagerCA()
	group := in.IssuerRef.Group
	if group == "" {
		group = CertManagerGroup
	}
	kind := string(in.IssuerRef.Kind)
	if kind == "" {
		kind = "Issuer"
	}
	spec := map[string]any{
		"isCA":       true,
		"commonName": "istiod-ca." + cp.TrustDomain(),
		"subject":    map[string]any{"organizations": []any{cp.TrustDomain()}},
		"uris":       []any{fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", cp.TrustDomain(), cp.Namespace, cp.IstiodName())},
		"secretName": cp.IssuedCASecretName(),
		"privateKey": map[string]any{"algorithm": "ECDSA", "size": int64(256), "rotationPolicy": "Always"},
		"usages":     []any{"cert sign", "crl sign", "digital signature", "server auth"},
		"issuerRef":  map[string]any{"name": in.IssuerRef.Name, "kind": kind, "group": group},
	}
	if len(spec["commonName"].(string)) > 64 { // cert-manager's (and X.509's) bound
		spec["commonName"] = "istiod-ca"
	}
	if in.Duration != nil {
		spec["duration"] = in.Duration.Duration.String()
	}
	if in.RenewBefore != nil {
		spec["renewBefore"] = in.RenewBefore.Duration.String()
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": CertificateVersion,
		"kind":       CertificateKind,
		"metadata": map[string]any{
			"name":      cp.CACertificateName(),
			"namespace": cp.Namespace,
			"labels":    toAny(cp.labels("Base")),
			"ownerReferences": []any{map[string]any{
				"apiVersion":         meshv1alpha1.GroupVersion.String(),
				"kind":               "MeshControlPlane",
				"name":               cp.Owner.Name,
				"uid":                string(cp.Owner.UID),
				"controller":         true,
				"blockOwnerDeletion": true,
			}},
		},
		"spec": spec,
	}}
	return apply.Unstructured{Unstructured: u}
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// caSecret is the cacerts Secret istiod mounts, converted from cert-manager's issued Secret.
func caSecret(cp *ControlPlane) *corev1ac.SecretApplyConfiguration {
	return corev1ac.Secret(cp.CA.SecretName, cp.Namespace).
		WithLabels(cp.labels("Base")).
		WithOwnerReferences(cp.ownerReference()).
		WithType("Opaque").
		WithData(cp.CA.Data)
}

// IsIstiodDeployment reports whether o is istiod's Deployment.
func (cp *ControlPlane) IsIstiodDeployment(o Object) bool {
	return o.GetKind() != nil && *o.GetKind() == "Deployment" && o.GetName() != nil && *o.GetName() == cp.IstiodName() &&
		o.GetNamespace() != nil && *o.GetNamespace() == cp.Namespace
}
