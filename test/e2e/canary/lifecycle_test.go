package canary

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	canaryctrl "github.com/meshplane/meshplane/controllers/canary"
	"github.com/meshplane/meshplane/internal/render"
)

var _ = Describe("Deleting a Canary", func() {
	It("restores plain routing to the target and the user's replicas, and hands the apex Service over", func() {
		ns := newNamespace("deleted")
		setTraffic(ns, "web", healthy)
		applyTarget(ns, "web", 3, "v1")
		c := newCanary(ns, "web", nil)
		waitStable(c, meshv1alpha1.CanaryStable)
		Expect(deployment(Default, ns, "web").ManagedFields).To(ContainElement(
			HaveField("Manager", canaryctrl.FieldOwner)), "the operator owns the target's spec.replicas while it runs")

		Expect(k8s.Delete(ctx(), c)).To(Succeed())
		Eventually(func(g Gomega) {
			err := k8s.Get(ctx(), client.ObjectKeyFromObject(c), &meshv1alpha1.Canary{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the Canary is gone: %v", err)
		}, rollout, poll).Should(Succeed())

		By("the target runs the user's three replicas, and the operator no longer owns any of its fields")
		target := deployment(Default, ns, "web")
		Expect(target.Spec.Replicas).To(Equal(ptr.To[int32](3)))
		for _, mf := range target.ManagedFields {
			Expect(mf.Manager).NotTo(Equal(canaryctrl.FieldOwner))
		}
		Expect(target.Status.AvailableReplicas).To(BeEquivalentTo(3), "the Canary went only once the target could serve")

		By("the apex Service stays, now selecting the target's pods and owned by nobody")
		apex := &corev1.Service{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "web"}, apex)).To(Succeed())
		Expect(apex.Spec.Selector).To(Equal(map[string]string{"app": "web"}))
		Expect(apex.OwnerReferences).To(BeEmpty())
		Expect(apex.Labels).NotTo(HaveKey(render.LabelManagedBy))
		Expect(apex.DeletionTimestamp).To(BeNil())

		By("the garbage collector removes the rest")
		Eventually(func(g Gomega) {
			for _, obj := range []client.Object{
				&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web-primary"}},
				&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web-primary"}},
				&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web-canary"}},
				&networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "web-primary"}},
				&networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "web-canary"}},
				&networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "web"}},
			} {
				err := k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: obj.GetName()}, obj)
				g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "%T %s: %v", obj, obj.GetName(), err)
			}
		}, rollout, poll).Should(Succeed())

		By("the user's own tooling applies the manifest again without conflicts, and without force")
		applyTarget(ns, "web", 3, "v1")
		Expect(deployment(Default, ns, "web").Spec.Replicas).To(Equal(ptr.To[int32](3)))
		// And a manifest that stopped listing replicas leaves them where they are: nobody owns
		// the field now, so nothing removes it (an apply releasing a field its manager alone
		// owned would have reset it to 1).
		d := appsv1ac.Deployment("web", ns).WithLabels(map[string]string{"team": "shop"})
		Expect(k8s.Apply(ctx(), d, client.FieldOwner("another-tool"))).To(Succeed())
		Expect(deployment(Default, ns, "web").Spec.Replicas).To(Equal(ptr.To[int32](3)))
	})
})

var _ = Describe("Deleting a Canary mid-rollout", func() {
	It("leaves the target serving its new revision with the user's replicas", func() {
		ns := newNamespace("deleted-mid-rollout")
		setTraffic(ns, "web", healthy)
		applyTarget(ns, "web", 2, "v1")
		c := newCanary(ns, "web", func(s *meshv1alpha1.CanarySpec) { s.Promotion = meshv1alpha1.PromotionGated })
		waitStable(c, meshv1alpha1.CanaryStable)
		release(ns, "web", "v2")
		waitPhase(c, meshv1alpha1.CanaryAwaitingPromotion, rollout)
		Expect(vsWeights(Default, ns, "web")).To(Equal([]int32{50, 50}))

		Expect(k8s.Delete(ctx(), c)).To(Succeed())
		Eventually(func(g Gomega) {
			err := k8s.Get(ctx(), client.ObjectKeyFromObject(c), &meshv1alpha1.Canary{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the Canary is gone: %v", err)
		}, rollout, poll).Should(Succeed())
		target := deployment(Default, ns, "web")
		Expect(target.Spec.Replicas).To(Equal(ptr.To[int32](2)))
		Expect(target.Status.AvailableReplicas).To(BeEquivalentTo(2))
		Expect(target.Spec.Template.Annotations).To(HaveKeyWithValue("example.com/version", "v2"), "the user's template is the user's")
		apex := &corev1.Service{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "web"}, apex)).To(Succeed())
		Expect(apex.Spec.Selector).To(Equal(map[string]string{"app": "web"}))
		Expect(apex.OwnerReferences).To(BeEmpty())
	})
})

var _ = Describe("A Canary given something it cannot use", func() {
	It("reports a missing target, a foreign VirtualService, a user's Service and a missing Prometheus Secret", func() {
		ns := newNamespace("problems")
		setTraffic(ns, "pay", healthy)

		By("a missing target: reported, then picked up once it exists")
		ghost := newCanary(ns, "ghost", nil)

		By("a VirtualService of the target's name that someone else created")
		applyTarget(ns, "shop", 2, "v1")
		foreignVS := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: ns}}
		foreignVS.Spec.Hosts = []string{"shop"}
		foreignVS.Spec.Http = []*networkingv1alpha3.HTTPRoute{{Route: []*networkingv1alpha3.HTTPRouteDestination{
			{Destination: &networkingv1alpha3.Destination{Host: "shop"}}}}}
		Expect(k8s.Create(ctx(), foreignVS)).To(Succeed())
		shop := newCanary(ns, "shop", nil)

		By("the user's own Service named after the target")
		applyTarget(ns, "cart", 2, "v1")
		userSvc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "cart", Namespace: ns, Labels: map[string]string{"team": "cart"}},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "cart"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		}
		Expect(k8s.Create(ctx(), userSvc)).To(Succeed())
		cart := newCanary(ns, "cart", nil)

		By("a credentials Secret that does not exist")
		applyTarget(ns, "pay", 1, "v1")
		pay := newCanary(ns, "pay", func(s *meshv1alpha1.CanarySpec) {
			s.Analysis.Prometheus.CredentialsSecretRef = &meshv1alpha1.LocalSecretReference{Name: "prometheus-auth"}
		})

		Eventually(func(g Gomega) {
			got := getCanary(g, ghost)
			for _, t := range []string{meshv1alpha1.ConditionReady, meshv1alpha1.ConditionReconciled} {
				g.Expect(condition(got, t).Status).To(BeEquivalentTo("False"))
				g.Expect(condition(got, t).Reason).To(Equal(meshv1alpha1.ReasonTargetNotFound))
			}
			g.Expect(condition(got, meshv1alpha1.ConditionStalled).Status).To(BeEquivalentTo("True"))
			g.Expect(condition(got, meshv1alpha1.ConditionStalled).Message).To(ContainSubstring("Deployment ghost does not exist"))
		}, rollout, poll).Should(Succeed())

		Eventually(func(g Gomega) {
			got := getCanary(g, shop)
			for _, t := range []string{meshv1alpha1.ConditionReady, meshv1alpha1.ConditionReconciled} {
				g.Expect(condition(got, t).Status).To(BeEquivalentTo("False"))
				g.Expect(condition(got, t).Reason).To(Equal(meshv1alpha1.ReasonResourceConflict))
			}
			stalled := condition(got, meshv1alpha1.ConditionStalled)
			g.Expect(stalled.Status).To(BeEquivalentTo("True"))
			g.Expect(stalled.Message).To(ContainSubstring("VirtualService " + ns + "/shop already exists and is not managed by this resource"))
		}, rollout, poll).Should(Succeed())

		got := waitStable(cart, meshv1alpha1.CanaryStable)
		reconciled := condition(got, meshv1alpha1.ConditionReconciled)
		Expect(reconciled.Status).To(BeEquivalentTo("True"))
		Expect(reconciled.Reason).To(Equal(meshv1alpha1.ReasonServiceNotManaged))
		Expect(reconciled.Message).To(ContainSubstring("Service cart was not created by meshplane"))
		Expect(virtualService(Default, ns, "cart").Spec.Hosts).To(Equal([]string{"cart"}), "the user's Service is the host")

		waitStable(pay, meshv1alpha1.CanaryStable)
		release(ns, "pay", "v2")

		By("nothing of the user's was touched")
		Consistently(func(g Gomega) {
			vs := virtualService(g, ns, "shop")
			g.Expect(vs.ResourceVersion).To(Equal(foreignVS.ResourceVersion))
			svc := &corev1.Service{}
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(userSvc), svc)).To(Succeed())
			g.Expect(svc.ResourceVersion).To(Equal(userSvc.ResourceVersion))
			g.Expect(deployment(g, ns, "shop").Spec.Replicas).To(Equal(ptr.To[int32](2)), "not scaled while its routing is someone else's")
		}, 3*time.Second, poll).Should(Succeed())

		By("the missing Secret: every check is a query error naming it, and three in a row stall the canary at its step")
		Eventually(func(g Gomega) {
			got := getCanary(g, pay)
			g.Expect(got.Status.Checks).NotTo(BeEmpty())
			last := got.Status.Checks[len(got.Status.Checks)-1]
			g.Expect(last.Outcome).To(Equal(meshv1alpha1.CheckError))
			g.Expect(last.Message).To(ContainSubstring("the Prometheus credentials Secret prometheus-auth does not exist in namespace " + ns))
			stalled := condition(got, meshv1alpha1.ConditionStalled)
			g.Expect(stalled.Status).To(BeEquivalentTo("True"))
			g.Expect(stalled.Reason).To(Equal(meshv1alpha1.ReasonMetricQueryFailed))
			g.Expect(stalled.Message).To(ContainSubstring("prometheus-auth"))
			g.Expect(got.Status.Phase).To(Equal(meshv1alpha1.CanaryProgressing))
			g.Expect(got.Status.Analysis.Failed).To(BeZero(), "a query error is not a failed check")
		}, 3*interval+rollout, poll).Should(Succeed())
		Expect(vsWeights(Default, ns, "pay")).To(Equal([]int32{50, 50}))

		By("the target appears: the missing-target Canary proceeds")
		applyTarget(ns, "ghost", 1, "v1")
		waitStable(ghost, meshv1alpha1.CanaryStable)
	})
})
