// Command meshsim runs the mesh traffic simulator against a cluster, outside the tests:
// beside `make run`'s local cluster, it gives the real Prometheus Istio's metrics to
// scrape, as Envoy would.
//
//	go run ./test/meshsim/cmd/meshsim --kubeconfig .canopy/kubeconfig --xds 127.0.0.1:15010 \
//	    --addr 127.0.0.1:9464 --header x-canary=insider --header-fraction 0.2
//
// --xds is istiod's plaintext xDS address: requests are routed by what it sends.
//
// It runs until SIGINT or SIGTERM.
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

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"canopy.dev/canopy/test/meshsim"
)

type headerFlag map[string]string

func (h headerFlag) String() string { return fmt.Sprint(map[string]string(h)) }

func (h headerFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want name=value, got %q", v)
	}
	h[k] = val
	return nil
}

func main() {
	fs := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster to watch")
	addr := fs.String("addr", "127.0.0.1:9464", "where /metrics is served")
	xds := fs.String("xds", "", "istiod's plaintext xDS address, host:port (required)")
	rps := fs.Float64("rps", 50, "synthetic requests per second to every VirtualService host")
	tick := fs.Duration("tick", time.Second, "how often traffic is generated")
	headers := headerFlag{}
	fs.Var(headers, "header", "name=value carried by --header-fraction of the requests (repeatable), e.g. x-canary=insider or cookie=user=test")
	fraction := fs.Float64("header-fraction", 0, "fraction of requests carrying the --header values (default 0.5 when any is given)")
	namespaces := fs.String("namespaces", "", "comma-separated namespaces to watch (default: all)")
	_ = fs.Parse(os.Args[1:]) // ExitOnError

	log := zap.New()
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "meshsim: %v\n", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := meshsim.Options{
		RequestsPerSecond: *rps,
		TickInterval:      *tick,
		Headers:           headers,
		HeaderFraction:    *fraction,
		Addr:              *addr,
		XDSAddress:        *xds,
		Logger:            log,
	}
	for _, ns := range strings.Split(*namespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			opts.Namespaces = append(opts.Namespaces, ns)
		}
	}
	sim, err := meshsim.Start(ctx, cfg, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "meshsim: %v\n", err)
		os.Exit(1)
	}
	log.Info("Serving Istio's metrics", "url", "http://"+sim.Addr()+"/metrics")
	<-sim.Done()
}
