package operator

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshplane/meshplane/internal/render"
	"github.com/meshplane/meshplane/internal/webhookcert"
	injectwebhook "github.com/meshplane/meshplane/webhooks/inject"
)

// CertSecretName is the Secret in the operator's namespace holding its webhook CA and
// serving certificate.
const CertSecretName = "meshplane-webhook-cert"

// WebhookOptions say where the operator serves its admission webhooks and how the API
// server reaches them.
type WebhookOptions struct {
	// Host and Port the webhook server listens on (default: all addresses, 9443).
	Host string
	Port int
	// ServiceName is the Service in the operator's namespace in front of the webhook
	// server (in a cluster).
	ServiceName string
	// URL, instead of ServiceName, is the base URL the API server calls
	// ("https://127.0.0.1:9443"): for an operator running outside the cluster, as on the
	// local control plane.
	URL string
	// CertSecret, when set, names a Secret in the operator's namespace that cert-manager
	// issues and renews (config/certmanager): the operator serves with it and publishes its
	// ca.crt instead of running its own CA.
	CertSecret string
	// CertResync is how often a CertSecret is re-read (default one minute).
	CertResync time.Duration
}

// webhooks is the wiring between the certificate manager, the webhook server and the
// MeshControlPlane controller.
type webhooks struct {
	endpoint render.WebhookEndpoint
	store    *webhookcert.Store
	// Exactly one of own (the operator's CA) and issued (cert-manager's Secret) is set.
	own       *webhookcert.Manager
	issued    *webhookcert.Watcher
	caChanged chan event.GenericEvent
}

func newWebhooks(namespace string, o WebhookOptions) (*webhooks, webhook.Server, error) {
	if namespace == "" {
		return nil, nil, errors.New("the operator's namespace is required to serve webhooks")
	}
	spec := webhookcert.Spec{}
	ep := render.WebhookEndpoint{OperatorNamespace: namespace}
	switch {
	case o.URL != "":
		u, err := url.Parse(o.URL)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" {
			return nil, nil, fmt.Errorf("webhook URL %q: want https://<host>[:port]", o.URL)
		}
		if ip := net.ParseIP(u.Hostname()); ip != nil {
			spec.IPAddresses = []net.IP{ip}
		} else {
			spec.DNSNames = []string{u.Hostname()}
		}
		ep.URL = o.URL
	case o.ServiceName != "":
		spec.DNSNames = []string{
			o.ServiceName + "." + namespace + ".svc",
			o.ServiceName + "." + namespace + ".svc.cluster.local",
		}
		ep.ServiceNamespace, ep.ServiceName, ep.ServicePort = namespace, o.ServiceName, 443
	default:
		return nil, nil, errors.New("either a webhook Service name or a webhook URL is required")
	}
	w := &webhooks{
		endpoint:  ep,
		store:     &webhookcert.Store{},
		caChanged: make(chan event.GenericEvent, 1),
	}
	onChange := func([]byte) {
		// One pending event is enough: the controller re-renders every configuration.
		select {
		case w.caChanged <- event.GenericEvent{}:
		default:
		}
	}
	if o.CertSecret != "" {
		w.issued = &webhookcert.Watcher{Namespace: namespace, Name: o.CertSecret, Store: w.store,
			OnChange: onChange, Resync: o.CertResync}
	} else {
		w.own = &webhookcert.Manager{Namespace: namespace, Name: CertSecretName, Spec: spec, Store: w.store,
			OnChange: onChange}
	}
	server := webhook.NewServer(webhook.Options{
		Host: o.Host,
		Port: o.Port,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.GetCertificate = w.store.GetCertificate
		}},
	})
	return w, server, nil
}

// register adds the certificate manager and the webhook handlers to the manager.
func (w *webhooks) register(mgr ctrl.Manager) error {
	var certs manager.Runnable
	if w.issued != nil {
		w.issued.APIReader = mgr.GetAPIReader()
		certs = w.issued
	} else {
		w.own.Client = mgr.GetClient()
		w.own.APIReader = mgr.GetAPIReader()
		certs = w.own
	}
	if err := mgr.Add(certs); err != nil {
		return err
	}
	injector := &injectwebhook.Handler{Client: mgr.GetClient(), Decoder: admission.NewDecoder(mgr.GetScheme())}
	mgr.GetWebhookServer().Register(render.InjectPathPrefix, injector.Webhook())
	return mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker())
}
