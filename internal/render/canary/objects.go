// Package canary builds the objects a Canary owns, from its spec and the target Deployment
// it rolls out, and reads back from live objects the facts the state machine needs. Pure
// functions: no API calls, every object table-tested without a cluster.
//
// For a target Deployment <t> the objects are:
//
//	Deployment      <t>-primary  the stable version: the target's pod template as of the last
//	                             promotion, its selector label values suffixed "-primary"
//	Service         <t>-primary  selects the primary's pods
//	Service         <t>-canary   selects the target's pods
//	Service         <t>          the apex clients call, unless a Service of that name that the
//	                             operator did not create exists (then it is left as it is):
//	                             selects the primary's pods, or the target's while the primary
//	                             is first created
//	DestinationRule <t>-primary, <t>-canary
//	VirtualService  <t>          hosts <t> and spec.service.hosts: one HTTP route splitting
//	                             traffic between <t>-primary and <t>-canary
//
// The target itself is the user's: the only field the operator sets on it is spec.replicas
// (TargetScale).
package canary

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/types/known/durationpb"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	istiometav1ac "istio.io/client-go/pkg/applyconfiguration/meta/v1"
	networkingv1ac "istio.io/client-go/pkg/applyconfiguration/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/render"
)

const (
	// PrimarySuffix names the primary Deployment and Service, and suffixes the values of the
	// target's selector labels on the primary's pods, so the target's selector (and its
	// Services') never match them.
	PrimarySuffix = "-primary"
	// CanarySuffix names the Service selecting the target's pods.
	CanarySuffix = "-canary"

	// AnnotationRevision on the primary Deployment is the target revision (TemplateRevision)
	// its pod template was copied from.
	AnnotationRevision = "mesh.meshplane.io/revision"

	// RouteName names the VirtualService's HTTP route.
	RouteName = "canary"
)

// Names are the names of a Canary's objects, all derived from the target's.
type Names struct {
	// Apex is the Service clients call and the VirtualService's name: the target's name.
	Apex string
	// Primary names the primary Deployment, its Service and DestinationRule.
	Primary string
	// Canary names the Service and DestinationRule of the target's pods.
	Canary string
}

// NamesOf returns the names of c's objects.
func NamesOf(c *meshv1alpha1.Canary) Names {
	t := c.Spec.TargetRef.Name
	return Names{Apex: t, Primary: t + PrimarySuffix, Canary: t + CanarySuffix}
}

// ownedLabels are the labels of every object the Canary owns.
func ownedLabels() map[string]string {
	return map[string]string{render.LabelManagedBy: render.ManagedByValue}
}

// ownerReference makes c the controller of an object: the garbage collector removes the
// object with it, and the applier never touches an object c does not control.
func ownerReference(c *meshv1alpha1.Canary) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(meshv1alpha1.GroupVersion.String()).
		WithKind("Canary").
		WithName(c.Name).
		WithUID(c.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

// PrimarySelector is the primary's selector: the target's matchLabels with "-primary"
// appended to each value. ValidateTarget checks that the target has matchLabels.
func PrimarySelector(target *appsv1.Deployment) map[string]string {
	out := map[string]string{}
	if target.Spec.Selector != nil {
		for k, v := range target.Spec.Selector.MatchLabels {
			out[k] = v + PrimarySuffix
		}
	}
	return out
}

// TargetSelector is the target's matchLabels: what the canary Service (and, while the
// primary is first created, the apex) selects.
func TargetSelector(target *appsv1.Deployment) map[string]string {
	if target.Spec.Selector == nil {
		return map[string]string{}
	}
	return maps.Clone(target.Spec.Selector.MatchLabels)
}

// PrimaryTemplate is the target's pod template as the primary runs it: identical but for
// the selector labels, whose values get "-primary".
func PrimaryTemplate(target *appsv1.Deployment) *corev1ac.PodTemplateSpecApplyConfiguration {
	t := target.Spec.Template.DeepCopy()
	if t.Labels == nil {
		t.Labels = map[string]string{}
	}
	maps.Copy(t.Labels, PrimarySelector(target))
	return convert[corev1ac.PodTemplateSpecApplyConfiguration](t)
}

// Primary describes the primary Deployment to apply.
type Primary struct {
	// Template is the pod template: PrimaryTemplate(target) when it is (re)copied, or the
	// template the operator applied last (extracted from the live primary) otherwise.
	Template *corev1ac.PodTemplateSpecApplyConfiguration
	// Revision is the target revision Template was copied from (AnnotationRevision).
	Revision string
	// Replicas mirrors what the user intends the workload to run (see IntendedReplicas).
	Replicas int32
}

// PrimaryDeployment is the <t>-primary Deployment. Its rollout settings (strategy,
// minReadySeconds, progress deadline, history) follow the target's; its pod template is
// p.Template, which the controller changes only when promoting.
func PrimaryDeployment(c *meshv1alpha1.Canary, target *appsv1.Deployment, p Primary) *appsv1ac.DeploymentApplyConfiguration {
	n := NamesOf(c)
	spec := appsv1ac.DeploymentSpec().
		WithReplicas(p.Replicas).
		WithSelector(metav1ac.LabelSelector().WithMatchLabels(PrimarySelector(target))).
		WithTemplate(p.Template)
	ts := target.Spec
	if ts.MinReadySeconds != 0 {
		spec.WithMinReadySeconds(ts.MinReadySeconds)
	}
	if ts.ProgressDeadlineSeconds != nil {
		spec.WithProgressDeadlineSeconds(*ts.ProgressDeadlineSeconds)
	}
	if ts.RevisionHistoryLimit != nil {
		spec.WithRevisionHistoryLimit(*ts.RevisionHistoryLimit)
	}
	if ts.Strategy.Type != "" {
		spec.Strategy = convert[appsv1ac.DeploymentStrategyApplyConfiguration](ts.Strategy)
	}
	return appsv1ac.Deployment(n.Primary, c.Namespace).
		WithLabels(ownedLabels()).
		WithAnnotations(map[string]string{AnnotationRevision: p.Revision}).
		WithOwnerReferences(ownerReference(c)).
		WithSpec(spec)
}

// TargetScale sets only the target's spec.replicas: applied with the Canary's field
// manager, that is the one field of the user's Deployment the operator owns.
func TargetScale(c *meshv1alpha1.Canary, replicas int32) *appsv1ac.DeploymentApplyConfiguration {
	return appsv1ac.Deployment(c.Spec.TargetRef.Name, c.Namespace).
		WithSpec(appsv1ac.DeploymentSpec().WithReplicas(replicas))
}

// Service is one of the Canary's Services (apex, primary or canary), selecting selector.
func Service(c *meshv1alpha1.Canary, name string, selector map[string]string) *corev1ac.ServiceApplyConfiguration {
	svc := c.Spec.Service
	portName := svc.PortName
	if portName == "" {
		portName = "http"
	}
	target := intstr.FromInt32(svc.Port)
	if svc.TargetPort != nil {
		target = *svc.TargetPort
	}
	return corev1ac.Service(name, c.Namespace).
		WithLabels(ownedLabels()).
		WithOwnerReferences(ownerReference(c)).
		WithSpec(corev1ac.ServiceSpec().
			WithSelector(selector).
			WithPorts(corev1ac.ServicePort().
				WithName(portName).
				WithProtocol(corev1.ProtocolTCP).
				WithPort(svc.Port).
				WithTargetPort(target)))
}

// DestinationRule is the DestinationRule of host (<t>-primary or <t>-canary), named after it.
func DestinationRule(c *meshv1alpha1.Canary, host string) *DestinationRuleApplyConfiguration {
	dr := networkingv1ac.DestinationRule(host, c.Namespace).
		WithLabels(ownedLabels()).
		WithOwnerReferences(convert[istiometav1ac.OwnerReferenceApplyConfiguration](ownerReference(c)))
	// Set directly: protobuf messages must not be copied, which WithSpec's value does.
	dr.Spec = &networkingv1alpha3.DestinationRule{Host: host}
	return &DestinationRuleApplyConfiguration{dr}
}

// VirtualService is the route clients of the apex (and spec.service.hosts) take: weight
// percent to the canary (the target's pods), the rest to the primary.
func VirtualService(c *meshv1alpha1.Canary, weight int32) *VirtualServiceApplyConfiguration {
	n := NamesOf(c)
	svc := c.Spec.Service
	hosts := []string{n.Apex}
	for _, h := range svc.Hosts {
		if !slices.Contains(hosts, string(h)) {
			hosts = append(hosts, string(h))
		}
	}
	var gateways []string
	for _, g := range svc.Gateways {
		gateways = append(gateways, string(g))
	}
	port := &networkingv1alpha3.PortSelector{Number: uint32(svc.Port)}
	route := &networkingv1alpha3.HTTPRoute{
		Name:  RouteName,
		Match: httpMatches(svc.Match),
		Route: []*networkingv1alpha3.HTTPRouteDestination{
			{Destination: &networkingv1alpha3.Destination{Host: n.Primary, Port: port}, Weight: 100 - weight},
			{Destination: &networkingv1alpha3.Destination{Host: n.Canary, Port: &networkingv1alpha3.PortSelector{Number: port.Number}}, Weight: weight},
		},
	}
	if svc.Timeout != nil {
		route.Timeout = durationpb.New(svc.Timeout.Duration)
	}
	if r := svc.Retries; r != nil {
		route.Retries = &networkingv1alpha3.HTTPRetry{Attempts: r.Attempts, RetryOn: r.RetryOn}
		if r.PerTryTimeout != nil {
			route.Retries.PerTryTimeout = durationpb.New(r.PerTryTimeout.Duration)
		}
	}
	vs := networkingv1ac.VirtualService(n.Apex, c.Namespace).
		WithLabels(ownedLabels()).
		WithOwnerReferences(convert[istiometav1ac.OwnerReferenceApplyConfiguration](ownerReference(c)))
	vs.Spec = &networkingv1alpha3.VirtualService{Hosts: hosts, Gateways: gateways, Http: []*networkingv1alpha3.HTTPRoute{route}}
	return &VirtualServiceApplyConfiguration{vs}
}

func httpMatches(in []meshv1alpha1.HTTPMatch) []*networkingv1alpha3.HTTPMatchRequest {
	var out []*networkingv1alpha3.HTTPMatchRequest
	for _, m := range in {
		r := &networkingv1alpha3.HTTPMatchRequest{Uri: stringMatch(m.URI), Method: stringMatch(m.Method)}
		if len(m.Headers) > 0 {
			r.Headers = map[string]*networkingv1alpha3.StringMatch{}
			for k, v := range m.Headers {
				r.Headers[k] = stringMatch(&v)
			}
		}
		out = append(out, r)
	}
	return out
}

func stringMatch(m *meshv1alpha1.StringMatch) *networkingv1alpha3.StringMatch {
	switch {
	case m == nil:
		return nil
	case m.Exact != nil:
		return &networkingv1alpha3.StringMatch{MatchType: &networkingv1alpha3.StringMatch_Exact{Exact: *m.Exact}}
	case m.Prefix != nil:
		return &networkingv1alpha3.StringMatch{MatchType: &networkingv1alpha3.StringMatch_Prefix{Prefix: *m.Prefix}}
	case m.Regex != nil:
		return &networkingv1alpha3.StringMatch{MatchType: &networkingv1alpha3.StringMatch_Regex{Regex: *m.Regex}}
	}
	return nil
}

// convert copies a value into another type with the same JSON (a typed object into its
// apply configuration).
func convert[T any](in any) *T {
	raw, err := json.Marshal(in)
	if err != nil {
		panic(fmt.Sprintf("canary render: marshalling %T: %v", in, err))
	}
	out := new(T)
	if err := json.Unmarshal(raw, out); err != nil {
		panic(fmt.Sprintf("canary render: converting %T: %v", in, err))
	}
	return out
}
