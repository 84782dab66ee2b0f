// Command certmanager runs cert-manager's certificate controllers against a cluster, for
// canopy's tests and local cluster.
//
// cert-manager's controller binary lives in a separate module (cmd/controller) that is not
// published on the Go module proxy, so this runner assembles the same controllers from the
// github.com/cert-manager/cert-manager module. Only the SelfSigned and CA issuers are wired:
// they are what canopy's mTLS certificates need, and they work without network access.
// There is no webhook, so Certificates must name issuerRef.kind and issuerRef.group.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"

	// Each controller package registers itself with controllerpkg in its init().
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"

	// The issuers controllers look issuer implementations up in a registry these fill;
	// without them (Cluster)Issuers of these types never become Ready.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// controllers are the ones a SelfSigned -> CA chain needs. The approver matters: without it
// every CertificateRequest waits for an approval that never comes.
var controllers = []string{
	"issuers",
	"clusterissuers",
	"certificaterequests-approver",
	"certificaterequests-issuer-selfsigned",
	"certificaterequests-issuer-ca",
	"certificates-trigger",
	"certificates-key-manager",
	"certificates-request-manager",
	"certificates-issuing",
	"certificates-readiness",
	"certificates-revision-manager",
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "path to the kubeconfig of the cluster (empty: in-cluster config)")
	clusterNamespace := flag.String("cluster-resource-namespace", "cert-manager",
		"namespace where ClusterIssuers read their Secrets")
	workers := flag.Int("workers", 5, "workers per controller")
	readyFile := flag.String("ready-file", "", "file written once the controllers' caches are synced")
	klog.InitFlags(nil)
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, klog.Background(), "cert-manager")

	if err := run(ctx, *kubeconfig, *clusterNamespace, *workers, *readyFile); err != nil {
		klog.ErrorS(err, "cert-manager runner failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(ctx context.Context, kubeconfig, clusterNamespace string, workers int, readyFile string) error {
	// These defaults normally come from cmd/controller's options; the values match its defaults.
	factory, err := controllerpkg.NewContextFactory(ctx, controllerpkg.ContextOptions{
		Kubeconfig:         kubeconfig,
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
		IssuerOptions: controllerpkg.IssuerOptions{
			ClusterResourceNamespace:        clusterNamespace,
			ClusterIssuerAmbientCredentials: true,
		},
		CertificateOptions: controllerpkg.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
		SchedulerOptions: controllerpkg.SchedulerOptions{MaxConcurrentChallenges: 60},
	})
	if err != nil {
		return fmt.Errorf("building controller context: %w", err)
	}
	base, err := factory.Build()
	if err != nil {
		return fmt.Errorf("building controller context: %w", err)
	}

	known := controllerpkg.Known()
	var wg sync.WaitGroup
	errs := make(chan error, len(controllers))
	for _, name := range controllers {
		construct, ok := known[name]
		if !ok {
			return fmt.Errorf("controller %q is not registered (registered: %v)", name, sortedKeys(known))
		}
		// Constructing a controller registers the informers it needs, so every controller
		// must exist before the informer factories start.
		iface, err := construct(factory)
		if err != nil {
			return fmt.Errorf("constructing controller %q: %w", name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := iface.Run(workers, ctx); err != nil {
				errs <- fmt.Errorf("controller %q: %w", name, err)
			}
		}()
	}

	base.SharedInformerFactory.Start(ctx.Done())
	base.KubeSharedInformerFactory.Start(ctx.Done())
	base.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())

	if err := waitForSync(ctx, base); err != nil {
		return err
	}
	klog.InfoS("cert-manager controllers started", "controllers", controllers,
		"clusterResourceNamespace", clusterNamespace)
	if readyFile != "" {
		if err := os.WriteFile(readyFile, []byte("ready\n"), 0o600); err != nil {
			return fmt.Errorf("writing ready file: %w", err)
		}
	}

	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
	}
	wg.Wait()
	return nil
}

// waitForSync waits until the informers the controllers registered hold the cluster's state,
// so that "ready" means Certificates created from now on are seen.
func waitForSync(ctx context.Context, base *controllerpkg.Context) error {
	for typ, ok := range base.SharedInformerFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("cache for %v did not sync", typ)
		}
	}
	for typ, ok := range base.KubeSharedInformerFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("cache for %v did not sync", typ)
		}
	}
	for typ, ok := range base.HTTP01ResourceMetadataInformersFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("metadata cache for %v did not sync", typ)
		}
	}
	return nil
}

func sortedKeys(m map[string]controllerpkg.Constructor) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
