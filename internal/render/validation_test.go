package render

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	admissionregistrationv1ac "k8s.io/client-go/applyconfigurations/admissionregistration/v1"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/apply"
)

func TestValidatorWebhook(t *testing.T) {
	g := NewWithT(t)
	cp, err := Resolve(mcp(nil))
	g.Expect(err).NotTo(HaveOccurred())
	vwc := validatorWebhook(cp)
	g.Expect(*vwc.Name).To(Equal("istio-validator-istio-system"))
	g.Expect(vwc.Webhooks).To(HaveLen(2))
	want := map[string][]string{
		"rev.validation.istio.io": {"istio.io/rev In [default]"},
		"validation.istio.io":     {"istio.io/rev DoesNotExist"},
	}
	for _, w := range vwc.Webhooks {
		g.Expect(selector(w.ObjectSelector)).To(Equal(want[*w.Name]), *w.Name)
		svc := w.ClientConfig.Service
		g.Expect(*svc.Name).To(Equal("istiod"))
		g.Expect(*svc.Namespace).To(Equal("istio-system"))
		g.Expect(*svc.Path).To(Equal("/validate"))
		g.Expect(w.ClientConfig.URL).To(BeNil())
		g.Expect(w.Rules[0].APIGroups).To(ConsistOf("security.istio.io", "networking.istio.io", "telemetry.istio.io", "extensions.istio.io"))
		// istiod owns these two fields: the operator must never set them.
		g.Expect(w.ClientConfig.CABundle).To(BeNil())
		g.Expect(w.FailurePolicy).To(BeNil())
	}
	// istiod patches the configurations labelled with its revision.
	g.Expect(vwc.Labels).To(HaveKeyWithValue("istio.io/rev", "default"))

	cp, err = Resolve(mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Revision = "canary" }))
	g.Expect(err).NotTo(HaveOccurred())
	vwc = validatorWebhook(cp)
	g.Expect(*vwc.Name).To(Equal("istio-validator-canary-istio-system"))
	g.Expect(vwc.Webhooks).To(HaveLen(1), "a revision validates only the config that names it")
	g.Expect(selector(vwc.Webhooks[0].ObjectSelector)).To(Equal([]string{"istio.io/rev In [canary]"}))
	g.Expect(*vwc.Webhooks[0].ClientConfig.Service.Name).To(Equal("istiod-canary"))
	g.Expect(vwc.Labels).To(HaveKeyWithValue("istio.io/rev", "canary"))
}

// renderValidation renders a control plane with validation on, returning the seeded
// validator (nil when absent) and istiod's environment.
func renderValidation(t *testing.T, mutate func(*meshv1alpha1.MeshControlPlaneSpec), ep *ValidationEndpoint) (*apply.Seeded, map[string]string) {
	t.Helper()
	cp, err := Resolve(mcp(mutate))
	if err != nil {
		t.Fatal(err)
	}
	cp.Validation = ep
	objs, err := Objects(cp)
	if err != nil {
		t.Fatal(err)
	}
	d := find[*appsv1ac.DeploymentApplyConfiguration](objs, cp.IstiodName())
	return find[*apply.Seeded](objs, cp.ValidatorWebhookName()), env(d.Spec.Template.Spec.Containers[0].Env)
}

func webhooksOf(o apply.Object) []admissionregistrationv1ac.ValidatingWebhookApplyConfiguration {
	return o.(*admissionregistrationv1ac.ValidatingWebhookConfigurationApplyConfiguration).Webhooks
}

func TestValidatorIsSeededWithFailurePolicyIgnore(t *testing.T) {
	g := NewWithT(t)
	v, istiodEnv := renderValidation(t, nil, &ValidationEndpoint{})
	g.Expect(v).NotTo(BeNil())
	g.Expect(*v.GetName()).To(Equal("istio-validator-istio-system"))

	// Created with failurePolicy Ignore on every webhook, the rest as applied.
	initial, applied, seed := webhooksOf(v.Initial), webhooksOf(v.Object), webhooksOf(v.Seed)
	g.Expect(initial).To(HaveLen(2))
	g.Expect(applied).To(HaveLen(2))
	for i := range initial {
		g.Expect(initial[i].FailurePolicy).To(HaveValue(Equal(admissionregistrationv1.Ignore)), *initial[i].Name)
		g.Expect(initial[i].ClientConfig.CABundle).To(BeNil())
		// The applied form is a separate object: seeding the initial one left it alone.
		g.Expect(applied[i].FailurePolicy).To(BeNil(), *applied[i].Name)
		withoutPolicy := initial[i]
		withoutPolicy.FailurePolicy = nil
		g.Expect(withoutPolicy).To(Equal(applied[i]))
	}

	// The seed's manager then keeps only the seeded field, located by each webhook's name.
	g.Expect(seed).To(HaveLen(2))
	for i, w := range seed {
		g.Expect(w).To(Equal(admissionregistrationv1ac.ValidatingWebhookApplyConfiguration{
			Name: initial[i].Name, FailurePolicy: initial[i].FailurePolicy,
		}))
	}

	// istiod is told to patch it, with the Service's name in its certificate.
	g.Expect(istiodEnv).To(HaveKeyWithValue("VALIDATION_WEBHOOK_CONFIG_NAME", "istio-validator-istio-system"))
	g.Expect(istiodEnv).To(HaveKeyWithValue("ISTIOD_CUSTOM_HOST", "istiod.istio-system.svc"))
	g.Expect(istiodEnv).To(HaveKeyWithValue("INJECTION_WEBHOOK_CONFIG_NAME", "<from>"),
		"empty: the operator serves injection, istiod must not patch its configuration")
}

func TestNoValidatorWithoutValidation(t *testing.T) {
	g := NewWithT(t)
	v, istiodEnv := renderValidation(t, nil, nil)
	g.Expect(v).To(BeNil())
	g.Expect(istiodEnv).To(HaveKeyWithValue("VALIDATION_WEBHOOK_CONFIG_NAME", "<from>"),
		"empty: istiod's webhook controller stays off when there is nothing to patch")
}

func TestValidatorAtAURL(t *testing.T) {
	g := NewWithT(t)
	v, istiodEnv := renderValidation(t, func(s *meshv1alpha1.MeshControlPlaneSpec) {
		s.Revision, s.Namespace = "val", "val-system"
	}, &ValidationEndpoint{URL: "https://127.0.0.1:40123"})
	g.Expect(v).NotTo(BeNil())
	for _, o := range []apply.Object{v.Object, v.Initial} {
		hooks := webhooksOf(o)
		g.Expect(hooks).To(HaveLen(1))
		g.Expect(hooks[0].ClientConfig.Service).To(BeNil(), "never the Service when a URL is given")
		g.Expect(hooks[0].ClientConfig.URL).To(HaveValue(Equal("https://127.0.0.1:40123/validate")))
	}
	g.Expect(istiodEnv).To(HaveKeyWithValue("VALIDATION_WEBHOOK_CONFIG_NAME", "istio-validator-val-val-system"))
	g.Expect(istiodEnv).To(HaveKeyWithValue("ISTIOD_CUSTOM_HOST", "istiod-val.val-system.svc,127.0.0.1"),
		"istiod's serving certificate must be valid for the host the API server calls")
}

// The validator's three forms are reviewed as a golden file. Regenerate with:
// go test ./internal/render -update
func TestGoldenValidator(t *testing.T) {
	v, _ := renderValidation(t, nil, &ValidationEndpoint{})
	var buf bytes.Buffer
	for _, form := range []struct {
		comment string
		obj     apply.Object
	}{
		{"created once, under the field manager " + apply.SeedFieldOwner, v.Initial},
		{"applied on every pass, under the operator's field manager", v.Object},
		{"then all " + apply.SeedFieldOwner + " keeps, until istiod takes failurePolicy over", v.Seed},
	} {
		b, err := yaml.Marshal(form.obj)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n# " + form.comment + "\n")
		buf.Write(b)
	}
	path := filepath.Join("testdata", "istio-validator.golden.yaml")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("rendered validator differs from %s; if intended, run go test ./internal/render -update\n%s", path, firstDiff(string(want), buf.String()))
	}
}
