package apply_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"time"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/apply"
	"github.com/meshplane/meshplane/internal/operator"
	"github.com/meshplane/meshplane/internal/render"
	"github.com/meshplane/meshplane/internal/testenv"
)

var (
	env *testenv.Env
	c   client.Client
)

func TestMain(m *testing.M) {
	code := func() int {
		var err error
		assets, err := testenv.AssetsDir()
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			return 1
		}
		// Istio's and cert-manager's CRDs: the applier handles their kinds too.
		env, err = testenv.Start(context.Background(), testenv.Options{WithoutWorkloads: true, CRDDirectoryPaths: []string{
			filepath.Join("..", "..", "config", "istio-crds"),
			filepath.Join(assets, "cert-manager-crds"),
		}})
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			return 1
		}
		defer env.Stop()
		c, err = client.New(env.Config, client.Options{Scheme: operator.Scheme()})
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// owner is a stand-in MeshControlPlane: the applier only reads its name and UID.
func owner(name string) *meshv1alpha1.MeshControlPlane {
	return &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-of-" + name)}}
}

// After one apply, the live objects must hold exactly what was applied: a second pass
// sends nothing. This is what makes the operator's steady state write-free, checked for
// every kind and shape the builders produce, against the real API server's defaulting.
func TestSecondApplyWritesNothing(t *testing.T) {
	specs := map[string]func(*meshv1alpha1.MeshControlPlaneSpec){
		"cp1": func(s *meshv1alpha1.MeshControlPlaneSpec) {
			// Upstream's defaults: an autoscaled LoadBalancer ingress, a ClusterIP egress.
			// A mesh-wide PeerAuthentication (Istio's type) and a cert-manager Certificate
			// (unstructured), with the cacerts Secret converted from what it issues.
			s.Security = &meshv1alpha1.SecuritySpec{
				MTLS: &meshv1alpha1.MTLSSpec{Mode: meshv1alpha1.MTLSModeStrict},
				CertificateAuthority: &meshv1alpha1.CertificateAuthority{CertManager: &meshv1alpha1.CertManagerCA{
					IssuerRef: meshv1alpha1.IssuerReference{Name: "mesh-root", Kind: "ClusterIssuer"},
					Duration:  &metav1.Duration{Duration: 720 * time.Hour},
				}},
			}
			s.Gateways = []meshv1alpha1.GatewaySpec{
				{Name: "istio-ingressgateway", Type: meshv1alpha1.GatewayTypeIngress},
				{Name: "istio-egressgateway", Type: meshv1alpha1.GatewayTypeEgress, Namespace: "cp1-egress"},
			}
			// A mesh-wide Telemetry (Istio's type, with protobuf wrappers: a bool and a
			// fractional double).
			s.Telemetry = &meshv1alpha1.TelemetrySpec{
				AccessLogging: &meshv1alpha1.AccessLogging{Enabled: ptr.To(false), Encoding: "JSON"},
				Tracing: &meshv1alpha1.TelemetryTracing{SamplingPercentage: "0.05", OpenTelemetry: &meshv1alpha1.TracingCollector{
					Service: "otel-collector.observability.svc.cluster.local", Port: 4317}},
			}
		},
		"cp2": func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Revision = "canary"
			s.Profile = meshv1alpha1.ProfileDemo
			s.Pilot = &meshv1alpha1.PilotSpec{
				Replicas:     ptr.To[int32](3),
				NodeSelector: map[string]string{"pool": "system"},
				Tolerations:  []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}},
				Env:          []corev1.EnvVar{{Name: "PILOT_PUSH_THROTTLE", Value: "50"}},
			}
			s.MeshConfig = &meshv1alpha1.MeshConfig{DefaultConfig: &meshv1alpha1.ProxyConfig{
				ProxyMetadata: map[string]meshv1alpha1.ProxyMetadataValue{"ISTIO_META_DNS_CAPTURE": "true", "EMPTY": ""},
			}}
			// Every shape a gateway can take: fixed replicas with a PDB, a NodePort with
			// custom ports (defaulted target ports and protocols, TCP and UDP on one port),
			// scheduling, resources, user labels and annotations, another revision.
			s.Gateways = []meshv1alpha1.GatewaySpec{
				{
					Name: "public", Type: meshv1alpha1.GatewayTypeIngress, Namespace: "cp2-gateways",
					Replicas: ptr.To[int32](3),
					Service: &meshv1alpha1.GatewayService{Type: "NodePort", Ports: []meshv1alpha1.GatewayPort{
						{Name: "https", Port: 443, TargetPort: 8443},
						{Name: "http3", Port: 443, TargetPort: 8443, Protocol: corev1.ProtocolUDP},
						{Name: "tcp-db", Port: 5432},
					}},
					Resources: &corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
					},
					Labels:       map[string]meshv1alpha1.LabelValue{"team": "edge"},
					Annotations:  map[string]string{"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"},
					NodeSelector: map[string]string{"pool": "edge"},
					Tolerations:  []corev1.Toleration{{Key: "edge", Operator: corev1.TolerationOpEqual, Value: "true", Effect: corev1.TaintEffectNoSchedule}},
					Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
						NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}}},
					}}},
				},
				{
					Name: "egress", Type: meshv1alpha1.GatewayTypeEgress, Revision: "default",
					Autoscaling: &meshv1alpha1.Autoscaling{MinReplicas: ptr.To[int32](2)},
				},
			}
		},
	}
	for name, mutate := range specs {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			ctx := context.Background()
			m := owner(name)
			m.Spec.Namespace = name + "-system"
			if mutate != nil {
				mutate(&m.Spec)
			}
			cp, err := render.Resolve(m)
			g.Expect(err).NotTo(HaveOccurred())
			for _, ns := range cp.Namespaces() {
				g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
			}
			if cp.CA.Mode == meshv1alpha1.CAModeCertManager {
				cp.CA.Fingerprint = "0123456789abcdef"
				cp.CA.Data = map[string][]byte{"ca-cert.pem": []byte("cert"), "ca-key.pem": []byte("key"),
					"cert-chain.pem": []byte("chain"), "root-cert.pem": []byte("root")}
			}
			cp.Webhook = &render.WebhookEndpoint{URL: "https://127.0.0.1:9443", CABundle: []byte("-----BEGIN CERTIFICATE-----\n"), OperatorNamespace: "meshplane-system"}
			if name == "cp2" {
				cp.Webhook = &render.WebhookEndpoint{ServiceNamespace: "meshplane-system", ServiceName: "webhooks", ServicePort: 443, CABundle: []byte("x")}
			}
			// The validators point at loopback (nothing listens; failurePolicy Ignore):
			// the istiod Service would resolve off this machine.
			cp.Validation = &render.ValidationEndpoint{URL: "https://127.0.0.1:9"}
			objs, err := render.Objects(cp)
			g.Expect(err).NotTo(HaveOccurred())

			a := apply.NewApplier(c, c, operator.Scheme(), "test-manager")
			for _, o := range objs {
				changed, err := a.Apply(ctx, m, o)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(changed).To(BeTrue(), "first apply of %s creates it", *o.GetName())
			}
			// Render afresh, as every reconcile does (Apply fills its argument with the
			// server's response).
			objs, err = render.Objects(cp)
			g.Expect(err).NotTo(HaveOccurred())
			if name == "cp1" {
				kinds := map[string]bool{}
				for _, o := range objs {
					kinds[*o.GetKind()] = true
				}
				g.Expect(kinds).To(HaveKey("PeerAuthentication"))
				g.Expect(kinds).To(HaveKey("Certificate"))
				g.Expect(kinds).To(HaveKey("Secret"))
				g.Expect(kinds).To(HaveKey("Telemetry"))
				g.Expect(kinds).To(HaveKey("ValidatingWebhookConfiguration"))
			}
			for _, o := range objs {
				changed, err := a.Apply(ctx, m, o)
				g.Expect(err).NotTo(HaveOccurred())
				if changed {
					raw, _ := json.MarshalIndent(o, "", "  ")
					t.Errorf("second apply of %s %s sent a write; desired:\n%s", *o.GetKind(), *o.GetName(), raw)
				}
			}
		})
	}
}

// A change to an object of a kind without client-go schemas (Istio's, cert-manager's) is
// still seen, and so is another manager's drift of a field we own.
func TestApplyDetectsChangesOfOtherKinds(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	m := owner("cp3")
	m.Spec.Namespace = "cp3-system"
	g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: m.Spec.Namespace}})).To(Succeed())
	a := apply.NewApplier(c, c, operator.Scheme(), "test-manager")
	objectsWith := func(mode meshv1alpha1.MTLSMode, issuer string) []apply.Object {
		m.Spec.Security = &meshv1alpha1.SecuritySpec{
			MTLS: &meshv1alpha1.MTLSSpec{Mode: mode},
			CertificateAuthority: &meshv1alpha1.CertificateAuthority{CertManager: &meshv1alpha1.CertManagerCA{
				IssuerRef: meshv1alpha1.IssuerReference{Name: issuer},
			}},
		}
		cp, err := render.Resolve(m)
		g.Expect(err).NotTo(HaveOccurred())
		objs, err := render.Objects(cp)
		g.Expect(err).NotTo(HaveOccurred())
		var out []apply.Object
		for _, o := range objs {
			if k := *o.GetKind(); k == "PeerAuthentication" || k == "Certificate" {
				out = append(out, o)
			}
		}
		g.Expect(out).To(HaveLen(2))
		return out
	}
	applyAll := func(objs []apply.Object) (writes int) {
		for _, o := range objs {
			changed, err := a.Apply(ctx, m, o)
			g.Expect(err).NotTo(HaveOccurred())
			if changed {
				writes++
			}
		}
		return writes
	}
	g.Expect(applyAll(objectsWith(meshv1alpha1.MTLSModeStrict, "a"))).To(Equal(2))
	g.Expect(applyAll(objectsWith(meshv1alpha1.MTLSModeStrict, "a"))).To(Equal(0))
	g.Expect(applyAll(objectsWith(meshv1alpha1.MTLSModeDisable, "a"))).To(Equal(1))
	g.Expect(applyAll(objectsWith(meshv1alpha1.MTLSModeDisable, "b"))).To(Equal(1))
	g.Expect(applyAll(objectsWith(meshv1alpha1.MTLSModeDisable, "b"))).To(Equal(0))

	pa := &securityv1.PeerAuthentication{}
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: "cp3-system", Name: "default"}, pa)).To(Succeed())
	g.Expect(pa.Spec.GetMtls().GetMode().String()).To(Equal("DISABLE"))

	// Someone else changes the mode: the next pass puts ours back.
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"mtls":{"mode":"PERMISSIVE"}}}`))
	g.Expect(c.Patch(ctx, pa, patch, client.FieldOwner("someone-else"))).To(Succeed())
	g.Expect(applyAll(objectsWith(meshv1alpha1.MTLSModeDisable, "b"))).To(Equal(1))
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: "cp3-system", Name: "default"}, pa)).To(Succeed())
	g.Expect(pa.Spec.GetMtls().GetMode().String()).To(Equal("DISABLE"))
}

// istio-validator's failurePolicy is seeded: the object is created with Ignore, and the
// field is then left to istiod, which patches it (and caBundle) with an update of its own.
// Neither is reverted nor seen as drift, not even when the operator applies a change; a
// field the operator drops is removed (the seed's manager kept no share of it); and a
// deleted validator is created afresh with Ignore.
func TestSeededFieldsAreHandedOver(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	m := owner("cp4")
	// No object of this revision is ever created, so the API server never calls the
	// validator, not even while it names the istiod Service.
	m.Spec.Namespace, m.Spec.Revision = "cp4-system", "seeded"
	cp, err := render.Resolve(m)
	g.Expect(err).NotTo(HaveOccurred())
	validator := func(url string) apply.Object {
		cp.Validation = &render.ValidationEndpoint{URL: url}
		objs, err := render.Objects(cp)
		g.Expect(err).NotTo(HaveOccurred())
		for _, o := range objs {
			if *o.GetKind() == "ValidatingWebhookConfiguration" {
				return o
			}
		}
		t.Fatal("no validator rendered")
		return nil
	}
	a := apply.NewApplier(c, c, operator.Scheme(), "test-manager")
	key := client.ObjectKey{Name: "istio-validator-seeded-cp4-system"}
	live := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	t.Cleanup(func() {
		_ = c.Delete(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: key.Name}})
	})
	fieldsOf := func(manager string) string {
		for _, mf := range live.ManagedFields {
			if mf.Manager == manager && mf.FieldsV1 != nil {
				return string(mf.FieldsV1.Raw)
			}
		}
		return ""
	}
	policies := func() []admissionregistrationv1.FailurePolicyType {
		var out []admissionregistrationv1.FailurePolicyType
		for _, w := range live.Webhooks {
			out = append(out, ptr.Deref(w.FailurePolicy, ""))
		}
		return out
	}

	changed, err := a.Apply(ctx, m, validator("https://127.0.0.1:9"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(changed).To(BeTrue())
	g.Expect(c.Get(ctx, key, live)).To(Succeed())
	g.Expect(policies()).To(Equal([]admissionregistrationv1.FailurePolicyType{admissionregistrationv1.Ignore}))
	g.Expect(fieldsOf(apply.SeedFieldOwner)).To(ContainSubstring(`"f:failurePolicy"`))
	g.Expect(fieldsOf(apply.SeedFieldOwner)).NotTo(ContainSubstring(`"f:clientConfig"`), "the seed's manager hands the rest over")
	g.Expect(fieldsOf(apply.SeedFieldOwner)).NotTo(ContainSubstring(`"f:metadata"`))
	g.Expect(fieldsOf("test-manager")).To(ContainSubstring(`"f:clientConfig"`))
	g.Expect(fieldsOf("test-manager")).NotTo(ContainSubstring(`"f:failurePolicy"`))
	g.Expect(fieldsOf("test-manager")).NotTo(ContainSubstring(`"f:caBundle"`))
	changed, err = a.Apply(ctx, m, validator("https://127.0.0.1:9"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(changed).To(BeFalse())

	// istiod's webhook controller: an update of the whole object, as pilot-discovery.
	ca := []byte("-----BEGIN CERTIFICATE-----\nistiod\n-----END CERTIFICATE-----\n")
	for i := range live.Webhooks {
		live.Webhooks[i].ClientConfig.CABundle = ca
		live.Webhooks[i].FailurePolicy = ptr.To(admissionregistrationv1.Fail)
	}
	g.Expect(c.Update(ctx, live, client.FieldOwner("pilot-discovery"))).To(Succeed())
	changed, err = a.Apply(ctx, m, validator("https://127.0.0.1:9"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(changed).To(BeFalse(), "istiod's fields are not the operator's drift")

	// A change of the operator's: the URL gives way to the Service, istiod's fields stay.
	changed, err = a.Apply(ctx, m, validator(""))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(changed).To(BeTrue())
	g.Expect(c.Get(ctx, key, live)).To(Succeed())
	g.Expect(live.Webhooks[0].ClientConfig.URL).To(BeNil())
	g.Expect(live.Webhooks[0].ClientConfig.Service).NotTo(BeNil())
	g.Expect(live.Webhooks[0].ClientConfig.Service.Name).To(Equal("istiod-seeded"))
	g.Expect(live.Webhooks[0].ClientConfig.CABundle).To(Equal(ca))
	g.Expect(policies()).To(Equal([]admissionregistrationv1.FailurePolicyType{admissionregistrationv1.Fail}))
	// istiod took failurePolicy from the seed's manager, which keeps only its share of the
	// webhooks' keys (they exist for as long as the object does).
	g.Expect(fieldsOf(apply.SeedFieldOwner)).NotTo(ContainSubstring(`"f:failurePolicy"`))
	g.Expect(fieldsOf("pilot-discovery")).To(ContainSubstring(`"f:failurePolicy"`))
	changed, err = a.Apply(ctx, m, validator(""))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(changed).To(BeFalse())

	// Deleted: created afresh, failing open until an istiod takes it over again.
	g.Expect(c.Delete(ctx, live)).To(Succeed())
	changed, err = a.Apply(ctx, m, validator(""))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(changed).To(BeTrue())
	live = &admissionregistrationv1.ValidatingWebhookConfiguration{}
	g.Expect(c.Get(ctx, key, live)).To(Succeed())
	g.Expect(policies()).To(Equal([]admissionregistrationv1.FailurePolicyType{admissionregistrationv1.Ignore}))
	g.Expect(live.Webhooks[0].ClientConfig.CABundle).To(BeEmpty())
}
