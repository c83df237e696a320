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

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
)

const (
	leaseName       = "cert-manager-controller"
	shutdownTimeout = 5 * time.Second
)

// copiedAnnotationPrefixes is which Certificate annotations reach CertificateRequests
// (cert-manager's default: all but those written by kubectl, Flux and Argo CD).
var copiedAnnotationPrefixes = []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"}

// run starts the selected controllers and blocks until ctx ends or one of them fails.
// It returns nil after a clean shutdown.
func run(ctx context.Context, o *options) error {
	if err := o.validate(); err != nil {
		return err
	}
	log := logf.FromContext(ctx)

	g, ctx := errgroup.WithContext(ctx)

	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig:         o.Kubeconfig,
		KubernetesAPIQPS:   o.KubernetesAPIQPS,
		KubernetesAPIBurst: o.KubernetesAPIBurst,
		Namespace:          "", // watch every namespace
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace:        o.ClusterResourceNamespace,
			ClusterIssuerAmbientCredentials: true, // cert-manager's default; unused by SelfSigned/CA
		},
		CertificateOptions: controller.CertificateOptions{
			CopiedAnnotationPrefixes:                 copiedAnnotationPrefixes,
			CertificateRequestMinimumBackoffDuration: o.CertificateRequestMinimumBackoff,
			CertificateRequestMaximumBackoffDuration: o.CertificateRequestMaximumBackoff,
		},
	})
	if err != nil {
		return fmt.Errorf("building controller context: %w", err)
	}
	// The base context shares the informer factories and metrics with every controller's.
	base, err := factory.Build()
	if err != nil {
		return fmt.Errorf("building controller context: %w", err)
	}

	if err := serveMetrics(ctx, g, o.MetricsAddress, base); err != nil {
		return err
	}
	// From here on, failures stop the goroutines already started before returning.
	var ready atomic.Bool
	leaderHealth := leaderelection.NewLeaderHealthzAdaptor(20 * time.Second)
	if err := serveHealthz(ctx, g, o.HealthzAddress, leaderHealth, &ready); err != nil {
		return errors.Join(err, stopAndWait(g))
	}

	if o.LeaderElect {
		elected, err := electLeader(ctx, g, o, factory, leaderHealth)
		if err != nil {
			return errors.Join(err, stopAndWait(g))
		}
		select {
		case <-elected:
		case <-ctx.Done():
			return ignoreCanceled(g.Wait())
		}
	}

	known := controller.Known()
	for _, name := range o.Controllers {
		ctrl, err := known[name](factory)
		if err != nil {
			return errors.Join(fmt.Errorf("creating controller %s: %w", name, err), stopAndWait(g))
		}
		g.Go(func() error {
			log.V(logf.InfoLevel).Info("starting controller", "controller", name)
			if err := ctrl.Run(o.Workers, ctx); err != nil {
				return fmt.Errorf("controller %s: %w", name, err)
			}
			return nil
		})
	}

	// Controllers registered their informers while being created; start them all now.
	base.SharedInformerFactory.Start(ctx.Done())
	base.KubeSharedInformerFactory.Start(ctx.Done())
	base.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	g.Go(func() error {
		synced := true
		for _, ok := range base.SharedInformerFactory.WaitForCacheSync(ctx.Done()) {
			synced = synced && ok
		}
		for _, ok := range base.KubeSharedInformerFactory.WaitForCacheSync(ctx.Done()) {
			synced = synced && ok
		}
		if !synced {
			return nil // only happens when ctx ends first: shutting down
		}
		ready.Store(true)
		log.Info("cert-manager controllers running", "controllers", o.Controllers,
			"clusterResourceNamespace", o.ClusterResourceNamespace)
		if o.onReady != nil {
			o.onReady()
		}
		return nil
	})

	err = g.Wait()
	base.SharedInformerFactory.Shutdown()
	base.KubeSharedInformerFactory.Shutdown()
	base.HTTP01ResourceMetadataInformersFactory.Shutdown()
	return ignoreCanceled(err)
}

// ignoreCanceled maps the errors of an orderly shutdown to nil.
func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// stopAndWait is for failures after goroutines were started: the errgroup's context is
// cancelled by returning an error from a goroutine, then everything is waited for.
func stopAndWait(g *errgroup.Group) error {
	g.Go(func() error { return context.Canceled })
	return ignoreCanceled(g.Wait())
}

// listen opens addr, or returns nil for "0"/"" (server disabled).
func listen(what, addr string) (net.Listener, error) {
	if addr == "" || addr == "0" {
		return nil, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for %s on %s: %w", what, addr, err)
	}
	return l, nil
}

// serve runs srv on l until ctx ends.
func serve(ctx context.Context, g *errgroup.Group, srv *http.Server, l net.Listener) {
	g.Go(func() error {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		return srv.Shutdown(shutdownCtx) //nolint:contextcheck // ctx is already done
	})
}

func serveMetrics(ctx context.Context, g *errgroup.Group, addr string, base *controller.Context) error {
	l, err := listen("metrics", addr)
	if err != nil || l == nil {
		return err
	}
	logf.FromContext(ctx).Info("serving metrics", "address", "http://"+l.Addr().String()+"/metrics")
	serve(ctx, g, base.Metrics.NewServer(l), l)
	return nil
}

// serveHealthz serves /livez (process and leader lease health), /readyz (controllers
// running and caches synced) and /healthz (both).
func serveHealthz(ctx context.Context, g *errgroup.Group, addr string, leader *leaderelection.HealthzAdaptor, ready *atomic.Bool) error {
	l, err := listen("health checks", addr)
	if err != nil || l == nil {
		return err
	}
	started := healthz.NamedCheck("controllers", func(*http.Request) error {
		if !ready.Load() {
			return errors.New("controllers not started or informer caches not synced")
		}
		return nil
	})
	mux := http.NewServeMux()
	healthz.InstallLivezHandler(mux, leader)
	healthz.InstallReadyzHandler(mux, started)
	healthz.InstallHandler(mux, leader, started)
	logf.FromContext(ctx).Info("serving health checks", "address", "http://"+l.Addr().String()+"/readyz")
	serve(ctx, g, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, l)
	return nil
}

// electLeader campaigns for the Lease in the background; the returned channel closes once
// this process leads. Losing the lease afterwards stops run with an error.
func electLeader(ctx context.Context, g *errgroup.Group, o *options, factory *controller.ContextFactory, health *leaderelection.HealthzAdaptor) (<-chan struct{}, error) {
	lctx, err := factory.Build("leader-election")
	if err != nil {
		return nil, err
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("leader election identity: %w", err)
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, o.LeaderElectionNamespace, leaseName,
		lctx.Client.CoreV1(), lctx.Client.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: host + "_" + rand.String(8), EventRecorder: lctx.Recorder})
	if err != nil {
		return nil, fmt.Errorf("leader election lock: %w", err)
	}
	elected := make(chan struct{})
	lost := make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            leaseName,
		LeaseDuration:   o.LeaseDuration,
		RenewDeadline:   o.RenewDeadline,
		RetryPeriod:     o.RetryPeriod,
		ReleaseOnCancel: true,
		WatchDog:        health,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { close(elected) },
			OnStoppedLeading: func() { close(lost) },
		},
	})
	if err != nil {
		return nil, err
	}
	logf.FromContext(ctx).Info("waiting for leadership", "lease", o.LeaderElectionNamespace+"/"+leaseName)
	g.Go(func() error {
		le.Run(ctx) // returns when ctx ends or the lease is lost
		if ctx.Err() != nil {
			return nil
		}
		<-lost
		return errors.New("leader election lost")
	})
	return elected, nil
}
