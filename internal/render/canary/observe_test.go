package canary

import (
	"testing"

	. "github.com/onsi/gomega"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

func TestTemplateRevision(t *testing.T) {
	g := NewWithT(t)
	a := newTarget(nil)
	rev := TemplateRevision(&a.Spec.Template)
	g.Expect(rev).NotTo(BeEmpty())
	g.Expect(len(rev)).To(BeNumerically("<=", 63), "status.canaryRevision's bound")
	g.Expect(rev).To(MatchRegexp(`^[a-z0-9]+$`))

	same := newTarget(func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](7); d.Generation = 9 })
	g.Expect(TemplateRevision(&same.Spec.Template)).To(Equal(rev), "replicas and metadata are not part of the revision")

	for name, mutate := range map[string]func(*appsv1.Deployment){
		"image":      func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "example.com/web:3" },
		"label":      func(d *appsv1.Deployment) { d.Spec.Template.Labels["version"] = "v3" },
		"annotation": func(d *appsv1.Deployment) { d.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] = "now" },
	} {
		changed := newTarget(mutate)
		g.Expect(TemplateRevision(&changed.Spec.Template)).NotTo(Equal(rev), "a changed %s is a new revision", name)
	}
}

func TestDeploymentReady(t *testing.T) {
	ready := func(mutate func(*appsv1.Deployment)) *appsv1.Deployment {
		return newTarget(func(d *appsv1.Deployment) {
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 3, AvailableReplicas: 3}
			if mutate != nil {
				mutate(d)
			}
		})
	}
	tests := []struct {
		name string
		d    *appsv1.Deployment
		want bool
	}{
		{"rolled out and available", ready(nil), true},
		{"a newer spec not yet observed", ready(func(d *appsv1.Deployment) { d.Generation = 4 }), false},
		{"pods of the old template left", ready(func(d *appsv1.Deployment) { d.Status.UpdatedReplicas = 2 }), false},
		{"an old pod still running", ready(func(d *appsv1.Deployment) { d.Status.Replicas = 4 }), false},
		{"not all available", ready(func(d *appsv1.Deployment) { d.Status.AvailableReplicas = 2 }), false},
		{"scaled to zero", ready(func(d *appsv1.Deployment) {
			d.Spec.Replicas = ptr.To[int32](0)
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: 3}
		}), false},
		{"replicas unset means one", ready(func(d *appsv1.Deployment) {
			d.Spec.Replicas = nil
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}
		}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(DeploymentReady(tt.d)).To(Equal(tt.want))
		})
	}
}

func managedFields(entries ...metav1.ManagedFieldsEntry) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) { d.ManagedFields = entries }
}

func entry(manager string, op metav1.ManagedFieldsOperationType, subresource, fields string) metav1.ManagedFieldsEntry {
	return metav1.ManagedFieldsEntry{Manager: manager, Operation: op, Subresource: subresource, FieldsType: "FieldsV1",
		FieldsV1: &metav1.FieldsV1{Raw: []byte(fields)}}
}

func TestIntendedReplicas(t *testing.T) {
	const us = "meshplane-canary"
	replicas := `{"f:spec":{"f:replicas":{}}}`
	primary := func(n int32) *appsv1.Deployment {
		return &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To(n)}}
	}
	tests := []struct {
		name    string
		target  *appsv1.Deployment
		primary *appsv1.Deployment
		want    int32
	}{
		{"the user's value while nobody else set it", newTarget(managedFields(
			entry("kubectl", metav1.ManagedFieldsOperationApply, "", `{"f:spec":{"f:replicas":{},"f:template":{}}}`))), primary(5), 3},
		{"the primary's while the operator scaled the target", newTarget(func(d *appsv1.Deployment) {
			d.Spec.Replicas = ptr.To[int32](0)
			managedFields(entry(us, metav1.ManagedFieldsOperationApply, "", replicas))(d)
		}), primary(4), 4},
		{"the user scaled it since (scale subresource)", newTarget(func(d *appsv1.Deployment) {
			d.Spec.Replicas = ptr.To[int32](6)
			managedFields(entry("kubectl", metav1.ManagedFieldsOperationUpdate, "scale", replicas),
				entry(us, metav1.ManagedFieldsOperationApply, "", `{}`))(d)
		}), primary(4), 6},
		{"our Update entry is not our apply", newTarget(managedFields(entry(us, metav1.ManagedFieldsOperationUpdate, "", replicas))), primary(4), 3},
		{"scaled by us and no primary: the target's own count", newTarget(func(d *appsv1.Deployment) {
			d.Spec.Replicas = ptr.To[int32](2)
			managedFields(entry(us, metav1.ManagedFieldsOperationApply, "", replicas))(d)
		}), nil, 2},
		{"scaled to zero by us and no primary: one", newTarget(func(d *appsv1.Deployment) {
			d.Spec.Replicas = ptr.To[int32](0)
			managedFields(entry(us, metav1.ManagedFieldsOperationApply, "", replicas))(d)
		}), nil, 1},
		{"unset replicas default to one", newTarget(func(d *appsv1.Deployment) { d.Spec.Replicas = nil }), nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(IntendedReplicas(tt.target, tt.primary, us)).To(Equal(tt.want))
		})
	}
}

func TestValidateTarget(t *testing.T) {
	tests := []struct {
		name   string
		canary func(*meshv1alpha1.Canary)
		target func(*appsv1.Deployment)
		want   string // substring; "" for valid
	}{
		{name: "valid"},
		{name: "a name with a dot cannot name Services",
			canary: func(c *meshv1alpha1.Canary) { c.Spec.TargetRef.Name = "web.v2" },
			want:   `Service name "web.v2" is invalid`},
		{name: "a name too long for web-primary",
			canary: func(c *meshv1alpha1.Canary) {
				c.Spec.TargetRef.Name = "a234567890123456789012345678901234567890123456789012345678"
			},
			want: "at most 55 lowercase letters"},
		{name: "no matchLabels",
			target: func(d *appsv1.Deployment) {
				d.Spec.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpExists}}}
			},
			want: "without spec.selector.matchLabels"},
		{name: "expressions besides matchLabels are fine: the suffixed values exclude the primary's pods",
			target: func(d *appsv1.Deployment) {
				d.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "version", Operator: metav1.LabelSelectorOpExists}}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			err := ValidateTarget(newCanary(tt.canary), newTarget(tt.target))
			if tt.want == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tt.want)))
		})
	}
}

func vsOf(c *meshv1alpha1.Canary, routes ...[]*networkingv1alpha3.HTTPRouteDestination) *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{
		Name: "web", Namespace: "shop",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: meshv1alpha1.GroupVersion.String(), Kind: "Canary", Name: c.Name, UID: c.UID, Controller: ptr.To(true)}},
	}}
	for _, r := range routes {
		vs.Spec.Http = append(vs.Spec.Http, &networkingv1alpha3.HTTPRoute{Route: r})
	}
	return vs
}

func dest(host string, weight int32) *networkingv1alpha3.HTTPRouteDestination {
	return &networkingv1alpha3.HTTPRouteDestination{Destination: &networkingv1alpha3.Destination{Host: host}, Weight: weight}
}

func TestAppliedWeight(t *testing.T) {
	c := newCanary(nil)
	foreign := vsOf(c, []*networkingv1alpha3.HTTPRouteDestination{dest("web-primary", 50), dest("web-canary", 50)})
	foreign.OwnerReferences = nil
	tests := []struct {
		name string
		vs   *networkingv1.VirtualService
		want *int32
	}{
		{"no VirtualService", nil, nil},
		{"not the Canary's", foreign, nil},
		{"the split", vsOf(c, []*networkingv1alpha3.HTTPRouteDestination{dest("web-primary", 70), dest("web-canary", 30)}), ptr.To[int32](30)},
		{"canary weight left out (0)", vsOf(c, []*networkingv1alpha3.HTTPRouteDestination{dest("web-primary", 100), dest("web-canary", 0)}), ptr.To[int32](0)},
		{"the canary alone, without a weight", vsOf(c, []*networkingv1alpha3.HTTPRouteDestination{dest("web-canary", 0)}), ptr.To[int32](100)},
		{"the primary alone, without a weight", vsOf(c, []*networkingv1alpha3.HTTPRouteDestination{dest("web-primary", 0)}), ptr.To[int32](0)},
		{"another host", vsOf(c, []*networkingv1alpha3.HTTPRouteDestination{dest("web-primary", 50), dest("other", 50)}), nil},
		{"two routes", vsOf(c, []*networkingv1alpha3.HTTPRouteDestination{dest("web-canary", 100)}, []*networkingv1alpha3.HTTPRouteDestination{dest("web-primary", 100)}), nil},
		{"no destinations", vsOf(c, []*networkingv1alpha3.HTTPRouteDestination{}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(AppliedWeight(c, tt.vs)).To(Equal(tt.want))
		})
	}
}

func TestAppliedWeightReadsBackWhatVirtualServiceBuilds(t *testing.T) {
	c := newCanary(nil)
	for _, w := range []int32{0, 1, 10, 50, 99, 100} {
		vs := vsOf(c)
		vs.Spec.Http = VirtualService(c, w).Spec.Http
		NewWithT(t).Expect(AppliedWeight(c, vs)).To(Equal(ptr.To(w)))
	}
}

func TestManagesReplicasCountsEveryOperation(t *testing.T) {
	g := NewWithT(t)
	const us = "meshplane-canary"
	replicas := `{"f:spec":{"f:replicas":{}}}`
	applied := newTarget(managedFields(entry(us, metav1.ManagedFieldsOperationApply, "", replicas)))
	updated := newTarget(managedFields(entry(us, metav1.ManagedFieldsOperationUpdate, "", replicas)))
	other := newTarget(managedFields(entry("kubectl", metav1.ManagedFieldsOperationApply, "", replicas), entry(us, metav1.ManagedFieldsOperationApply, "", `{"f:metadata":{}}`)))
	g.Expect(OwnsReplicas(applied, us)).To(BeTrue())
	g.Expect(ManagesReplicas(applied, us)).To(BeTrue())
	g.Expect(OwnsReplicas(updated, us)).To(BeFalse())
	g.Expect(ManagesReplicas(updated, us)).To(BeTrue(), "set back by the deletion's update: still ours to release")
	g.Expect(ManagesReplicas(other, us)).To(BeFalse())
}
