package e2e

import (
	"fmt"
	"sort"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/controllers/meshcontrolplane"
	"github.com/meshplane/meshplane/internal/render"
)

const (
	readyTimeout = 60 * time.Second
	poll         = 200 * time.Millisecond
)

func newMCP(name, namespace string, mutate func(*meshv1alpha1.MeshControlPlaneSpec)) *meshv1alpha1.MeshControlPlane {
	m := &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: name}}
	m.Spec.Namespace = namespace
	if mutate != nil {
		mutate(&m.Spec)
	}
	return m
}

func getMCP(g Gomega, name string) *meshv1alpha1.MeshControlPlane {
	m := &meshv1alpha1.MeshControlPlane{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: name}, m)).To(Succeed())
	return m
}

// expectReady waits until the MeshControlPlane is Ready for its current generation.
func expectReady(name string) *meshv1alpha1.MeshControlPlane {
	var m *meshv1alpha1.MeshControlPlane
	EventuallyWithOffset(1, func(g Gomega) {
		m = getMCP(g, name)
		g.Expect(m.Status.ObservedGeneration).To(Equal(m.Generation))
		c := meta.FindStatusCondition(m.Status.Conditions, meshv1alpha1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
		g.Expect(c.ObservedGeneration).To(Equal(m.Generation))
	}, readyTimeout, poll).Should(Succeed())
	return m
}

// ownedObjects lists, straight from the API server, every object of the kinds the operator
// creates that carries the control plane's label.
func ownedObjects(g Gomega, mcpName string) []string {
	var out []string
	lists := []client.ObjectList{
		&corev1.ServiceAccountList{}, &corev1.ConfigMapList{}, &corev1.ServiceList{},
		&rbacv1.ClusterRoleList{}, &rbacv1.ClusterRoleBindingList{}, &rbacv1.RoleList{}, &rbacv1.RoleBindingList{},
		&appsv1.DeploymentList{}, &autoscalingv2.HorizontalPodAutoscalerList{}, &policyv1.PodDisruptionBudgetList{},
		&admissionregistrationv1.MutatingWebhookConfigurationList{},
		&admissionregistrationv1.ValidatingWebhookConfigurationList{},
	}
	for _, l := range lists {
		g.Expect(k8s.List(ctx(), l, client.MatchingLabels{render.LabelControlPlane: mcpName})).To(Succeed())
		items, err := meta.ExtractList(l)
		g.Expect(err).NotTo(HaveOccurred())
		for _, it := range items {
			o := it.(client.Object)
			kind := strings.TrimSuffix(fmt.Sprintf("%T", l), "List")
			kind = kind[strings.LastIndex(kind, ".")+1:]
			out = append(out, kind+"/"+client.ObjectKeyFromObject(o).String())
		}
	}
	sort.Strings(out)
	return out
}

func deleteMCP(name string) {
	m := &meshv1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: name}}
	Expect(client.IgnoreNotFound(k8s.Delete(ctx(), m))).To(Succeed())
	Eventually(func(g Gomega) {
		g.Expect(ownedObjects(g, name)).To(BeEmpty())
	}, readyTimeout, poll).Should(Succeed())
}

var _ = Describe("MeshControlPlane", func() {
	It("installs istiod, becomes Ready and reports its components", func() {
		m := newMCP("basic", "basic-system", nil)
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(deleteMCP, m.Name)

		m = expectReady(m.Name)
		Expect(m.Spec.Version).To(Equal("1.31.1"), "the schema defaults the version")
		Expect(m.Status.Components).To(ConsistOf(meshv1alpha1.ComponentStatus{
			Name: "istiod", Component: "Pilot", Namespace: "basic-system", Ready: true, Replicas: 1, ReadyReplicas: 1,
		}))
		Expect(m.Status.Revisions).To(ConsistOf(meshv1alpha1.RevisionStatus{Name: "default", Version: "1.31.1", Ready: true}))
		for _, t := range []string{meshv1alpha1.ConditionReconciled} {
			Expect(meta.IsStatusConditionTrue(m.Status.Conditions, t)).To(BeTrue(), t)
		}
		for _, t := range []string{meshv1alpha1.ConditionProgressing, meshv1alpha1.ConditionStalled} {
			Expect(meta.IsStatusConditionFalse(m.Status.Conditions, t)).To(BeTrue(), t)
		}

		Eventually(func(g Gomega) {
			g.Expect(ownedObjects(g, m.Name)).To(ConsistOf(
				"ServiceAccount/basic-system/istiod",
				"ServiceAccount/basic-system/istio-reader-service-account",
				"ConfigMap/basic-system/istio",
				"Service/basic-system/istiod",
				"ClusterRole//istiod-clusterrole-basic-system",
				"ClusterRole//istiod-gateway-controller-basic-system",
				"ClusterRole//istio-reader-clusterrole-basic-system",
				"ClusterRoleBinding//istiod-clusterrole-basic-system",
				"ClusterRoleBinding//istiod-gateway-controller-basic-system",
				"ClusterRoleBinding//istio-reader-clusterrole-basic-system",
				"Role/basic-system/istiod",
				"RoleBinding/basic-system/istiod",
				"Deployment/basic-system/istiod",
				"HorizontalPodAutoscaler/basic-system/istiod",
				"MutatingWebhookConfiguration//istio-sidecar-injector",
				"ValidatingWebhookConfiguration//istio-validator-basic-system",
			))
		}, readyTimeout, poll).Should(Succeed())

		By("running istiod's pods on the fake node")
		pods := &corev1.PodList{}
		Expect(k8s.List(ctx(), pods, client.InNamespace("basic-system"), client.MatchingLabels{"app": "istiod"})).To(Succeed())
		Expect(pods.Items).To(HaveLen(1))
		Expect(pods.Items[0].Status.Phase).To(Equal(corev1.PodRunning))
		Expect(pods.Items[0].Spec.Containers[0].Image).To(Equal("docker.io/istio/pilot:1.31.1"))

		By("creating the namespace, annotated as the operator's")
		ns := &corev1.Namespace{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Name: "basic-system"}, ns)).To(Succeed())
		Expect(ns.Annotations).To(HaveKeyWithValue(meshcontrolplane.AnnotationCreatedBy, "basic"))

		By("recording an Event when it became Ready")
		Eventually(func(g Gomega) {
			g.Expect(eventReasons(g, m)).To(ContainElement("Ready"))
		}, readyTimeout, poll).Should(Succeed())
	})

	It("applies spec updates: scale, mesh config and version", func() {
		m := newMCP("updates", "updates-system", nil)
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(deleteMCP, m.Name)
		expectReady(m.Name)

		By("fixing three replicas: the HPA goes, a PDB comes")
		patchSpec(m.Name, func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Pilot = &meshv1alpha1.PilotSpec{Replicas: ptr.To[int32](3)}
			s.MeshConfig = &meshv1alpha1.MeshConfig{OutboundTrafficPolicy: &meshv1alpha1.OutboundTrafficPolicy{Mode: "REGISTRY_ONLY"}}
		})
		Eventually(func(g Gomega) {
			d := &appsv1.Deployment{}
			g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: "updates-system", Name: "istiod"}, d)).To(Succeed())
			g.Expect(d.Spec.Replicas).To(HaveValue(BeEquivalentTo(3)))
			g.Expect(apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKey{Namespace: "updates-system", Name: "istiod"}, &autoscalingv2.HorizontalPodAutoscaler{}))).To(BeTrue())
			pdb := &policyv1.PodDisruptionBudget{}
			g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: "updates-system", Name: "istiod"}, pdb)).To(Succeed())
			g.Expect(pdb.Spec.MinAvailable.IntValue()).To(Equal(1))
			cm := &corev1.ConfigMap{}
			g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: "updates-system", Name: "istio"}, cm)).To(Succeed())
			g.Expect(cm.Data["mesh"]).To(ContainSubstring("mode: REGISTRY_ONLY"))
		}, readyTimeout, poll).Should(Succeed())
		m = expectReady(m.Name)
		Expect(m.Status.Components[0].Replicas).To(BeEquivalentTo(3))
		Expect(m.Status.Components[0].ReadyReplicas).To(BeEquivalentTo(3))

		By("changing the version: istiod rolls to the new image and is Ready again")
		patchSpec(m.Name, func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Version = "1.30.3" })
		m = expectReady(m.Name)
		Expect(m.Status.Revisions[0].Version).To(Equal("1.30.3"))
		d := &appsv1.Deployment{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: "updates-system", Name: "istiod"}, d)).To(Succeed())
		Expect(d.Spec.Template.Spec.Containers[0].Image).To(Equal("docker.io/istio/pilot:1.30.3"))
		Expect(d.Status.UpdatedReplicas).To(BeEquivalentTo(3))

		By("switching to a named revision: the old revision's objects are pruned")
		patchSpec(m.Name, func(s *meshv1alpha1.MeshControlPlaneSpec) { s.Revision = "blue" })
		expectReady(m.Name)
		Eventually(func(g Gomega) {
			objs := ownedObjects(g, m.Name)
			g.Expect(objs).To(ContainElements("Deployment/updates-system/istiod-blue", "ClusterRole//istiod-clusterrole-blue-updates-system",
				"ValidatingWebhookConfiguration//istio-validator-blue-updates-system"))
			g.Expect(objs).NotTo(ContainElement("Deployment/updates-system/istiod"))
			g.Expect(objs).NotTo(ContainElement("ClusterRole//istiod-clusterrole-updates-system"))
			g.Expect(objs).NotTo(ContainElement("ValidatingWebhookConfiguration//istio-validator-updates-system"))
		}, readyTimeout, poll).Should(Succeed())
	})

	It("restores drift in owned objects", func() {
		m := newMCP("drift", "drift-system", nil)
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(deleteMCP, m.Name)
		expectReady(m.Name)
		cmKey := client.ObjectKey{Namespace: "drift-system", Name: "istio"}

		By("deleting the mesh ConfigMap")
		cm := &corev1.ConfigMap{}
		Expect(k8s.Get(ctx(), cmKey, cm)).To(Succeed())
		oldUID := cm.UID
		Expect(k8s.Delete(ctx(), cm)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), cmKey, cm)).To(Succeed())
			g.Expect(cm.UID).NotTo(Equal(oldUID))
		}, readyTimeout, poll).Should(Succeed())

		By("editing the mesh config by hand (an update, as kubectl edit sends)")
		want := cm.Data["mesh"]
		cm.Data["mesh"] = "trustDomain: evil.example\n"
		Expect(k8s.Update(ctx(), cm, client.FieldOwner("kubectl-edit"))).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), cmKey, cm)).To(Succeed())
			g.Expect(cm.Data["mesh"]).To(Equal(want))
		}, readyTimeout, poll).Should(Succeed())

		By("changing istiod's image and removing a label")
		dKey := client.ObjectKey{Namespace: "drift-system", Name: "istiod"}
		d := &appsv1.Deployment{}
		Expect(k8s.Get(ctx(), dKey, d)).To(Succeed())
		d.Spec.Template.Spec.Containers[0].Image = "docker.io/istio/pilot:0.0.1"
		delete(d.Labels, "istio.io/rev")
		Expect(k8s.Update(ctx(), d, client.FieldOwner("kubectl-edit"))).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), dKey, d)).To(Succeed())
			g.Expect(d.Spec.Template.Spec.Containers[0].Image).To(Equal("docker.io/istio/pilot:1.31.1"))
			g.Expect(d.Labels).To(HaveKeyWithValue("istio.io/rev", "default"))
		}, readyTimeout, poll).Should(Succeed())

		By("deleting a cluster-scoped role")
		cr := &rbacv1.ClusterRole{}
		crKey := client.ObjectKey{Name: "istiod-clusterrole-drift-system"}
		Expect(k8s.Get(ctx(), crKey, cr)).To(Succeed())
		oldUID = cr.UID
		Expect(k8s.Delete(ctx(), cr)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), crKey, cr)).To(Succeed())
			g.Expect(cr.UID).NotTo(Equal(oldUID))
		}, readyTimeout, poll).Should(Succeed())
		expectReady(m.Name)
	})

	It("removes everything it created when deleted, and nothing else", func() {
		By("a namespace and objects the user owns, in the control plane's namespace")
		Expect(k8s.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "gone-system"}})).To(Succeed())
		userCM := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "users-own", Namespace: "gone-system"},
			Data:       map[string]string{"keep": "me"},
		}
		Expect(k8s.Create(ctx(), userCM)).To(Succeed())
		userRole := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "users-own-role"}}
		Expect(k8s.Create(ctx(), userRole)).To(Succeed())

		m := newMCP("gone", "gone-system", func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Pilot = &meshv1alpha1.PilotSpec{Replicas: ptr.To[int32](2)}
		})
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		expectReady(m.Name)
		Expect(ownedObjects(Default, m.Name)).To(ContainElements(
			"PodDisruptionBudget/gone-system/istiod", "ClusterRoleBinding//istiod-clusterrole-gone-system"))

		Expect(k8s.Delete(ctx(), m)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(ownedObjects(g, m.Name)).To(BeEmpty())
			pods := &corev1.PodList{}
			g.Expect(k8s.List(ctx(), pods, client.InNamespace("gone-system"))).To(Succeed())
			g.Expect(pods.Items).To(BeEmpty())
		}, readyTimeout, poll).Should(Succeed())

		By("leaving the user's objects and the pre-existing namespace alone")
		Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(userCM), userCM)).To(Succeed())
		Expect(userCM.Data).To(Equal(map[string]string{"keep": "me"}))
		Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(userRole), userRole)).To(Succeed())
		ns := &corev1.Namespace{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Name: "gone-system"}, ns)).To(Succeed())
		Expect(ns.DeletionTimestamp).To(BeNil())
		Expect(ns.Annotations).NotTo(HaveKey(meshcontrolplane.AnnotationCreatedBy))
	})

	It("never takes over an object it did not create, and reports it", func() {
		Expect(k8s.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "clash-system"}})).To(Succeed())
		foreign := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "clash-system", Labels: map[string]string{"owner": "someone-else"}},
			Data:       map[string]string{"mesh": "theirs"},
		}
		Expect(k8s.Create(ctx(), foreign)).To(Succeed())
		rv := foreign.ResourceVersion

		m := newMCP("clash", "clash-system", nil)
		Expect(k8s.Create(ctx(), m)).To(Succeed())
		DeferCleanup(deleteMCP, m.Name)

		Eventually(func(g Gomega) {
			m := getMCP(g, "clash")
			c := meta.FindStatusCondition(m.Status.Conditions, meshv1alpha1.ConditionStalled)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(c.Reason).To(Equal(meshv1alpha1.ReasonResourceConflict))
			g.Expect(c.Message).To(ContainSubstring("ConfigMap clash-system/istio already exists and is not managed by this resource"))
			g.Expect(meta.IsStatusConditionFalse(m.Status.Conditions, meshv1alpha1.ConditionReady)).To(BeTrue())
			g.Expect(m.Status.ObservedGeneration).To(Equal(m.Generation), "the Stalled verdict is about this generation")
		}, readyTimeout, poll).Should(Succeed())

		By("leaving the foreign object exactly as it was")
		Consistently(func(g Gomega) {
			got := &corev1.ConfigMap{}
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(foreign), got)).To(Succeed())
			g.Expect(got.ResourceVersion).To(Equal(rv))
			g.Expect(got.Data).To(Equal(map[string]string{"mesh": "theirs"}))
			g.Expect(got.OwnerReferences).To(BeEmpty())
		}, 3*time.Second, poll).Should(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(eventReasons(g, getMCP(g, "clash"))).To(ContainElement(meshv1alpha1.ReasonResourceConflict))
		}, readyTimeout, poll).Should(Succeed())

		By("recovering once the foreign object is gone")
		Expect(k8s.Delete(ctx(), foreign)).To(Succeed())
		expectReady("clash")
	})
})

func patchSpec(name string, mutate func(*meshv1alpha1.MeshControlPlaneSpec)) {
	Eventually(func(g Gomega) {
		m := getMCP(g, name)
		mutate(&m.Spec)
		g.Expect(k8s.Update(ctx(), m)).To(Succeed())
	}, 10*time.Second, poll).Should(Succeed())
}

func eventReasons(g Gomega, m *meshv1alpha1.MeshControlPlane) []string {
	evs := &eventsv1.EventList{}
	g.Expect(k8s.List(ctx(), evs)).To(Succeed())
	var reasons []string
	for _, e := range evs.Items {
		if e.Regarding.Kind == "MeshControlPlane" && e.Regarding.Name == m.Name && e.Regarding.UID == m.UID {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons
}
