package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

// Issue 19, item 1: a tenant points a check's provider at an address of the operator's
// network. With the default policy every such address is refused before anything is dialed:
// loopback (the receiver here, standing for a service on the operator's node), the metadata
// service and a private address (both refused by the policy's decision: nothing is sent off
// this machine). The status names the field.
func TestTenantProviderAddressRefused(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	tc := tenantClient(t, ns)
	startOperator(t, manager.Options{WatchNamespaces: ns})
	internal := newReceiver(t, nil)

	c := providerCanary(ns, "reviews", internal.URL)
	withTemplates(t, tc, c, map[string]meshv1.MetricProvider{
		"metadata": {Address: "http://169.254.169.254/latest/meta-data/iam/security-credentials/"},
		"private":  {Address: "http://10.0.0.1:9090"},
	})
	startRollout(t, tc, c)

	waitCheck(t, ns, "reviews", "request-success-rate", "spec.analysis.provider.address", "refused range 127.0.0.0/8 (loopback)")
	waitCheck(t, ns, "reviews", "metadata", "MetricTemplate "+ns+"/metadata spec.provider.address", "refused range 169.254.0.0/16")
	waitCheck(t, ns, "reviews", "private", "MetricTemplate "+ns+"/private spec.provider.address", "refused range 10.0.0.0/8 (private)")
	if got := internal.requests(); len(got) != 0 {
		t.Errorf("the operator queried the loopback address %d times", len(got))
	}
	expectNowhere(t, ns, "reviews", "security-credentials")
}

// Item 1, with loopback allowed (an operator whose Prometheus is there): a provider that
// redirects to another service is not followed, an answer that is not Prometheus' never
// reaches the status or events, and the API server stays refused though its address is in
// the allowed range.
func TestTenantProviderRedirectsAndAnswers(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	tc := tenantClient(t, ns)
	startOperator(t, manager.Options{WatchNamespaces: ns, MetricsProviderAllowedCIDRs: "127.0.0.0/8"})
	metadata := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"100"]}]}}`))
	})
	redirect := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, metadata.URL+"/latest/meta-data/?"+r.URL.RawQuery, http.StatusFound)
	})
	leaky := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("AKIAINTERNALSECRET root:x:0:0"))
	})
	apiserver, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	c := providerCanary(ns, "reviews", redirect.URL)
	withTemplates(t, tc, c, map[string]meshv1.MetricProvider{
		"leaky":     {Address: leaky.URL},
		"apiserver": {Address: "https://" + apiserver.Host, InsecureSkipVerify: true},
	})
	startRollout(t, tc, c)

	waitCheck(t, ns, "reviews", "request-success-rate", "answer 302", "not followed")
	waitCheck(t, ns, "reviews", "leaky", "not a Prometheus API answer", "text/plain")
	waitCheck(t, ns, "reviews", "apiserver", "spec.provider.address", "the API server's address")
	if len(redirect.requests()) == 0 {
		t.Fatal("the redirecting provider was never queried: the test proves nothing")
	}
	if got := metadata.requests(); len(got) != 0 {
		t.Errorf("the redirect was followed %d times: %+v", len(got), got)
	}
	expectNowhere(t, ns, "reviews", "AKIAINTERNALSECRET", "root:x", metadata.URL, "meta-data")
}

// Item 2: a tenant names a Secret in provider.secretRef, and points the provider at its own
// host. canopy reads Secrets with its own rights; it must not send a ServiceAccount token,
// a Secret that did not opt in, or any credentials to a host the operator did not allow.
func TestTenantSecretsStayHome(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	tc := tenantClient(t, ns)
	// The attacker's host is allowed as a provider, so only the credential rules stand in
	// the way; credentials may go to one other host only.
	startOperator(t, manager.Options{WatchNamespaces: ns, MetricsProviderAllowedCIDRs: "127.0.0.0/8", CredentialAllowedHosts: "prometheus.monitoring.svc"})
	attacker := newReceiver(t, nil)

	createTenantSecrets(t, tc, ns)
	optedIn := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "prom", Labels: map[string]string{meshv1.LabelCredentials: "true"}},
		StringData: map[string]string{"token": "prom-token"}}
	if err := tc.Create(t.Context(), optedIn); err != nil {
		t.Fatal(err)
	}
	// Three rollouts, one per Secret, and a fourth without one: it shows the attacker's
	// host is queried at all, so that "no credentials arrived" means something.
	cases := map[string][]string{
		"sa-token": {"spec.analysis.provider.secretRef", "not a host credentials may be sent to"},
		"app-db":   {"spec.analysis.provider.secretRef", "not a host credentials may be sent to"},
		"prom":     {"spec.analysis.provider.secretRef", "not a host credentials may be sent to"},
	}
	for name := range cases {
		c := providerCanary(ns, name, attacker.URL)
		c.Spec.Analysis.Provider.SecretRef = &meshv1.LocalObjectReference{Name: name}
		startRollout(t, tc, c)
	}
	startRollout(t, tc, providerCanary(ns, "control", attacker.URL))
	for name, want := range cases {
		waitCheck(t, ns, name, "request-success-rate", want...)
	}
	waitCheck(t, ns, "control", "request-success-rate")
	seen := attacker.requests()
	if len(seen) == 0 {
		t.Fatal("the attacker's host was never queried: the test proves nothing")
	}
	for _, r := range seen {
		if r.auth != "" {
			t.Errorf("the attacker's host received Authorization %q", r.auth)
		}
	}
	for name := range cases {
		expectNowhere(t, ns, name, "db-password", "prom-token")
	}
}

// Item 2, the Secret's own rules, with the attacker's host allowed for credentials (an
// operator's mistake): a Secret that did not opt in and a ServiceAccount token are still
// never sent, and a webhook header follows the same rules.
func TestTenantSecretsNeedOptIn(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	tc := tenantClient(t, ns)
	startOperator(t, manager.Options{
		WatchNamespaces: ns, MetricsProviderAllowedCIDRs: "127.0.0.0/8", WebhookAllowedCIDRs: "127.0.0.0/8", CredentialAllowedHosts: "127.0.0.1",
	})
	attacker := newReceiver(t, nil)
	createTenantSecrets(t, tc, ns)
	for name, want := range map[string]string{"sa-token": "is a ServiceAccount token", "app-db": "is not labelled mesh.canopy.dev/credentials=true"} {
		c := providerCanary(ns, name, attacker.URL)
		c.Spec.Analysis.Provider.SecretRef = &meshv1.LocalObjectReference{Name: name}
		startRollout(t, tc, c)
		waitCheck(t, ns, name, "request-success-rate", "spec.analysis.provider.secretRef", want)
	}
	hook := providerCanary(ns, "hooked", attacker.URL)
	hook.Spec.Analysis.Webhooks = []meshv1.CanaryWebhook{{
		Name: "gate", Type: meshv1.WebhookConfirmRollout, URL: attacker.URL + "/gate",
		Header: &meshv1.WebhookHeader{Name: "X-Token", SecretKeyRef: meshv1.SecretKeyReference{Name: "sa-token", Key: "token"}},
	}}
	startRollout(t, tc, hook)
	waitGate(t, ns, "hooked", "gate", "header.secretKeyRef", "is a ServiceAccount token")
	for _, r := range attacker.requests() {
		if r.auth != "" || r.header != "" || r.path == "/gate" {
			t.Errorf("the attacker's host received %+v", r)
		}
	}
}

// Item 6: a tenant's webhook to the API server (its address is in the allowed loopback
// range) or to a private address is refused, and the status shows neither the URL's path
// nor its query, where tokens sit.
func TestTenantWebhookInsideTheCluster(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	tc := tenantClient(t, ns)
	startOperator(t, manager.Options{WatchNamespaces: ns, WebhookAllowedCIDRs: "127.0.0.0/8", MetricsProviderAllowedCIDRs: "127.0.0.0/8"})
	prom := newReceiver(t, nil)
	apiserver, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	c := providerCanary(ns, "reviews", prom.URL)
	c.Spec.Analysis.Webhooks = []meshv1.CanaryWebhook{
		{Name: "apiserver", Type: meshv1.WebhookConfirmRollout, URL: "https://" + apiserver.Host + "/api/v1/namespaces/kube-system/secrets?token=t0k3n-a"},
		{Name: "private", Type: meshv1.WebhookConfirmRollout, URL: "http://10.0.0.1/hook/T0K3N-B?token=t0k3n-b"},
		{Name: "cgnat", Type: meshv1.WebhookConfirmRollout, URL: "http://100.64.0.1/"},
	}
	startRollout(t, tc, c)
	waitGate(t, ns, "reviews", "apiserver", "the API server's address")
	waitGate(t, ns, "reviews", "private", "refused range 10.0.0.0/8 (private)")
	waitGate(t, ns, "reviews", "cgnat", "refused range 100.64.0.0/10")
	expectNowhere(t, ns, "reviews", "t0k3n", "T0K3N", "kube-system/secrets")
}

// Item 7: with cross-namespace references on, a tenant's Canary uses another namespace's
// templates. One that does not list the tenant's namespace is refused; one with a Secret
// lends it to nobody, whatever it lists; one that lists it without a Secret runs.
func TestTenantCrossNamespaceTemplates(t *testing.T) {
	testenv.SkipIfShort(t)
	owner, ns := env.CreateNamespace(t), env.CreateNamespace(t)
	tc := tenantClient(t, ns)
	startOperator(t, manager.Options{
		WatchNamespaces: ns + "," + owner, AllowCrossNamespace: true,
		MetricsProviderAllowedCIDRs: "127.0.0.0/8", CredentialAllowedHosts: "127.0.0.1",
	})
	prom := newReceiver(t, nil)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: owner, Name: "prom", Labels: map[string]string{meshv1.LabelCredentials: "true"}},
		StringData: map[string]string{"token": "owner-token"},
	}
	templates := []*meshv1.MetricTemplate{
		{ObjectMeta: metav1.ObjectMeta{Namespace: owner, Name: "private"},
			Spec: meshv1.MetricTemplateSpec{Provider: meshv1.MetricProvider{Address: prom.URL}, Query: "vector(1)"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: owner, Name: "authed"},
			Spec: meshv1.MetricTemplateSpec{Provider: meshv1.MetricProvider{Address: prom.URL, SecretRef: &meshv1.LocalObjectReference{Name: "prom"}},
				Query: "vector(1)", AllowedNamespaces: []string{"*"}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: owner, Name: "shared"},
			Spec: meshv1.MetricTemplateSpec{Provider: meshv1.MetricProvider{Address: prom.URL}, Query: "vector(1)", AllowedNamespaces: []string{ns}}},
	}
	for _, o := range append([]client.Object{secret}, templatesAsObjects(templates)...) {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	c := newCanary(ns, "reviews", 10, 30)
	c.Spec.Analysis.Metrics = nil
	for _, mt := range templates {
		c.Spec.Analysis.Metrics = append(c.Spec.Analysis.Metrics, meshv1.CanaryMetric{
			Name: mt.Name, TemplateRef: &meshv1.TemplateRef{Name: mt.Name, Namespace: owner}, ThresholdRange: meshv1.ThresholdRange{Min: ptr.To(0.0)},
		})
	}
	startRollout(t, tc, c)
	waitCheck(t, ns, "reviews", "private", "does not list namespace "+ns+" in spec.allowedNamespaces")
	waitCheck(t, ns, "reviews", "authed", "spec.provider.secretRef", "lends no credentials")
	if ch := waitCheck(t, ns, "reviews", "shared"); ch.Outcome != meshv1.OutcomePass {
		t.Errorf("the shared template's check: %s %q, want a pass", ch.Outcome, ch.Message)
	}
	for _, r := range prom.requests() {
		if r.auth != "" {
			t.Errorf("the owner's Prometheus received the owner's credentials for the tenant: %q", r.auth)
		}
	}
}

// createTenantSecrets creates, as the tenant, a ServiceAccount token Secret (labelled, as
// an attacker would) and another app's Secret that did not opt in.
func createTenantSecrets(t *testing.T, tc client.Client, ns string) {
	t.Helper()
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sa-token", Labels: map[string]string{meshv1.LabelCredentials: "true"},
			Annotations: map[string]string{corev1.ServiceAccountNameKey: "default"}}, Type: corev1.SecretTypeServiceAccountToken},
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-db"}, StringData: map[string]string{"token": "db-password"}},
	} {
		if err := tc.Create(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
}

func templatesAsObjects(ts []*meshv1.MetricTemplate) []client.Object {
	out := make([]client.Object, len(ts))
	for i, t := range ts {
		out[i] = t
	}
	return out
}

// Item 8: a template narrows a shared Prometheus to one app with a regular expression
// matcher; a tenant's variable ".*" must match the app named ".*", not every app.
func TestTenantRegexVariableStaysLiteral(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	tc := tenantClient(t, ns)
	startOperator(t, manager.Options{WatchNamespaces: ns, MetricsProviderAllowedCIDRs: "127.0.0.0/8"})
	prom := newReceiver(t, nil)
	mt := &meshv1.MetricTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "errors"},
		Spec: meshv1.MetricTemplateSpec{Provider: meshv1.MetricProvider{Address: prom.URL},
			Query: `sum(rate(http_errors_total{app=~"{{ variables.app }}"}[1m]))`},
	}
	if err := tc.Create(t.Context(), mt); err != nil {
		t.Fatal(err)
	}
	c := newCanary(ns, "reviews", 10, 30)
	c.Spec.Analysis.Metrics = []meshv1.CanaryMetric{{
		Name: "errors", TemplateRef: &meshv1.TemplateRef{Name: "errors"}, ThresholdRange: meshv1.ThresholdRange{Min: ptr.To(0.0)},
		TemplateVariables: map[string]string{"app": ".*|payments"},
	}}
	startRollout(t, tc, c)
	waitCheck(t, ns, "reviews", "errors")
	want := `sum(rate(http_errors_total{app=~"\\.\\*\\|payments"}[1m]))`
	seen := prom.requests()
	if len(seen) == 0 {
		t.Fatal("the template's Prometheus was never queried")
	}
	for _, r := range seen {
		if r.query != want && !strings.Contains(r.query, "istio_requests_total") {
			t.Errorf("Prometheus was asked %q, want %q", r.query, want)
		}
	}
}
