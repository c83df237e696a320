/*
Copyright 2026 The meshplane Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Command cert-manager-controller runs a subset of the real cert-manager controllers (the
// published packages of github.com/cert-manager/cert-manager) against a kubeconfig, for tests
// and demos on a local control plane. cert-manager's own controller binary lives in a module
// that is not published, so this launcher wires the controllers itself; see README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	logf "github.com/cert-manager/cert-manager/pkg/logs"
	utilfeature "github.com/cert-manager/cert-manager/pkg/util/feature"
)

func main() {
	opts := defaultOptions()
	fs := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	opts.addFlags(fs)
	klog.InitFlags(fs) // -v, -vmodule, ...
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n\nRuns cert-manager's certificate, CertificateRequest "+
			"(SelfSigned, CA) and issuer controllers against a Kubernetes API server.\n\n", os.Args[0])
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "unexpected arguments: %q\n", fs.Args())
		os.Exit(2)
	}

	logf.InitLogs()
	defer logf.FlushLogs()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, logf.Log, "controller")

	if err := run(ctx, opts); err != nil {
		logf.Log.Error(err, "cert-manager controller failed")
		logf.FlushLogs()
		os.Exit(1)
	}
}

// options configures run. The zero value is not useful; start from defaultOptions.
type options struct {
	// Kubeconfig is the kubeconfig file to use; empty means in-cluster configuration.
	Kubeconfig string
	// ClusterResourceNamespace is where ClusterIssuers keep their Secrets (CA key pairs, ...).
	ClusterResourceNamespace string

	LeaderElect             bool
	LeaderElectionNamespace string // defaults to ClusterResourceNamespace
	LeaseDuration           time.Duration
	RenewDeadline           time.Duration
	RetryPeriod             time.Duration

	// MetricsAddress and HealthzAddress are host:port listen addresses; "0" or "" turns the
	// server off, and port 0 picks a free port (the bound address is logged).
	MetricsAddress string
	HealthzAddress string

	// Controllers is the set of cert-manager controllers to run; see supportedControllers.
	Controllers []string
	Workers     int

	KubernetesAPIQPS   float32
	KubernetesAPIBurst int

	// CertificateRequestMinimumBackoff / Maximum bound the delay before a failed issuance
	// is retried (cert-manager's defaults are 1h and 32h).
	CertificateRequestMinimumBackoff time.Duration
	CertificateRequestMaximumBackoff time.Duration

	// FeatureGates is cert-manager's feature gate string, e.g. "ServerSideApply=true".
	FeatureGates string

	// onReady, if set, is called once every controller is running and the informer caches
	// have synced. Used by the in-process smoke test.
	onReady func()
}

func defaultOptions() *options {
	return &options{
		Kubeconfig:                       os.Getenv("KUBECONFIG"),
		ClusterResourceNamespace:         "cert-manager",
		LeaseDuration:                    60 * time.Second,
		RenewDeadline:                    40 * time.Second,
		RetryPeriod:                      15 * time.Second,
		MetricsAddress:                   "127.0.0.1:0",
		HealthzAddress:                   "127.0.0.1:0",
		Controllers:                      defaultControllers(),
		Workers:                          5,
		KubernetesAPIQPS:                 20,
		KubernetesAPIBurst:               50,
		CertificateRequestMinimumBackoff: time.Hour,
		CertificateRequestMaximumBackoff: 32 * time.Hour,
	}
}

func (o *options) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig,
		"kubeconfig of the API server to run against (default $KUBECONFIG; empty means in-cluster)")
	fs.StringVar(&o.ClusterResourceNamespace, "namespace", o.ClusterResourceNamespace,
		"cluster resource namespace: where ClusterIssuers' Secrets live; also the default leader election namespace")
	fs.StringVar(&o.ClusterResourceNamespace, "cluster-resource-namespace", o.ClusterResourceNamespace,
		"alias of --namespace (cert-manager's own flag name)")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "use a Lease to elect a single active controller")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", o.LeaderElectionNamespace,
		"namespace of the leader election Lease (default: --namespace)")
	fs.DurationVar(&o.LeaseDuration, "leader-election-lease-duration", o.LeaseDuration, "leader election lease duration")
	fs.DurationVar(&o.RenewDeadline, "leader-election-renew-deadline", o.RenewDeadline, "leader election renew deadline")
	fs.DurationVar(&o.RetryPeriod, "leader-election-retry-period", o.RetryPeriod, "leader election retry period")
	fs.StringVar(&o.MetricsAddress, "metrics-address", o.MetricsAddress,
		`Prometheus /metrics listen address; "0" disables it, port 0 picks a free port`)
	fs.StringVar(&o.HealthzAddress, "healthz-address", o.HealthzAddress,
		`/livez, /readyz and /healthz listen address; "0" disables it, port 0 picks a free port`)
	fs.Func("controllers", fmt.Sprintf("comma-separated controllers to run (default %q; supported: %q)",
		strings.Join(defaultControllers(), ","), strings.Join(supportedControllers(), ",")),
		func(s string) error {
			o.Controllers = nil
			for _, c := range strings.Split(s, ",") {
				if c = strings.TrimSpace(c); c != "" {
					o.Controllers = append(o.Controllers, c)
				}
			}
			return nil
		})
	fs.IntVar(&o.Workers, "concurrent-workers", o.Workers, "workers per controller")
	fs.Func("kube-api-qps", fmt.Sprintf("client-side QPS limit when API Priority and Fairness is off (default %v)", o.KubernetesAPIQPS),
		func(s string) error {
			var v float32
			_, err := fmt.Sscan(s, &v)
			o.KubernetesAPIQPS = v
			return err
		})
	fs.IntVar(&o.KubernetesAPIBurst, "kube-api-burst", o.KubernetesAPIBurst, "client-side burst when API Priority and Fairness is off")
	fs.DurationVar(&o.CertificateRequestMinimumBackoff, "certificate-request-minimum-backoff-duration",
		o.CertificateRequestMinimumBackoff, "initial delay before a failed issuance is retried")
	fs.DurationVar(&o.CertificateRequestMaximumBackoff, "certificate-request-maximum-backoff-duration",
		o.CertificateRequestMaximumBackoff, "maximum delay before a failed issuance is retried")
	fs.StringVar(&o.FeatureGates, "feature-gates", o.FeatureGates, "cert-manager feature gates, e.g. ServerSideApply=true")
}

// validate checks the options and fills in derived defaults.
func (o *options) validate() error {
	if o.ClusterResourceNamespace == "" {
		return fmt.Errorf("--namespace must not be empty")
	}
	if o.LeaderElectionNamespace == "" {
		o.LeaderElectionNamespace = o.ClusterResourceNamespace
	}
	if len(o.Controllers) == 0 {
		return fmt.Errorf("--controllers must name at least one controller")
	}
	supported := map[string]bool{}
	for _, c := range supportedControllers() {
		supported[c] = true
	}
	for _, c := range o.Controllers {
		if !supported[c] {
			return fmt.Errorf("controller %q is not built into this launcher (supported: %s)", c, strings.Join(supportedControllers(), ", "))
		}
	}
	if o.Workers < 1 {
		return fmt.Errorf("--concurrent-workers must be at least 1")
	}
	if o.CertificateRequestMaximumBackoff < o.CertificateRequestMinimumBackoff {
		return fmt.Errorf("--certificate-request-maximum-backoff-duration must not be below the minimum")
	}
	if o.FeatureGates != "" {
		if err := utilfeature.DefaultMutableFeatureGate.Set(o.FeatureGates); err != nil {
			return fmt.Errorf("--feature-gates: %w", err)
		}
	}
	return nil
}
