package render

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	admissionregistrationv1ac "k8s.io/client-go/applyconfigurations/admissionregistration/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// selector renders a label selector as "key op [values]" terms, for readable expectations.
func selector(s *metav1ac.LabelSelectorApplyConfiguration) []string {
	var out []string
	for _, r := range s.MatchExpressions {
		term := *r.Key + " " + string(*r.Operator)
		if len(r.Values) > 0 {
			term += " [" + strings.Join(r.Values, ",") + "]"
		}
		out = append(out, term)
	}
	return out
}

func renderWebhook(t *testing.T, mutate func(*meshv1alpha1.MeshControlPlaneSpec), ep WebhookEndpoint) *admissionregistrationv1ac.MutatingWebhookConfigurationApplyConfiguration {
	t.Helper()
	cp, err := Resolve(mcp(mutate))
	if err != nil {
		t.Fatal(err)
	}
	cp.Webhook = &ep
	objs, err := Objects(cp)
	if err != nil {
		t.Fatal(err)
	}
	return find[*admissionregistrationv1ac.MutatingWebhookConfigurationApplyConfiguration](objs, cp.InjectorWebhookName())
}

func TestInjectorWebhookDefaultRevision(t *testing.T) {
	g := NewWithT(t)
	mwc := renderWebhook(t, nil, WebhookEndpoint{
		ServiceNamespace: "meshplane-system", ServiceName: "meshplane-webhook-service", ServicePort: 443,
		CABundle: []byte("PEM"), OperatorNamespace: "meshplane-system",
	})
	g.Expect(mwc).NotTo(BeNil())
	g.Expect(*mwc.Name).To(Equal("istio-sidecar-injector"))
	never := "kubernetes.io/metadata.name NotIn [kube-system,istio-system,meshplane-system]"
	want := map[string][2][]string{
		"rev.namespace.sidecar-injector.istio.io": {
			{"istio.io/rev In [default]", "istio-injection DoesNotExist", never},
			{"sidecar.istio.io/inject NotIn [false]"}},
		"rev.object.sidecar-injector.istio.io": {
			{"istio.io/rev DoesNotExist", "istio-injection DoesNotExist", never},
			{"sidecar.istio.io/inject NotIn [false]", "istio.io/rev In [default]"}},
		"namespace.sidecar-injector.istio.io": {
			{"istio-injection In [enabled]", never},
			{"sidecar.istio.io/inject NotIn [false]"}},
		"object.sidecar-injector.istio.io": {
			{"istio-injection DoesNotExist", "istio.io/rev DoesNotExist", never},
			{"sidecar.istio.io/inject In [true]", "istio.io/rev DoesNotExist"}},
	}
	g.Expect(mwc.Webhooks).To(HaveLen(len(want)))
	for _, w := range mwc.Webhooks {
		exp, ok := want[*w.Name]
		g.Expect(ok).To(BeTrue(), *w.Name)
		g.Expect(selector(w.NamespaceSelector)).To(Equal(exp[0]), *w.Name)
		g.Expect(selector(w.ObjectSelector)).To(Equal(exp[1]), *w.Name)
		g.Expect(string(*w.FailurePolicy)).To(Equal("Fail"))
		g.Expect(string(*w.SideEffects)).To(Equal("None"))
		g.Expect(*w.TimeoutSeconds).To(BeEquivalentTo(10))
		g.Expect(string(*w.ReinvocationPolicy)).To(Equal("Never"))
		g.Expect(w.Rules).To(HaveLen(1))
		g.Expect(w.Rules[0].Resources).To(Equal([]string{"pods"}))
		g.Expect(string(w.Rules[0].Operations[0])).To(Equal("CREATE"))
		g.Expect(*w.ClientConfig.Service.Path).To(Equal("/inject/default"))
		g.Expect(*w.ClientConfig.Service.Name).To(Equal("meshplane-webhook-service"))
		g.Expect(w.ClientConfig.CABundle).To(Equal([]byte("PEM")))
	}
}

func TestInjectorWebhookRevisionAnswersOnlyForItself(t *testing.T) {
	g := NewWithT(t)
	mwc := renderWebhook(t, func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Revision = "canary"; s.Namespace = "mesh" },
		WebhookEndpoint{URL: "https://127.0.0.1:9443", CABundle: []byte("PEM")})
	g.Expect(*mwc.Name).To(Equal("istio-sidecar-injector-canary"))
	var names []string
	for _, w := range mwc.Webhooks {
		names = append(names, *w.Name)
		g.Expect(*w.ClientConfig.URL).To(Equal("https://127.0.0.1:9443/inject/default"))
		g.Expect(w.ClientConfig.Service).To(BeNil())
		g.Expect(selector(w.NamespaceSelector)).To(ContainElement("kubernetes.io/metadata.name NotIn [kube-system,mesh]"))
	}
	g.Expect(names).To(Equal([]string{"rev.namespace.sidecar-injector.istio.io", "rev.object.sidecar-injector.istio.io"}))
	g.Expect(selector(mwc.Webhooks[0].NamespaceSelector)).To(ContainElement("istio.io/rev In [canary]"))
	g.Expect(selector(mwc.Webhooks[1].ObjectSelector)).To(ContainElement("istio.io/rev In [canary]"))
}

func TestNoWebhookWithoutEndpoint(t *testing.T) {
	g := NewWithT(t)
	_, objs := render(t, mcp(nil))
	for _, o := range objs {
		g.Expect(*o.GetKind()).NotTo(Equal("MutatingWebhookConfiguration"))
	}
}
