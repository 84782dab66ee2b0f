package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"canopy.dev/canopy/internal/cli"
	"canopy.dev/canopy/internal/dashboard"
)

// startDashboard runs kubectl canopy dashboard (in this process) on the demo's cluster and
// returns its URL once it listens. It starts before the scenario, so the weight history it
// keeps from the watch covers the whole of it (the demo's Prometheus scrapes the mesh
// simulator, not the operator, so it has no canopy_canary_weight to chart).
func startDashboard(ctx context.Context, kubeconfig, addr string) (string, error) {
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- cli.Main(ctx, []string{"dashboard", "--kubeconfig", kubeconfig, "--address", addr},
			cli.IOStreams{In: strings.NewReader(""), Out: pw, ErrOut: os.Stderr})
		_ = pw.Close()
	}()
	urls := dashboard.URLFrom(pr)
	select {
	case u := <-urls:
		return u, nil
	case code := <-done:
		return "", fmt.Errorf("kubectl canopy dashboard exited %d (is %s in use? run make run RUN_ARGS=-dashboard=127.0.0.1:0)", code, addr)
	case <-time.After(time.Minute):
		return "", fmt.Errorf("kubectl canopy dashboard printed no URL within a minute")
	}
}
