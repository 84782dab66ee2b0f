// Command kubectl-canopy is the kubectl plugin of canopy: put it on the PATH and run
// kubectl canopy get|status|promote|abort|pause|resume|retry|render|diff|dashboard.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"canopy.dev/canopy/internal/cli"
)

func main() {
	// controller-runtime's client logs nothing a plugin user needs, and warns on stderr
	// when no logger was set.
	ctrllog.SetLogger(logr.Discard())
	// Nor client-go's informers (the dashboard's), which log each refused watch again and
	// again: the dashboard shows the refusal on its page.
	klog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	stop()
	os.Exit(code)
}
