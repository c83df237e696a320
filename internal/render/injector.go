package render

import (
	"net/url"
	"path"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	admissionregistrationv1ac "k8s.io/client-go/applyconfigurations/admissionregistration/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
)

// InjectPathPrefix is where the operator serves sidecar injection; the MeshControlPlane's
// name follows, so one server answers for every revision.
const InjectPathPrefix = "/inject/"

// WebhookEndpoint is where the API server reaches the operator's webhooks, and what it must
// trust. Exactly one of Service and URL is used.
type WebhookEndpoint struct {
	// ServiceNamespace, ServiceName and ServicePort name the operator's webhook Service.
	ServiceNamespace string
	ServiceName      string
	ServicePort      int32
	// URL is a base URL ("https://127.0.0.1:9443") used instead of a Service, for the local
	// control plane where the operator runs outside the cluster.
	URL string
	// CABundle is the PEM bundle the API server trusts for the operator's serving certificate.
	CABundle []byte
	// OperatorNamespace is never injected, nor is kube-system or the control plane's namespace.
	OperatorNamespace string
}

// InjectorWebhookName is the name of the revision's MutatingWebhookConfiguration, as upstream
// names it (so two default revisions in one cluster collide, as they must: both would
// inject the same namespaces).
func (cp *ControlPlane) InjectorWebhookName() string { return cp.suffixed("istio-sidecar-injector") }

// injectorWebhook renders the revision's MutatingWebhookConfiguration with upstream's
// selection semantics: a revisioned control plane answers only for istio.io/rev=<rev>
// namespaces and pods; the default revision also for istio-injection=enabled namespaces and
// sidecar.istio.io/inject=true pods.
func injectorWebhook(cp *ControlPlane) *admissionregistrationv1ac.MutatingWebhookConfigurationApplyConfiguration {
	ep := cp.Webhook
	clientConfig := admissionregistrationv1ac.WebhookClientConfig().WithCABundle(ep.CABundle...)
	webhookPath := InjectPathPrefix + cp.Owner.Name
	if ep.URL != "" {
		u, err := url.Parse(ep.URL)
		if err == nil {
			u.Path = path.Join(u.Path, webhookPath)
			clientConfig.WithURL(u.String())
		}
	} else {
		clientConfig.WithService(admissionregistrationv1ac.ServiceReference().
			WithNamespace(ep.ServiceNamespace).WithName(ep.ServiceName).
			WithPort(ep.ServicePort).WithPath(webhookPath))
	}

	req := func(key string, op metav1.LabelSelectorOperator, values ...string) *metav1ac.LabelSelectorRequirementApplyConfiguration {
		r := metav1ac.LabelSelectorRequirement().WithKey(key).WithOperator(op)
		if len(values) > 0 {
			r.WithValues(values...)
		}
		return r
	}
	never := []string{"kube-system", cp.Namespace}
	if ep.OperatorNamespace != "" && ep.OperatorNamespace != cp.Namespace {
		never = append(never, ep.OperatorNamespace)
	}
	// Every webhook skips the namespaces that must never be injected.
	notExcluded := req(corev1.LabelMetadataName, metav1.LabelSelectorOpNotIn, never...)
	webhook := func(name string, ns, obj []*metav1ac.LabelSelectorRequirementApplyConfiguration) *admissionregistrationv1ac.MutatingWebhookApplyConfiguration {
		return admissionregistrationv1ac.MutatingWebhook().
			WithName(name).
			WithClientConfig(clientConfig).
			WithRules(admissionregistrationv1ac.RuleWithOperations().
				WithOperations(admissionregistrationv1.Create).
				WithAPIGroups("").WithAPIVersions("v1").WithResources("pods").
				// Rules are an atomic list: a field the server defaults inside it would
				// otherwise differ from ours on every comparison.
				WithScope(admissionregistrationv1.AllScopes)).
			WithFailurePolicy(admissionregistrationv1.Fail).
			WithSideEffects(admissionregistrationv1.SideEffectClassNone).
			WithAdmissionReviewVersions("v1").
			WithTimeoutSeconds(10).
			WithReinvocationPolicy(admissionregistrationv1.NeverReinvocationPolicy).
			WithNamespaceSelector(metav1ac.LabelSelector().WithMatchExpressions(append(ns, notExcluded)...)).
			WithObjectSelector(metav1ac.LabelSelector().WithMatchExpressions(obj...))
	}
	const (
		revLabel    = LabelIstioRev
		injectLabel = "sidecar.istio.io/inject"
		nsInjection = "istio-injection"
	)
	rev := cp.RevisionLabel()
	hooks := []*admissionregistrationv1ac.MutatingWebhookApplyConfiguration{
		webhook("rev.namespace.sidecar-injector.istio.io",
			[]*metav1ac.LabelSelectorRequirementApplyConfiguration{req(revLabel, metav1.LabelSelectorOpIn, rev), req(nsInjection, metav1.LabelSelectorOpDoesNotExist)},
			[]*metav1ac.LabelSelectorRequirementApplyConfiguration{req(injectLabel, metav1.LabelSelectorOpNotIn, "false")}),
		webhook("rev.object.sidecar-injector.istio.io",
			[]*metav1ac.LabelSelectorRequirementApplyConfiguration{req(revLabel, metav1.LabelSelectorOpDoesNotExist), req(nsInjection, metav1.LabelSelectorOpDoesNotExist)},
			[]*metav1ac.LabelSelectorRequirementApplyConfiguration{req(injectLabel, metav1.LabelSelectorOpNotIn, "false"), req(revLabel, metav1.LabelSelectorOpIn, rev)}),
	}
	if cp.Revision == "" {
		hooks = append(hooks,
			webhook("namespace.sidecar-injector.istio.io",
				[]*metav1ac.LabelSelectorRequirementApplyConfiguration{req(nsInjection, metav1.LabelSelectorOpIn, "enabled")},
				[]*metav1ac.LabelSelectorRequirementApplyConfiguration{req(injectLabel, metav1.LabelSelectorOpNotIn, "false")}),
			webhook("object.sidecar-injector.istio.io",
				[]*metav1ac.LabelSelectorRequirementApplyConfiguration{req(nsInjection, metav1.LabelSelectorOpDoesNotExist), req(revLabel, metav1.LabelSelectorOpDoesNotExist)},
				[]*metav1ac.LabelSelectorRequirementApplyConfiguration{req(injectLabel, metav1.LabelSelectorOpIn, "true"), req(revLabel, metav1.LabelSelectorOpDoesNotExist)}),
		)
	}
	return admissionregistrationv1ac.MutatingWebhookConfiguration(cp.InjectorWebhookName()).
		WithLabels(cp.labels("SidecarInjector")).
		WithOwnerReferences(cp.ownerReference()).
		WithWebhooks(hooks...)
}
