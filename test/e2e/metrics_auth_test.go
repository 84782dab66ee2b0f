package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

// The secure metrics endpoint (--metrics-secure, as the chart and config/default run it)
// answers only a scrape whose bearer token the apiserver authenticates and whose identity
// holds config/rbac's metrics-reader role: not one without a token (401), with a token the
// apiserver does not know (500, controller-runtime's answer to the review's error), nor one
// whose service account lacks the role (403).
func TestSecureMetricsNeedTheMetricsReaderRole(t *testing.T) {
	testenv.SkipIfShort(t)
	ctx := t.Context()
	ns := env.CreateNamespace(t)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	startOperator(t, manager.Options{MetricsAddr: addr, SecureMetrics: true})

	bindClusterRole(t, "metrics_reader_role.yaml", "canopy-metrics-reader-"+ns, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "prometheus"})
	for _, name := range []string{"prometheus", "someone"} {
		if err := env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	prometheus, someone := serviceAccountToken(t, ns, "prometheus"), serviceAccountToken(t, ns, "someone")

	// The endpoint serves once the manager has started; the authorized scrape is the probe.
	var body string
	testenv.Eventually(t, time.Minute, func() error {
		code, b, err := scrapeAs(t, addr, prometheus)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("a scrape with the metrics-reader role: %d %s", code, b)
		}
		body = b
		return nil
	})
	if !strings.Contains(body, "controller_runtime_reconcile_total") {
		t.Fatalf("the authorized scrape has no controller metrics:\n%.500s", body)
	}
	for _, c := range []struct {
		who, token string
		want       int
	}{
		{"without a token", "", http.StatusUnauthorized},
		// The apiserver's TokenReview answers with an error, which controller-runtime's
		// filter reports as its own failure.
		{"with a token that is no token", "not-a-token", http.StatusInternalServerError},
		{"as a service account without the metrics-reader role", someone, http.StatusForbidden},
	} {
		code, b, err := scrapeAs(t, addr, c.token)
		if err != nil {
			t.Fatalf("scrape %s: %v", c.who, err)
		}
		if code != c.want || strings.Contains(b, "controller_runtime") {
			t.Errorf("scrape %s: %d, want %d, and no metrics; body:\n%.300s", c.who, code, c.want, b)
		}
	}
}

// serviceAccountToken asks the apiserver for a short-lived token of the ServiceAccount.
func serviceAccountToken(t *testing.T, ns, name string) string {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(env.Config)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a token for %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

// scrapeAs GETs /metrics over HTTPS with the bearer token ("" sends none). The manager's
// certificate is self-signed by controller-runtime, as the chart's ServiceMonitor says.
func scrapeAs(t *testing.T, addr, token string) (int, string, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/metrics", nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // a self-signed test certificate
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
