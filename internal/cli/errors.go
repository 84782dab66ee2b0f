package cli

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/clientcmd"
)

// explain turns the errors people meet into ones that say what to do.
func explain(err error) error {
	var urlErr *url.Error
	var netErr *net.OpError
	switch {
	case err == nil:
		return nil
	case clientcmd.IsEmptyConfig(err):
		return errors.New("no kubeconfig found: set KUBECONFIG or pass --kubeconfig (render works without a cluster)")
	case meta.IsNoMatchError(err):
		return fmt.Errorf("%w: the cluster lacks this API; install canopy's CRDs (make install, or kubectl apply -k config/crd)"+
			" and, for generated objects, Istio's and cert-manager's", err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%w: ask for the canopy-viewer-role to read Canaries, the canopy-editor-role to request actions", err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%w: your credentials were refused; check them with kubectl auth whoami", err)
	case errors.As(err, &netErr), errors.As(err, &urlErr) && !strings.Contains(err.Error(), "the server"):
		return fmt.Errorf("cannot reach the cluster: %w; check --kubeconfig, --context or KUBECONFIG", err)
	default:
		return err
	}
}

// notFound says a Canary does not exist and how to find the ones that do.
func notFound(ns, name string) error {
	return fmt.Errorf("no Canary %s in namespace %s; list them with kubectl canopy get -A", name, ns)
}
