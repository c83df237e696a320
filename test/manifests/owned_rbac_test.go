package manifests

import (
	"testing"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/component-helpers/auth/rbac/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/controllers/canary"
	"github.com/meshplane/meshplane/controllers/meshcontrolplane"
	"github.com/meshplane/meshplane/internal/operator"
)

// TestManagerRoleCoversOwnedTypes checks that the operator may do to every kind it applies,
// watches and prunes what the controller does: read and watch them (its cache), apply them
// (create and patch), and delete what a later spec no longer needs. A kind added to
// OwnedTypes without its RBAC marker fails here rather than in a cluster.
func TestManagerRoleCoversOwnedTypes(t *testing.T) {
	owner := managerRole(t).Rules
	scheme := operator.Scheme()
	for _, obj := range append(append([]client.Object{}, meshcontrolplane.OwnedTypes...), canary.OwnedTypes...) {
		gvks, _, err := scheme.ObjectKinds(obj)
		if err != nil || len(gvks) == 0 {
			t.Fatalf("%T is not in the operator's scheme: %v", obj, err)
		}
		gvk := gvks[0]
		t.Run(gvk.Kind, func(t *testing.T) {
			g := NewWithT(t)
			plural, _ := meta.UnsafeGuessKindToResource(gvk)
			needed := rbacv1.PolicyRule{
				APIGroups: []string{gvk.Group},
				Resources: []string{plural.Resource},
				Verbs:     []string{"get", "list", "watch", "create", "update", "patch", "delete"},
			}
			covered, uncovered := validation.Covers(owner, []rbacv1.PolicyRule{needed})
			g.Expect(covered).To(BeTrue(),
				"config/rbac/role.yaml (manager-role) lacks %v for %s, which the operator applies and prunes; add a kubebuilder marker in the controller (controllers/meshcontrolplane/rbac.go, controllers/canary/reconciler.go) and run 'make manifests'",
				uncovered, gvk.Kind)
		})
	}
}
