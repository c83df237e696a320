// Command meshplane runs the meshplane operator.
package main

import (
	"flag"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/meshplane/meshplane/internal/operator"
)

func main() {
	var opts operator.Options
	flag.StringVar(&opts.MetricsBindAddress, "metrics-bind-address", ":8443",
		"Address the metrics endpoint binds to; \"0\" disables it.")
	flag.BoolVar(&opts.SecureMetrics, "metrics-secure", true,
		"Serve metrics over HTTPS, for authenticated and authorised clients only.")
	flag.StringVar(&opts.HealthProbeBindAddress, "health-probe-bind-address", ":8081",
		"Address the /healthz and /readyz endpoints bind to.")
	flag.BoolVar(&opts.LeaderElection, "leader-elect", false,
		"Elect a leader, so only one replica reconciles at a time.")
	flag.StringVar(&opts.Namespace, "namespace", os.Getenv("POD_NAMESPACE"),
		"The operator's namespace (its webhook certificate lives there; never injected).")
	flag.BoolVar(&opts.IstioValidation, "istio-validation", true,
		"Render each revision's istio-validator ValidatingWebhookConfiguration, so istiod validates Istio config at admission.")
	var hooks operator.WebhookOptions
	flag.IntVar(&hooks.Port, "webhook-port", 9443, "Port the admission webhook server listens on.")
	flag.StringVar(&hooks.ServiceName, "webhook-service-name", "meshplane-webhook-service",
		"Service in the operator's namespace through which the API server reaches the webhooks.")
	flag.StringVar(&hooks.URL, "webhook-url", "",
		"Base URL the API server calls the webhooks at, instead of the Service (operator outside the cluster).")
	flag.StringVar(&hooks.CertSecret, "webhook-cert-secret", "",
		"Serve the webhooks with this Secret in the operator's namespace, issued by cert-manager (config/certmanager), instead of the operator's own CA.")
	disableWebhooks := flag.Bool("disable-webhooks", false, "Serve no admission webhooks (no sidecar injection).")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	if !*disableWebhooks {
		opts.Webhooks = &hooks
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

	mgr, err := operator.NewManager(ctrl.GetConfigOrDie(), opts)
	if err != nil {
		log.Error(err, "Unable to set up the operator")
		os.Exit(1)
	}
	log.Info("Starting the operator")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "The operator stopped with an error")
		os.Exit(1)
	}
}
