package meshcontrolplane

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/cacerts"
	"github.com/meshplane/meshplane/internal/render"
)

// CertificateGVK is cert-manager's Certificate, which the operator creates for a
// cert-manager CA and prunes when the spec no longer asks for one.
var CertificateGVK = schema.GroupVersionKind{Group: render.CertManagerGroup, Version: "v1", Kind: render.CertificateKind}

// caFacts are what the certificate authority phase learned. Only public facts are kept:
// key material never leaves the phase except into the cacerts Secret istiod mounts.
type caFacts struct {
	// reason and message describe a problem with the CA the user must fix or wait for.
	reason, message string
	// hold keeps istiod's Deployment as it is: its CA material is unusable or unknown, and
	// rolling it would break the mesh's identities.
	hold bool
	// status describes the valid material istiod is configured with, when there is some.
	status *meshv1alpha1.CertificateAuthorityStatus
	// warnings are Validate's about valid material (nil with the self-signed CA, whose
	// condition is then removed); nextWarning is when a new one may start, if ever.
	warnings    []string
	nextWarning time.Time
}

func (f *caFacts) problem(reason, format string, args ...any) {
	if f.reason == "" { // the first problem is the one to fix first
		f.reason, f.message = reason, fmt.Sprintf(format, args...)
	}
}

// certificateAuthority reads and validates the CA material of a plugged or cert-manager CA
// and completes the control plane's CA with its fingerprint (and the converted cacerts data
// for cert-manager). Problems become facts, not errors: the Secret and issuer watches
// reconcile again when the user fixes them.
func (r *Reconciler) certificateAuthority(ctx context.Context, s *scope) error {
	ca := &s.cp.CA
	f := &s.facts.ca
	switch ca.Mode {
	case meshv1alpha1.CAModePlugged:
		key := client.ObjectKey{Namespace: s.cp.Namespace, Name: ca.SecretName}
		data, err := r.readSecret(ctx, key)
		switch {
		case err != nil:
			f.hold = true
			s.facts.applyErrors = append(s.facts.applyErrors, err.Error())
			return err
		case data == nil:
			f.hold = true
			f.problem(meshv1alpha1.ReasonInvalidCA, "the plugged CA Secret %s does not exist; create it in the cacerts layout (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem)", key)
			return nil
		}
		r.useCA(s, key, data)
	case meshv1alpha1.CAModeCertManager:
		if err := r.checkIssuer(ctx, s); err != nil {
			f.hold = true
			s.facts.applyErrors = append(s.facts.applyErrors, err.Error())
			return err
		}
		key := client.ObjectKey{Namespace: s.cp.Namespace, Name: s.cp.IssuedCASecretName()}
		issued, err := r.readSecret(ctx, key)
		if err != nil {
			f.hold = true
			s.facts.applyErrors = append(s.facts.applyErrors, err.Error())
			return err
		}
		if issued == nil {
			f.hold = true
			f.problem(meshv1alpha1.ReasonCertificateNotReady, "%s", r.certificateNotIssued(ctx, s))
			return nil
		}
		data, err := cacerts.FromCertManager(issued)
		if err != nil {
			f.hold = true
			f.problem(meshv1alpha1.ReasonInvalidCA, "the CA cert-manager issued into Secret %s cannot be used: %s", key, strings.TrimPrefix(err.Error(), "cacerts: "))
			return nil
		}
		if r.useCA(s, key, data) {
			ca.Data = data
		}
	default:
		f.status = &meshv1alpha1.CertificateAuthorityStatus{Mode: meshv1alpha1.CAModeSelfSigned}
	}
	return nil
}

// useCA validates CA material as istiod will use it; valid material sets istiod's
// fingerprint annotation and the status, invalid material holds istiod back.
func (r *Reconciler) useCA(s *scope, key client.ObjectKey, data map[string][]byte) bool {
	f := &s.facts.ca
	now := time.Now()
	warnings, err := cacerts.Validate(data, now)
	if err != nil {
		f.hold = true
		f.problem(meshv1alpha1.ReasonInvalidCA, "the CA in Secret %s cannot be used: %s", key, strings.TrimPrefix(err.Error(), "cacerts: "))
		return false
	}
	f.warnings = make([]string, 0, len(warnings))
	for _, w := range warnings {
		f.warnings = append(f.warnings, fmt.Sprintf("Secret %s: %s", key, w))
	}
	f.nextWarning, _ = cacerts.NextWarning(data, now)
	s.cp.CA.Fingerprint = cacerts.Fingerprint(data)
	st := &meshv1alpha1.CertificateAuthorityStatus{Mode: s.cp.CA.Mode, SecretName: s.cp.CA.SecretName}
	if sum, err := cacerts.Summarize(data); err == nil {
		st.RootSubject = sum.RootSubject
		st.RootFingerprint = sum.RootSHA256
		st.NotAfter = &metav1.Time{Time: sum.CANotAfter}
	}
	f.status = st
	return true
}

// readSecret reads a Secret the operator does not own straight from the API server (the
// cache holds only meshplane's Secrets). It returns nil data when the Secret is absent.
func (r *Reconciler) readSecret(ctx context.Context, key client.ObjectKey) (map[string][]byte, error) {
	secret := &corev1.Secret{}
	switch err := r.APIReader.Get(ctx, key, secret); {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading Secret %s: %w", key, err)
	}
	if secret.Data == nil {
		return map[string][]byte{}, nil
	}
	return secret.Data, nil
}

// checkIssuer records a problem when the cert-manager issuer does not exist. Issuers of
// other API groups (external issuers) are not checked: their versions are unknown here.
func (r *Reconciler) checkIssuer(ctx context.Context, s *scope) error {
	ref := s.cp.CertManagerCA().IssuerRef
	if ref.Group != "" && ref.Group != render.CertManagerGroup {
		return nil
	}
	kind := string(ref.Kind)
	if kind == "" {
		kind = "Issuer"
	}
	issuer := &metav1.PartialObjectMetadata{}
	issuer.SetGroupVersionKind(schema.GroupVersionKind{Group: render.CertManagerGroup, Version: "v1", Kind: kind})
	key := client.ObjectKey{Name: ref.Name}
	where := ""
	if kind == "Issuer" {
		key.Namespace = s.cp.Namespace
		where = " in namespace " + s.cp.Namespace
	}
	switch err := r.APIReader.Get(ctx, key, issuer); {
	case apimeta.IsNoMatchError(err):
		s.facts.ca.problem(meshv1alpha1.ReasonIssuerNotFound, "cert-manager is not installed (the API has no cert-manager.io/v1 %s); install it or choose another certificate authority", kind)
	case apierrors.IsNotFound(err):
		s.facts.ca.problem(meshv1alpha1.ReasonIssuerNotFound, "cert-manager %s %q not found%s; create it or fix spec.security.certificateAuthority.certManager.issuerRef", kind, ref.Name, where)
	case err != nil:
		return fmt.Errorf("reading cert-manager %s %s: %w", kind, ref.Name, err)
	}
	return nil
}

// certificateNotIssued says why cert-manager has not issued istiod's CA yet, from the
// Certificate's Ready condition.
func (r *Reconciler) certificateNotIssued(ctx context.Context, s *scope) string {
	key := client.ObjectKey{Namespace: s.cp.Namespace, Name: s.cp.CACertificateName()}
	msg := fmt.Sprintf("waiting for cert-manager to issue Certificate %s", key)
	cert := &unstructured.Unstructured{}
	cert.SetGroupVersionKind(CertificateGVK)
	if err := r.APIReader.Get(ctx, key, cert); err != nil {
		return msg
	}
	conds, _, _ := unstructured.NestedSlice(cert.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Ready" && m["status"] != "True" {
			if text, _ := m["message"].(string); text != "" {
				return msg + ": " + text
			}
		}
	}
	return msg
}

// controlPlanesOfSecret maps a Secret to the MeshControlPlanes whose CA reads it: a plugged
// CA's Secret, or the Secret cert-manager issues a cert-manager CA into.
func (r *Reconciler) controlPlanesOfSecret(ctx context.Context, secret client.Object) []reconcile.Request {
	var out []reconcile.Request
	for _, m := range r.controlPlanes(ctx) {
		cp, err := render.Resolve(&m)
		if err != nil || cp.Namespace != secret.GetNamespace() {
			continue
		}
		name := ""
		switch cp.CA.Mode {
		case meshv1alpha1.CAModePlugged:
			name = cp.CA.SecretName
		case meshv1alpha1.CAModeCertManager:
			name = cp.IssuedCASecretName()
		}
		if name != "" && name == secret.GetName() {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&m)})
		}
	}
	return out
}
