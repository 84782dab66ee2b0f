package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultClusterResourceNamespace is where ClusterIssuers read their Secrets (a CA
// ClusterIssuer's key pair) unless CertManagerOptions say otherwise.
const DefaultClusterResourceNamespace = "cert-manager"

// CertManagerOptions configure StartCertManager.
type CertManagerOptions struct {
	// ClusterResourceNamespace defaults to DefaultClusterResourceNamespace; it is created
	// if missing.
	ClusterResourceNamespace string
}

// CertManager is bin/cert-manager (hack/tools/certmanager): cert-manager's certificate
// controllers with the SelfSigned and CA issuers. No webhook runs, so Certificates must
// set issuerRef.kind and issuerRef.group.
type CertManager struct {
	proc *process
}

// StartCertManager runs cert-manager's controllers against the cluster and returns once
// their caches are synced. Env.Stop stops them too. Run at most one per cluster: the
// controllers do not elect a leader.
func (e *Env) StartCertManager(opts CertManagerOptions) (*CertManager, error) {
	path, err := binary("cert-manager")
	if err != nil {
		return nil, err
	}
	ns := opts.ClusterResourceNamespace
	if ns == "" {
		ns = DefaultClusterResourceNamespace
	}
	err = e.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating namespace %s: %w", ns, err)
	}

	ready := filepath.Join(e.StateDir, "cert-manager.ready")
	if err := os.Remove(ready); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	proc, err := startProcess("cert-manager", filepath.Join(e.logDir(), "cert-manager.log"), path,
		"--kubeconfig="+e.Kubeconfig, "--cluster-resource-namespace="+ns, "--ready-file="+ready)
	if err != nil {
		return nil, err
	}
	e.addChild(proc)
	err = waitFor("cert-manager's caches to sync", func() error {
		_, err := os.Stat(ready)
		return err
	}, proc)
	if err != nil {
		_ = proc.stop(5 * time.Second)
		return nil, err
	}
	return &CertManager{proc: proc}, nil
}

// Stop stops the controllers; it returns an error if they had exited on their own.
func (c *CertManager) Stop() error { return c.proc.stop(10 * time.Second) }
