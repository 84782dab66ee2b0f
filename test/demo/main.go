// Command demo is canopy's main job on the embedded local cluster (`make run` without a
// KUBECONFIG): it starts the local cluster, Prometheus and the mesh traffic simulator (the
// stand-in for Envoy), runs the operator, applies config/samples and plays the seeds'
// scenario: Bookinfo's reviews v1 -> v2 promoted step by step, then a bad v3 rolled back,
// with live progress. Then it leaves everything running for kubectl until Ctrl-C.
//
// It lives under test/ because it uses the simulator, which only test tooling may import.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/meshsim"
	"canopy.dev/canopy/test/testenv"
)

func main() {
	fs := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", ".canopy/kubeconfig", "where to write the local cluster's admin kubeconfig")
	samples := fs.String("samples", "config/samples", "directory of manifests to apply (its kustomization.yaml's resources)")
	scenario := fs.Bool("scenario", true, "play the Bookinfo scenario: v2 promoted, bad v3 rolled back")
	fast := fs.Bool("fast", true, "shorten the sample Canary's intervals (10s steps) so the scenario takes minutes")
	verbose := fs.Bool("v", false, "print the operator's logs")
	dashboardAddr := fs.String("dashboard", "127.0.0.1:3200", "where kubectl canopy dashboard serves the demo's web UI (empty: do not start it)")
	_ = fs.Parse(os.Args[1:])

	if *verbose {
		ctrl.SetLogger(zap.New())
	} else {
		ctrl.SetLogger(logr.Discard())
	}
	if err := run(*kubeconfig, *samples, *scenario, *fast, *dashboardAddr); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run(kubeconfig, samples string, scenario, fast bool, dashboardAddr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	say("starting the local cluster (kube-apiserver, etcd, controller-manager, scheduler, kwok, cert-manager, istiod)")
	env, err := testenv.Start(testenv.Options{LocalCluster: true, CertManager: true, Istio: true})
	if err != nil {
		return err
	}
	defer func() {
		say("stopping the local cluster")
		_ = env.Stop()
	}()
	if err := os.MkdirAll(filepath.Dir(kubeconfig), 0o755); err != nil {
		return err
	}
	if err := env.WriteKubeconfig(kubeconfig); err != nil {
		return err
	}
	defer func() { _ = os.Remove(kubeconfig) }() // it points at a port nothing listens on once we stop

	say("starting the mesh traffic simulator and Prometheus")
	sim, err := meshsim.Start(ctx, env.Config, meshsim.Options{RequestsPerSecond: 50, XDSAddress: env.Istio.XDSAddress})
	if err != nil {
		return err
	}
	prom, err := testenv.StartPrometheus(testenv.PrometheusOptions{Targets: []string{sim.Addr()}, ScrapeInterval: time.Second})
	if err != nil {
		return err
	}
	defer func() { _ = prom.Close() }()

	say("starting canopy")
	opCtx, stopOperator := context.WithCancel(ctx)
	opDone := make(chan error, 1)
	go func() {
		opDone <- manager.Run(opCtx, env.Config, manager.Options{
			InProcess:   true,
			MetricsAddr: "127.0.0.1:0", ProbeAddr: "127.0.0.1:0", MaxConcurrent: 4, QPS: 100, Burst: 200,
			PrometheusAddress: prom.URL(),
			// What config/samples/shop.yaml claims beyond its namespace (docs/security.md):
			// istio-system's gateway, the shop-ca ClusterIssuer, its storefront's host and the
			// card processor it calls.
			AllowedGatewayNamespaces: "istio-system", AllowedClusterIssuers: "shop-ca",
			AllowedHosts: "shop:shop.example.com", AllowedExternalHosts: "shop:api.card-processor.example.com",
			// The demo's Prometheus, like every server of the local cluster, listens on
			// loopback, which the URL policies refuse by default: a MetricTemplate or Canary
			// of the demo may name it (the API server's own address stays refused).
			MetricsProviderAllowedCIDRs: "127.0.0.0/8",
		})
	}()
	defer func() {
		stopOperator()
		if err := <-opDone; err != nil {
			fmt.Fprintf(os.Stderr, "demo: the operator stopped with an error: %v\n", err)
		}
	}()

	// What an Istio and cert-manager installation would have: their namespaces.
	if err := ensureNamespaces(ctx, env, "istio-system", testenv.DefaultClusterResourceNamespace); err != nil {
		return err
	}
	if err := applySamples(ctx, env, samples, fast); err != nil {
		return err
	}
	// The shop's certificate authority, for the ingress certificate of the shop sample.
	if err := applyFile(ctx, env, filepath.Join(samples, "shop-ca.yaml"), fast); err != nil {
		return err
	}
	abs, _ := filepath.Abs(kubeconfig)
	bin, err := testenv.BinDir()
	if err != nil {
		return err
	}
	dashboardURL := "not started (-dashboard is empty)"
	if dashboardAddr != "" {
		if dashboardURL, err = startDashboard(ctx, abs, dashboardAddr); err != nil {
			dashboardURL = fmt.Sprintf("not started: %v", err)
		}
	}
	fmt.Printf(`
canopy is running on the local cluster, with istiod (%s) as istio-system's control plane.
  kubeconfig:  %s
  Prometheus:  %s
  dashboard:   %s
               open it in a browser to watch the Bookinfo rollout and rollback live; the same
               as: go run ./cmd/kubectl-canopy dashboard --kubeconfig %s
  try:         kubectl --kubeconfig %s get canaries -A
               %s analyze --kubeconfig %s --all-namespaces

`, env.Istio.XDSAddress, abs, prom.URL(), dashboardURL, abs, abs, filepath.Join(bin, "istioctl"), abs)

	if scenario {
		if err := playBookinfo(ctx, env); err != nil {
			return err
		}
		if err := reportPolicies(ctx, env); err != nil {
			return err
		}
		if err := reportIstioAnalysis(ctx, env, "bookinfo", "shop"); err != nil {
			return err
		}
	}
	say("everything keeps running; press Ctrl-C to stop")
	select {
	case <-ctx.Done():
		return nil
	case err := <-opDone:
		opDone <- err
		return fmt.Errorf("the operator stopped: %w", err)
	}
}

func say(format string, args ...any) {
	fmt.Printf("%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
