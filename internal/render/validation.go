package render

import (
	"net/url"
	"path"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	admissionregistrationv1ac "k8s.io/client-go/applyconfigurations/admissionregistration/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/meshplane/meshplane/internal/apply"
)

// ValidatePath is where istiod serves config validation on its webhook port (15017).
const ValidatePath = "/validate"

// ValidationEndpoint says how the API server reaches the revision's istiod to have it
// validate Istio config.
type ValidationEndpoint struct {
	// URL, when set, is the base URL of istiod's webhook server ("https://127.0.0.1:15017"),
	// called instead of the istiod Service: for an istiod running outside the cluster, as in
	// the local control plane's tests. Its host is added to the names istiod's serving
	// certificate is issued for (ISTIOD_CUSTOM_HOST). Empty in a cluster.
	URL string
}

// ValidatorWebhookName is the revision's ValidatingWebhookConfiguration for Istio config,
// named as upstream names it (istio-validator[-<rev>]-<namespace>).
func (cp *ControlPlane) ValidatorWebhookName() string { return cp.clusterScopedName("istio-validator") }

// istioConfigGroups are the API groups istiod validates.
var istioConfigGroups = []string{"security.istio.io", "networking.istio.io", "telemetry.istio.io", "extensions.istio.io"}

// validatorHost is the host the API server calls istiod's webhooks at when it does not go
// through the Service, or "".
func (cp *ControlPlane) validatorHost() string {
	if cp.Validation == nil || cp.Validation.URL == "" {
		return ""
	}
	u, err := url.Parse(cp.Validation.URL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// validator is the revision's istio-validator, seeded so that the operator and istiod never
// fight over it.
//
// Ownership is split by field. istiod (its VALIDATION_WEBHOOK_CONFIG_NAME set, so its
// webhook controller runs) patches caBundle, which only it knows, into every
// ValidatingWebhookConfiguration labelled with its revision, and switches failurePolicy from
// Ignore to Fail once a dry run of invalid config comes back rejected. The operator owns
// everything else and never sets those two fields: its server-side apply leaves istiod's
// values alone and its comparison does not see them.
//
// failurePolicy must still start as Ignore: the API server defaults an unset one to Fail,
// which would block all Istio config (the operator's own PeerAuthentication included) until
// istiod serves. So the object is created with Ignore under a field manager of its own
// (apply.Seeded), which istiod's update then takes the field from.
func validator(cp *ControlPlane) apply.Object {
	initial := validatorWebhook(cp)
	seed := admissionregistrationv1ac.ValidatingWebhookConfiguration(cp.ValidatorWebhookName())
	for i := range initial.Webhooks {
		initial.Webhooks[i].WithFailurePolicy(admissionregistrationv1.Ignore)
		seed.WithWebhooks(admissionregistrationv1ac.ValidatingWebhook().
			WithName(*initial.Webhooks[i].Name).WithFailurePolicy(admissionregistrationv1.Ignore))
	}
	return &apply.Seeded{Object: validatorWebhook(cp), Initial: initial, Seed: seed}
}

// validatorWebhook routes creates and updates of Istio config to the revision's istiod,
// without caBundle and failurePolicy (see validator).
func validatorWebhook(cp *ControlPlane) *admissionregistrationv1ac.ValidatingWebhookConfigurationApplyConfiguration {
	clientConfig := func() *admissionregistrationv1ac.WebhookClientConfigApplyConfiguration {
		cc := admissionregistrationv1ac.WebhookClientConfig()
		if cp.Validation != nil && cp.Validation.URL != "" {
			if u, err := url.Parse(cp.Validation.URL); err == nil {
				u.Path = path.Join(u.Path, ValidatePath)
				return cc.WithURL(u.String())
			}
		}
		return cc.WithService(admissionregistrationv1ac.ServiceReference().
			WithNamespace(cp.Namespace).WithName(cp.IstiodName()).
			WithPath(ValidatePath).WithPort(443))
	}
	webhook := func(name string, selector *metav1ac.LabelSelectorRequirementApplyConfiguration) *admissionregistrationv1ac.ValidatingWebhookApplyConfiguration {
		return admissionregistrationv1ac.ValidatingWebhook().
			WithName(name).
			WithClientConfig(clientConfig()).
			WithRules(admissionregistrationv1ac.RuleWithOperations().
				WithOperations(admissionregistrationv1.Create, admissionregistrationv1.Update).
				WithAPIGroups(istioConfigGroups...).
				WithAPIVersions("*").
				WithResources("*").
				// Rules are an atomic list: set the field the server would default.
				WithScope(admissionregistrationv1.AllScopes)).
			WithSideEffects(admissionregistrationv1.SideEffectClassNone).
			WithAdmissionReviewVersions("v1").
			WithObjectSelector(metav1ac.LabelSelector().WithMatchExpressions(selector))
	}
	hooks := []*admissionregistrationv1ac.ValidatingWebhookApplyConfiguration{
		webhook("rev.validation.istio.io", metav1ac.LabelSelectorRequirement().
			WithKey(LabelIstioRev).WithOperator(metav1.LabelSelectorOpIn).WithValues(cp.RevisionLabel())),
	}
	if cp.Revision == "" {
		// The default revision also validates config that names no revision (upstream's
		// separate istiod-default-validator).
		hooks = append(hooks, webhook("validation.istio.io", metav1ac.LabelSelectorRequirement().
			WithKey(LabelIstioRev).WithOperator(metav1.LabelSelectorOpDoesNotExist)))
	}
	return admissionregistrationv1ac.ValidatingWebhookConfiguration(cp.ValidatorWebhookName()).
		WithLabels(cp.labels(componentPilot)).
		WithOwnerReferences(cp.ownerReference()).
		WithWebhooks(hooks...)
}
