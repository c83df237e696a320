package manifests

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/component-helpers/auth/rbac/validation"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/internal/render"
)

// managerRole is the operator's ClusterRole as `make manifests` generates it.
func managerRole(t *testing.T) *rbacv1.ClusterRole {
	t.Helper()
	const path = "config/rbac/role.yaml"
	var found []rbacv1.ClusterRole
	for _, doc := range yamlDocuments(t, readRepoFile(t, path)) {
		var role rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict(doc, &role); err != nil {
			t.Fatalf("decoding %s: %v", path, err)
		}
		if role.Kind == "ClusterRole" && role.Name == "manager-role" {
			found = append(found, role)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s holds %d ClusterRoles named manager-role, want 1", path, len(found))
	}
	if len(found[0].Rules) == 0 {
		t.Fatalf("%s: manager-role has no rules", path)
	}
	return &found[0]
}

func TestManagerRoleHasNoWildcardsOrEscalation(t *testing.T) {
	g := NewWithT(t)
	role := managerRole(t)

	for i, r := range role.Rules {
		desc := fmt.Sprintf("rule %d (%s)", i, formatRule(r))
		for field, values := range map[string][]string{
			"apiGroups":     r.APIGroups,
			"resources":     r.Resources,
			"verbs":         r.Verbs,
			"resourceNames": r.ResourceNames,
		} {
			for _, v := range values {
				g.Expect(v).NotTo(ContainSubstring("*"), "%s: wildcard in %s", desc, field)
			}
		}
		for _, verb := range []string{"escalate", "bind", "impersonate"} {
			g.Expect(r.Verbs).NotTo(ContainElement(verb), "%s: privilege-escalating verb", desc)
		}
		g.Expect(r.NonResourceURLs).To(BeEmpty(), "%s: non-resource URLs", desc)
	}
}

// TestManagerRoleCoversRenderedRoles checks that the operator holds every permission it
// grants istiod: Kubernetes refuses to create a role granting more than its creator has
// (the operator does not hold "escalate"), so a gap here breaks every install.
func TestManagerRoleCoversRenderedRoles(t *testing.T) {
	owner := managerRole(t).Rules

	tests := []struct {
		name  string
		rules []*rbacv1ac.PolicyRuleApplyConfiguration
	}{
		{name: "IstiodClusterRules", rules: render.IstiodClusterRules()},
		{name: "GatewayControllerRules", rules: render.GatewayControllerRules()},
		{name: "ReaderRules", rules: render.ReaderRules()},
		{name: "IstiodNamespaceRules", rules: render.IstiodNamespaceRules()},
		{name: "GatewayRules", rules: render.GatewayRules()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(tt.rules).NotTo(BeEmpty())

			servant := make([]rbacv1.PolicyRule, 0, len(tt.rules))
			for _, ac := range tt.rules {
				data, err := json.Marshal(ac)
				g.Expect(err).NotTo(HaveOccurred())
				var r rbacv1.PolicyRule
				g.Expect(json.Unmarshal(data, &r)).To(Succeed())
				g.Expect(r.Verbs).NotTo(BeEmpty(), "rendered rule %s has no verbs", data)
				servant = append(servant, r)
			}

			covered, uncovered := validation.Covers(owner, servant)
			lines := make([]string, len(uncovered))
			for i, r := range uncovered {
				lines[i] = "  " + formatRule(r)
			}
			g.Expect(covered).To(BeTrue(),
				"config/rbac/role.yaml (manager-role) lacks permissions %s grants; add kubebuilder markers in controllers/meshcontrolplane/rbac.go and run 'make manifests':\n%s",
				tt.name, strings.Join(lines, "\n"))
		})
	}
}

func formatRule(r rbacv1.PolicyRule) string {
	s := fmt.Sprintf("apiGroups=%q resources=%q verbs=%q", r.APIGroups, r.Resources, r.Verbs)
	if len(r.ResourceNames) > 0 {
		s += fmt.Sprintf(" resourceNames=%q", r.ResourceNames)
	}
	return s
}
