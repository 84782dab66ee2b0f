// Command localcluster runs canopy's local cluster outside the tests, for `make run` and
// for poking at by hand: envtest's kube-apiserver and etcd with canopy's, Istio's and
// cert-manager's CRDs, kube-controller-manager, kube-scheduler and kwok with one fake
// Node, and optionally cert-manager's controllers and Prometheus. Everything listens on
// 127.0.0.1. It runs until SIGINT or SIGTERM, then stops everything.
//
//	go run ./hack/localcluster --kubeconfig .canopy/kubeconfig --ready-file .canopy/ready --cert-manager
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"canopy.dev/canopy/test/testenv"
)

func main() {
	// Not the global flag set: controller-runtime registers its own --kubeconfig there.
	fs := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", ".canopy/kubeconfig", "where to write the admin kubeconfig")
	readyFile := fs.String("ready-file", "",
		"file written once the cluster is up (shell assignments: KUBECONFIG, PROMETHEUS_URL, STATE_DIR); removed on exit")
	stateDir := fs.String("state-dir", "", "directory for logs and etcd's data (default: a temporary directory, removed on exit)")
	certManager := fs.Bool("cert-manager", false, "run cert-manager's controllers (SelfSigned and CA issuers)")
	prometheus := fs.Bool("prometheus", false, "run Prometheus")
	istio := fs.Bool("istio", false, "run istiod as istio-system's control plane, with its validating webhook and sidecar injector")
	targets := fs.String("prometheus-targets", "", "comma-separated host:port targets Prometheus scrapes at /metrics")
	scrapeInterval := fs.Duration("scrape-interval", time.Second, "Prometheus' scrape interval")
	exitWithParent := fs.Bool("exit-with-parent", true,
		"stop when the parent process exits (so stopping `go run` stops the cluster); false to leave it running in the background")
	_ = fs.Parse(os.Args[1:]) // ExitOnError
	if *exitWithParent {
		stopWithParent()
	}

	if err := run(*kubeconfig, *readyFile, *stateDir, *certManager, *istio, *prometheus, *targets, *scrapeInterval); err != nil {
		fmt.Fprintf(os.Stderr, "localcluster: %v\n", err)
		os.Exit(1)
	}
}

func run(kubeconfig, readyFile, stateDir string, certManager, istio, prometheus bool, targets string, scrapeInterval time.Duration) error {
	// Listen for signals before starting, so that a Ctrl-C during startup still stops
	// what was started.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	env, err := testenv.Start(testenv.Options{LocalCluster: true, CertManager: certManager, Istio: istio, StateDir: stateDir})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("stopping the local cluster")
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "localcluster: stopping: %v\n", err)
		}
	}()
	if err := env.WriteKubeconfig(kubeconfig); err != nil {
		return err
	}
	// It points at a port nothing listens on once we stop.
	defer func() { _ = os.Remove(kubeconfig) }() //nolint:gosec // G703: a path from our own command line

	promURL := ""
	if prometheus {
		var list []string
		if targets != "" {
			list = strings.Split(targets, ",")
		}
		prom, err := testenv.StartPrometheus(testenv.PrometheusOptions{
			Targets:        list,
			ScrapeInterval: scrapeInterval,
			StateDir:       subdir(stateDir, "prometheus"),
		})
		if err != nil {
			return err
		}
		defer func() {
			if err := prom.Close(); err != nil {
				fmt.Fprintf(os.Stderr, "localcluster: stopping prometheus: %v\n", err)
			}
		}()
		promURL = prom.URL()
	}

	abs, err := filepath.Abs(kubeconfig)
	if err != nil {
		return err
	}
	fmt.Printf("local cluster up in %s; logs in %s\n", time.Since(start).Round(100*time.Millisecond), filepath.Join(env.StateDir, "logs"))
	fmt.Printf("kubeconfig: %s\n  kubectl --kubeconfig %s get canaries -A\n", abs, kubeconfig)
	if certManager {
		fmt.Printf("cert-manager: running (ClusterIssuer secrets in namespace %s)\n", testenv.DefaultClusterResourceNamespace)
	}
	if promURL != "" {
		fmt.Printf("prometheus: %s\n", promURL)
	}
	if readyFile != "" {
		ready := fmt.Sprintf("KUBECONFIG=%q\nPROMETHEUS_URL=%q\nSTATE_DIR=%q\n", abs, promURL, env.StateDir)
		if err := os.MkdirAll(filepath.Dir(readyFile), 0o750); err != nil { //nolint:gosec // G703: as above
			return err
		}
		if err := os.WriteFile(readyFile, []byte(ready), 0o600); err != nil { //nolint:gosec // G703: as above
			return err
		}
		defer func() { _ = os.Remove(readyFile) }() //nolint:gosec // G703: as above
	}
	fmt.Println("running; press Ctrl-C to stop")
	<-ctx.Done()
	return nil
}

// subdir returns dir/name, or "" (a temporary directory) when dir is "".
func subdir(dir, name string) string {
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, name)
}
