package render

import (
	"testing"

	. "github.com/onsi/gomega"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
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
		g.Expect(w.Rules[0].APIGroups).To(ConsistOf("security.istio.io", "networking.istio.io", "telemetry.istio.io", "extensions.istio.io"))
		// istiod owns these two fields: the operator must never set them.
		g.Expect(w.ClientConfig.CABundle).To(BeNil())
		g.Expect(w.FailurePolicy).To(BeNil())
	}

	cp, err = Resolve(mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Revision = "canary" }))
	g.Expect(err).NotTo(HaveOccurred())
	vwc = validatorWebhook(cp)
	g.Expect(*vwc.Name).To(Equal("istio-validator-canary-istio-system"))
	g.Expect(vwc.Webhooks).To(HaveLen(1), "a revision validates only the config that names it")
	g.Expect(selector(vwc.Webhooks[0].ObjectSelector)).To(Equal([]string{"istio.io/rev In [canary]"}))
	g.Expect(*vwc.Webhooks[0].ClientConfig.Service.Name).To(Equal("istiod-canary"))
}
