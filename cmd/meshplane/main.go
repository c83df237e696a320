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
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
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
