package install

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"canopy.dev/canopy/test/testenv"
)

// webhookFlags are the manager flags the chart passes when it has webhook configurations.
var webhookFlags = []string{"enable-webhooks", "webhook-port", "webhook-cert-path"}

// chartDir returns the chart to render. When this tree's manager has no admission webhooks
// (no config/webhook/manifests.yaml), a copy of the chart gets testdata's controller-gen
// style configurations, so that the webhook templates are still rendered and applied;
// their flags are then left out of the flag check, as the manager here lacks them. With
// real webhooks the chart itself is rendered and every flag is checked.
func chartDir(t *testing.T) (dir string, flagsNotInTree []string) {
	t.Helper()
	chart := repoPath(t, "charts", "canopy")
	if _, err := os.Stat(repoPath(t, "config", "webhook", "manifests.yaml")); err == nil {
		return chart, nil
	}
	dir = filepath.Join(t.TempDir(), "canopy")
	if err := os.CopyFS(dir, os.DirFS(chart)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "files", "webhook"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := os.WriteFile(filepath.Join(dir, "files", "webhook", "manifests.yaml"), readFile(t, "test", "install", "testdata", "webhook-manifests.yaml"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return dir, webhookFlags
}

type helmCase struct {
	name      string
	namespace string
	set       []string
	setJSON   []string
	// watched are the namespaces of scope namespaced.
	watched []string
	image   string
	check   func(t *testing.T, r rendering)
}

// TestHelmChart renders the chart with default and non-default values, checks each
// rendering and applies it, each release in its own namespace.
func TestHelmChart(t *testing.T) {
	chart, flagsNotInTree := chartDir(t)
	t.Run("lint", func(t *testing.T) {
		run(t, "helm", "lint", "--strict", chart)
		run(t, "helm", "lint", "--strict", chart, "--set", "rbac.scope=namespaced", "--set", "rbac.watchNamespaces={a,b}")
	})

	cases := []helmCase{{
		name:      "defaults",
		namespace: "canopy-system",
		image:     "ghcr.io/canopy-dev/canopy:0.1.0",
		check: func(t *testing.T, r rendering) {
			if *r.deployment.Spec.Replicas != 2 || !r.options.LeaderElect {
				t.Errorf("want 2 replicas with leader election, got %d, leader election %v", *r.deployment.Spec.Replicas, r.options.LeaderElect)
			}
			if r.options.WatchNamespaces != "" {
				t.Errorf("cluster scope watches namespaces %q", r.options.WatchNamespaces)
			}
			checkCRDsSynced(t, r.objs)
			checkManagerRules(t, r.objs, "ClusterRole")
			if len(find(r.objs, "ValidatingWebhookConfiguration")) == 0 || len(find(r.objs, "Certificate")) != 1 {
				t.Error("webhooks on by default: want the webhook configurations and a Certificate")
			}
			if len(find(r.objs, "ServiceMonitor")) != 0 {
				t.Error("a ServiceMonitor without metrics.serviceMonitor.enabled")
			}
			for _, crd := range find(r.objs, "CustomResourceDefinition") {
				if crd.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
					t.Errorf("%s: not kept on uninstall", describe(crd))
				}
			}
		},
	}, {
		name:      "webhooks-off",
		namespace: "helm-nowebhooks",
		image:     "example.com/canopy@sha256:" + strings.Repeat("ab", 32),
		set: []string{"webhook.enabled=false", "crds.install=false", "replicaCount=1",
			"image.repository=example.com/canopy", "image.digest=sha256:" + strings.Repeat("ab", 32),
			"operator.prometheusAddress=http://prometheus.istio-system:9090",
			"operator.webhookAllowedHosts={hooks.example.com,ci.example.com}",
			"operator.webhookAllowedCIDRs={10.0.0.0/8}",
			"operator.metricsProviderAllowedHosts={prometheus.monitoring.svc,*.prom.svc}",
			"operator.metricsProviderAllowedCIDRs={10.96.0.0/12}",
			"operator.credentialAllowedHosts={prometheus.monitoring.svc}",
			"operator.allowCrossNamespaceRefs=true", "operator.kubeAPIBurst=40",
			"operator.maxConcurrentReconciles=8", "operator.extraArgs={--zap-log-level=debug}",
			"operator.reconcileBudget=1m", "operator.maxCheckTimeout=5s", "operator.maxWebhookTimeout=15s",
			"leaderElection.id=canopy-shard-a", "leaderElection.leaseDuration=30s", "leaderElection.renewDeadline=20s", "leaderElection.retryPeriod=4s",
			"notifications.existingSecret=canopy-notifications",
			"tenancy.gatewayNamespaces={istio-system}", "tenancy.clusterIssuers={letsencrypt,awspca.cert-manager.io/ca}",
			"tenancy.externalHosts={shop:api.stripe.com}"},
		// --set makes 20.5 a string, and splits a selector at its "=".
		setJSON: []string{"operator.kubeAPIQPS=20.5", `operator.shardSelector="canopy.dev/shard=a"`,
			// --set cannot hold the braces of {namespace} in a list.
			`tenancy.hosts=["shop:shop.example.com","*.{namespace}.apps.example.com"]`,
			`tenancy.ingressSelectors=["istio=ingressgateway","gateway.example.com/role=public"]`},
		check: func(t *testing.T, r rendering) {
			for _, kind := range []string{"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "Certificate", "Issuer", "CustomResourceDefinition", "PodDisruptionBudget"} {
				if n := len(find(r.objs, kind)); n != 0 {
					t.Errorf("%d %s rendered", n, kind)
				}
			}
			o := r.options
			if o.PrometheusAddress != "http://prometheus.istio-system:9090" || o.WebhookAllowedHosts != "hooks.example.com,ci.example.com" ||
				o.WebhookAllowedCIDRs != "10.0.0.0/8" || !o.AllowCrossNamespace || o.QPS != 20.5 || o.Burst != 40 || o.MaxConcurrent != 8 {
				t.Errorf("the operator values did not reach the flags: %+v", o)
			}
			if o.AllowedGatewayNamespaces != "istio-system" || o.AllowedClusterIssuers != "letsencrypt,awspca.cert-manager.io/ca" ||
				o.AllowedHosts != "shop:shop.example.com,*.{namespace}.apps.example.com" || o.AllowedExternalHosts != "shop:api.stripe.com" ||
				o.AllowedIngressSelectors != "istio=ingressgateway,gateway.example.com/role=public" {
				t.Errorf("the tenancy values did not reach the flags: %+v", o)
			}
			if _, err := o.Tenancy(); err != nil {
				t.Errorf("the tenancy flags do not parse: %v", err)
			}
			if o.MetricsProviderAllowedHosts != "prometheus.monitoring.svc,*.prom.svc" || o.MetricsProviderAllowedCIDRs != "10.96.0.0/12" ||
				o.CredentialAllowedHosts != "prometheus.monitoring.svc" {
				t.Errorf("the URL policy values did not reach the flags: %+v", o)
			}
			if l := o.Limits(); l.Reconcile != time.Minute || l.MaxCheckTimeout != 5*time.Second || l.MaxWebhookTimeout != 15*time.Second {
				t.Errorf("the budget values did not reach the flags: %+v", l)
			}
			if o.LeaderElectionID != "canopy-shard-a" || o.ShardSelector != "canopy.dev/shard=a" ||
				o.LeaseDuration != 30*time.Second || o.RenewDeadline != 20*time.Second || o.RetryPeriod != 4*time.Second {
				t.Errorf("the leader election and shard values did not reach the flags: %+v", o)
			}
			pod := r.deployment.Spec.Template.Spec
			if o.NotificationsConfig != "/etc/canopy/notifications/notifications.yaml" || len(pod.Volumes) != 1 ||
				pod.Volumes[0].Secret == nil || pod.Volumes[0].Secret.SecretName != "canopy-notifications" ||
				len(pod.Containers[0].VolumeMounts) != 1 || pod.Containers[0].VolumeMounts[0].MountPath != "/etc/canopy/notifications" {
				t.Errorf("the notifications Secret is not mounted where --notifications-config=%q reads it: %+v %+v",
					o.NotificationsConfig, pod.Volumes, pod.Containers[0].VolumeMounts)
			}
			if slices.Contains(flagsNotInTree, "enable-webhooks") {
				return
			}
			if !slices.Contains(r.deployment.Spec.Template.Spec.Containers[0].Args, "--enable-webhooks=false") {
				t.Errorf("webhooks off but the manager is not told: %q", r.deployment.Spec.Template.Spec.Containers[0].Args)
			}
		},
	}, {
		name:      "namespaced",
		namespace: "helm-namespaced",
		watched:   []string{"team-a", "team-b"},
		image:     "ghcr.io/canopy-dev/canopy:0.1.0",
		set: []string{"rbac.scope=namespaced", "rbac.watchNamespaces={team-a,team-b}", "crds.keep=false",
			"rbac.admissionPolicy.enabled=true", "rbac.admissionPolicy.validationActions={Warn,Audit}"},
		check: func(t *testing.T, r rendering) {
			checkNamespacedScope(t, r, "team-a", "team-b")
			checkAdmissionPolicy(t, r.objs, "system:serviceaccount:helm-namespaced:canopy", "Warn", "Audit")
		},
	}, {
		name:      "servicemonitor",
		namespace: "helm-monitored",
		image:     "ghcr.io/canopy-dev/canopy:v9",
		set: []string{"metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prometheus",
			"metrics.serviceMonitor.interval=15s", "image.tag=v9", "webhook.certManager.issuerRef.kind=ClusterIssuer",
			"webhook.certManager.issuerRef.name=corp-ca", "webhook.failurePolicy=Ignore", "fullnameOverride=mon"},
		check: func(t *testing.T, r rendering) {
			sms := find(r.objs, "ServiceMonitor")
			if len(sms) != 1 || sms[0].GetLabels()["release"] != "prometheus" {
				t.Fatalf("want one ServiceMonitor labelled release=prometheus, got %d", len(sms))
			}
			if n := len(find(r.objs, "Issuer")); n != 0 {
				t.Errorf("%d Issuers rendered with an issuerRef given", n)
			}
			cert := find(r.objs, "Certificate")[0]
			if ref, _, _ := unstructured.NestedStringMap(cert.Object, "spec", "issuerRef"); ref["kind"] != "ClusterIssuer" || ref["name"] != "corp-ca" {
				t.Errorf("issuerRef %v, want ClusterIssuer corp-ca", ref)
			}
			for _, u := range find(r.objs, "ValidatingWebhookConfiguration") {
				hooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
				for _, w := range hooks {
					if p := w.(map[string]any)["failurePolicy"]; p != "Ignore" {
						t.Errorf("%s: failurePolicy %v, want Ignore", describe(u), p)
					}
				}
			}
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"template", "canopy", chart, "--namespace", tc.namespace}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			for _, s := range tc.setJSON {
				args = append(args, "--set-json", s)
			}
			objs := parse(t, run(t, "helm", args...))
			r := check(t, objs, expectation{image: tc.image, namespace: tc.namespace, flagsNotInTree: flagsNotInTree})
			for _, u := range objs {
				if u.GetLabels()["app.kubernetes.io/managed-by"] != "Helm" {
					t.Errorf("%s: not labelled managed-by Helm", describe(u))
				}
			}
			tc.check(t, r)
			apply(t, objs, append([]string{tc.namespace}, tc.watched...)...)
			waitForCertificates(t, objs)
		})
	}
}

// TestHelmValuesRefused shows that bad values fail the rendering with a message naming
// the value and the reason.
func TestHelmValuesRefused(t *testing.T) {
	chart := repoPath(t, "charts", "canopy")
	helm, err := testenv.Tool("helm")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ set, want string }{
		{"rbac.scope=cluster-ish", "/rbac/scope': value must be one of 'cluster', 'namespaced'"},
		{"rbac.scope=namespaced", "rbac.watchNamespaces: scope namespaced needs at least one namespace to watch"},
		{"rbac.watchNamespaces={Team_A}", "/rbac/watchNamespaces/0"},
		{"operator.kubeAPIQPS=0", "/operator/kubeAPIQPS"},
		{"operator.maxConcurrentReconciles=0", "/operator/maxConcurrentReconciles"},
		{"operator.reconcileBudget=30", "/operator/reconcileBudget"},
		{"operator.prometheusAddress=prometheus:9090", "/operator/prometheusAddress"},
		{"operator.extraArgs={zap-log-level=debug}", "/operator/extraArgs/0"},
		{"webhook.failurePolicy=Sometimes", "/webhook/failurePolicy"},
		{"image.digest=latest", "/image/digest"},
		{"leaderElection.leaseDuration=soon", "/leaderElection/leaseDuration"},
		{"notifications.existingSecret=Not_A_Secret", "/notifications/existingSecret"},
		{"oprator.kubeAPIQPS=5", "additional properties 'oprator' not allowed"},
	} {
		t.Run(tc.set, func(t *testing.T) {
			out, err := execOutput(t, helm, "template", "canopy", chart, "--set", tc.set)
			if err == nil {
				t.Fatalf("helm template --set %s succeeded", tc.set)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("helm template --set %s: want %q in\n%s", tc.set, tc.want, out)
			}
		})
	}
}

// checkCRDsSynced compares the chart's CRDs with config/crd/bases, the ones `make install`
// and kustomize apply.
func checkCRDsSynced(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	entries, err := os.ReadDir(repoPath(t, "config", "crd", "bases"))
	if err != nil {
		t.Fatal(err)
	}
	crds := find(objs, "CustomResourceDefinition")
	if len(crds) != len(entries) {
		t.Errorf("the chart renders %d CRDs, config/crd/bases has %d", len(crds), len(entries))
	}
	for _, e := range entries {
		var want apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(readFile(t, "config", "crd", "bases", e.Name()), &want); err != nil {
			t.Fatal(err)
		}
		u := findNamed(objs, "CustomResourceDefinition", "", want.Name)
		if u == nil {
			t.Errorf("CRD %s is not in the chart: run make manifests", want.Name)
			continue
		}
		if got := convert[apiextensionsv1.CustomResourceDefinition](t, u); !equality.Semantic.DeepEqual(got.Spec, want.Spec) {
			t.Errorf("CRD %s differs from config/crd/bases: run make manifests", want.Name)
		}
	}
}

// checkManagerRules compares the manager's (Cluster)Roles with config/rbac/role.yaml,
// which controller-gen generates from the +kubebuilder:rbac markers.
func checkManagerRules(t *testing.T, objs []*unstructured.Unstructured, kind string) {
	t.Helper()
	var want rbacv1.ClusterRole
	if err := yaml.Unmarshal(readFile(t, "config", "rbac", "role.yaml"), &want); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, u := range find(objs, kind) {
		if !strings.HasSuffix(u.GetName(), "-manager") && !strings.HasSuffix(u.GetName(), "manager-role") {
			continue
		}
		n++
		if got := convert[rbacv1.ClusterRole](t, u); !equality.Semantic.DeepEqual(got.Rules, want.Rules) {
			t.Errorf("%s: rules differ from config/rbac/role.yaml: run make manifests", describe(u))
		}
	}
	if n == 0 {
		t.Errorf("no manager %s rendered", kind)
	}
}

// TestChartValuesDocumented fails when a value of values.yaml is missing from the chart
// README's table (a documented map documents its keys).
func TestChartValuesDocumented(t *testing.T) {
	var values map[string]any
	if err := yaml.Unmarshal(readFile(t, "charts", "canopy", "values.yaml"), &values); err != nil {
		t.Fatal(err)
	}
	readme := string(readFile(t, "charts", "canopy", "README.md"))
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			path := prefix + k
			if strings.Contains(readme, "`"+path+"`") {
				continue
			}
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				walk(path+".", sub)
				continue
			}
			t.Errorf("value %s is not in charts/canopy/README.md's table", path)
		}
	}
	walk("", values)
}
