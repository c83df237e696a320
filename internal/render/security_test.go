package render

import (
	"encoding/json"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/apply"
)

// asMap is an object as the API server receives it.
func asMap(t *testing.T, o Object) map[string]any {
	t.Helper()
	raw, err := json.Marshal(o)
	if err != nil {
		t.Fatalf("marshalling %s: %v", *o.GetName(), err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func ofKind(objs []Object, kind string) []Object {
	var out []Object
	for _, o := range objs {
		if *o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func TestPeerAuthentication(t *testing.T) {
	for _, tc := range []struct {
		name string
		sec  *meshv1alpha1.SecuritySpec
		want string // "" for no PeerAuthentication
	}{
		{name: "no security", sec: nil},
		{name: "no mode", sec: &meshv1alpha1.SecuritySpec{MTLS: &meshv1alpha1.MTLSSpec{}}},
		{name: "strict", sec: &meshv1alpha1.SecuritySpec{MTLS: &meshv1alpha1.MTLSSpec{Mode: meshv1alpha1.MTLSModeStrict}}, want: "STRICT"},
		{name: "permissive", sec: &meshv1alpha1.SecuritySpec{MTLS: &meshv1alpha1.MTLSSpec{Mode: meshv1alpha1.MTLSModePermissive}}, want: "PERMISSIVE"},
		{name: "disable", sec: &meshv1alpha1.SecuritySpec{MTLS: &meshv1alpha1.MTLSSpec{Mode: meshv1alpha1.MTLSModeDisable}}, want: "DISABLE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, objs := render(t, mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) {
				s.Namespace = "mesh-root"
				s.Security = tc.sec
			}))
			pas := ofKind(objs, "PeerAuthentication")
			if tc.want == "" {
				g.Expect(pas).To(BeEmpty())
				return
			}
			g.Expect(pas).To(HaveLen(1))
			pa := asMap(t, pas[0])
			g.Expect(pa).To(HaveKeyWithValue("apiVersion", "security.istio.io/v1"))
			g.Expect(pa["metadata"]).To(HaveKeyWithValue("name", "default"))
			g.Expect(pa["metadata"]).To(HaveKeyWithValue("namespace", "mesh-root"), "the root namespace makes it mesh-wide")
			g.Expect(pa["spec"]).To(Equal(map[string]any{"mtls": map[string]any{"mode": tc.want}}))
		})
	}
}

func TestCertificateAuthorityOfIstiod(t *testing.T) {
	ca := func(c *meshv1alpha1.CertificateAuthority) func(*meshv1alpha1.MeshControlPlaneSpec) {
		return func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Security = &meshv1alpha1.SecuritySpec{CertificateAuthority: c}
		}
	}
	issuer := &meshv1alpha1.CertManagerCA{IssuerRef: meshv1alpha1.IssuerReference{Name: "mesh-root", Kind: "ClusterIssuer"}}
	for _, tc := range []struct {
		name        string
		spec        func(*meshv1alpha1.MeshControlPlaneSpec)
		fingerprint string
		wantMode    string
		wantSecret  string
		optional    bool
	}{
		{name: "default", wantMode: meshv1alpha1.CAModeSelfSigned, wantSecret: "cacerts", optional: true},
		{name: "selfSigned", spec: ca(&meshv1alpha1.CertificateAuthority{SelfSigned: &meshv1alpha1.SelfSignedCA{}}),
			wantMode: meshv1alpha1.CAModeSelfSigned, wantSecret: "cacerts", optional: true},
		{name: "plugged, default name, not validated yet", spec: ca(&meshv1alpha1.CertificateAuthority{Plugged: &meshv1alpha1.PluggedCA{}}),
			wantMode: meshv1alpha1.CAModePlugged, wantSecret: "cacerts"},
		{name: "plugged, validated", spec: ca(&meshv1alpha1.CertificateAuthority{Plugged: &meshv1alpha1.PluggedCA{SecretName: "mesh-ca"}}),
			fingerprint: "0123456789abcdef", wantMode: meshv1alpha1.CAModePlugged, wantSecret: "mesh-ca"},
		{name: "certManager", spec: ca(&meshv1alpha1.CertificateAuthority{CertManager: issuer}),
			fingerprint: "fedcba9876543210", wantMode: meshv1alpha1.CAModeCertManager, wantSecret: "istiod-cacerts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cp, err := Resolve(mcp(tc.spec))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cp.CA.Mode).To(Equal(tc.wantMode))
			cp.CA.Fingerprint = tc.fingerprint
			objs, err := Objects(cp)
			g.Expect(err).NotTo(HaveOccurred())
			d := find[*appsv1ac.DeploymentApplyConfiguration](objs, "istiod")
			var vol *corev1ac.VolumeApplyConfiguration
			for i := range d.Spec.Template.Spec.Volumes {
				if v := &d.Spec.Template.Spec.Volumes[i]; *v.Name == "cacerts" {
					vol = v
				}
			}
			g.Expect(vol).NotTo(BeNil())
			g.Expect(*vol.Secret.SecretName).To(Equal(tc.wantSecret))
			g.Expect(*vol.Secret.Optional).To(Equal(tc.optional))
			if tc.fingerprint == "" {
				g.Expect(d.Spec.Template.Annotations).NotTo(HaveKey(AnnotationCAFingerprint))
			} else {
				g.Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue(AnnotationCAFingerprint, tc.fingerprint))
			}
			if tc.wantMode != meshv1alpha1.CAModeCertManager {
				g.Expect(ofKind(objs, CertificateKind)).To(BeEmpty())
				g.Expect(ofKind(objs, "Secret")).To(BeEmpty(), "the operator never writes a self-signed or plugged CA")
			}
		})
	}
}

func TestCertManagerCA(t *testing.T) {
	g := NewWithT(t)
	m := mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) {
		s.Revision = "canary"
		s.MeshConfig = &meshv1alpha1.MeshConfig{TrustDomain: "example.org"}
		s.Security = &meshv1alpha1.SecuritySpec{CertificateAuthority: &meshv1alpha1.CertificateAuthority{
			CertManager: &meshv1alpha1.CertManagerCA{
				IssuerRef:   meshv1alpha1.IssuerReference{Name: "mesh-root", Kind: "ClusterIssuer"},
				Duration:    &metav1.Duration{Duration: 720 * time.Hour},
				RenewBefore: &metav1.Duration{Duration: 240 * time.Hour},
			},
		}}
	})
	cp, err := Resolve(m)
	g.Expect(err).NotTo(HaveOccurred())
	objs, err := Objects(cp)
	g.Expect(err).NotTo(HaveOccurred())

	// cert-manager is asked for an intermediate CA istiod can use.
	certs := ofKind(objs, CertificateKind)
	g.Expect(certs).To(HaveLen(1))
	g.Expect(certs[0]).To(BeAssignableToTypeOf(apply.Unstructured{}))
	c := asMap(t, certs[0])
	g.Expect(c["apiVersion"]).To(Equal("cert-manager.io/v1"))
	g.Expect(c["metadata"]).To(HaveKeyWithValue("name", "istiod-canary-ca"))
	g.Expect(c["metadata"]).To(HaveKeyWithValue("namespace", "istio-system"))
	g.Expect(c["spec"]).To(Equal(map[string]any{
		"isCA":        true,
		"commonName":  "istiod-ca.example.org",
		"subject":     map[string]any{"organizations": []any{"example.org"}},
		"uris":        []any{"spiffe://example.org/ns/istio-system/sa/istiod-canary"},
		"secretName":  "istiod-canary-ca-issued",
		"privateKey":  map[string]any{"algorithm": "ECDSA", "size": float64(256), "rotationPolicy": "Always"},
		"usages":      []any{"cert sign", "crl sign", "digital signature", "server auth"},
		"issuerRef":   map[string]any{"name": "mesh-root", "kind": "ClusterIssuer", "group": "cert-manager.io"},
		"duration":    "720h0m0s",
		"renewBefore": "240h0m0s",
	}))
	g.Expect(ofKind(objs, "Secret")).To(BeEmpty(), "no cacerts Secret before cert-manager has issued")

	// Once there is material, it is written into the Secret istiod mounts.
	cp.CA.Data = map[string][]byte{"ca-cert.pem": []byte("c"), "ca-key.pem": []byte("k"), "cert-chain.pem": []byte("c"), "root-cert.pem": []byte("r")}
	objs, err = Objects(cp)
	g.Expect(err).NotTo(HaveOccurred())
	s := find[*corev1ac.SecretApplyConfiguration](objs, "istiod-canary-cacerts")
	g.Expect(s).NotTo(BeNil())
	g.Expect(s.Data).To(Equal(cp.CA.Data))
	g.Expect(*s.Namespace).To(Equal("istio-system"))
}

func TestIsIstiodDeployment(t *testing.T) {
	g := NewWithT(t)
	cp, objs := render(t, mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) {
		s.Gateways = []meshv1alpha1.GatewaySpec{{Name: "ingress", Type: meshv1alpha1.GatewayTypeIngress}}
	}))
	var matched []string
	for _, o := range objs {
		if cp.IsIstiodDeployment(o) {
			matched = append(matched, *o.GetKind()+"/"+*o.GetName())
		}
	}
	g.Expect(matched).To(Equal([]string{"Deployment/istiod"}))
}
