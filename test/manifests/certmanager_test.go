package manifests

import (
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// config/default-certmanager must wire the operator to the Secret its Certificate
// produces, and that certificate must name the Service the API server calls.
func TestDefaultCertManagerWiring(t *testing.T) {
	g := NewWithT(t)
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).
		Run(filesys.MakeFsOnDisk(), filepath.Join(repoRoot(t), "config", "default-certmanager"))
	g.Expect(err).NotTo(HaveOccurred())
	var objs []unstructured.Unstructured
	for _, r := range resources.Resources() {
		data, err := r.AsYAML()
		g.Expect(err).NotTo(HaveOccurred())
		var m map[string]any
		g.Expect(yaml.Unmarshal(data, &m)).To(Succeed())
		objs = append(objs, unstructured.Unstructured{Object: m})
	}

	flag := func(args []string, name string) string {
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
				return v
			}
		}
		return ""
	}
	var args []string
	secrets := map[string][]string{} // Certificate secretName -> dnsNames
	services := map[string]string{}  // Service name -> namespace
	for _, o := range objs {
		switch o.GetKind() {
		case "Deployment":
			containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			g.Expect(containers).NotTo(BeEmpty())
			args, _, _ = unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
		case "Certificate":
			g.Expect(o.GetNamespace()).To(Equal("meshplane-system"))
			name, _, _ := unstructured.NestedString(o.Object, "spec", "secretName")
			dns, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "dnsNames")
			secrets[name] = dns
		case "Service":
			services[o.GetName()] = o.GetNamespace()
		}
	}
	secret := flag(args, "webhook-cert-secret")
	g.Expect(secret).NotTo(BeEmpty(), "the manager is told to serve with cert-manager's Secret")
	g.Expect(secrets).To(HaveKey(secret), "a Certificate produces that Secret")
	svc := flag(args, "webhook-service-name")
	g.Expect(services).To(HaveKeyWithValue(svc, "meshplane-system"), "the webhook Service exists")
	g.Expect(secrets[secret]).To(ContainElement(svc+".meshplane-system.svc"), "the certificate names the Service")
}
