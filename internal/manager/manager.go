// Package manager wires canopy's controllers into a controller-runtime manager. main.go and
// the tests (which run the operator in-process, kill it and start it again) share it.
package manager

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"canopy.dev/canopy/controllers"
	"canopy.dev/canopy/internal/analysis"
	"canopy.dev/canopy/internal/budget"
	"canopy.dev/canopy/internal/hooks"
	"canopy.dev/canopy/internal/metrics"
	"canopy.dev/canopy/internal/notify"
	"canopy.dev/canopy/internal/render"
	"canopy.dev/canopy/internal/scheme"
	webhookv1 "canopy.dev/canopy/internal/webhook/v1alpha1"
)

// DefaultLeaderElectionID is the default name of the leader election Lease.
const DefaultLeaderElectionID = "canopy.mesh.canopy.dev"

// Options are the operator's flags.
type Options struct {
	MetricsAddr         string
	ProbeAddr           string
	SecureMetrics       bool
	EnableHTTP2         bool
	LeaderElect         bool
	LeaderElectionID    string
	LeaderElectionNS    string
	LeaseDuration       time.Duration
	RenewDeadline       time.Duration
	RetryPeriod         time.Duration
	WatchNamespaces     string
	ShardSelector       string
	PprofAddr           string
	MaxConcurrent       int
	QPS                 float64
	Burst               int
	PrometheusAddress   string
	AllowCrossNamespace bool
	WebhookAllowedHosts string
	WebhookAllowedCIDRs string
	// MetricsProviderAllowedHosts and MetricsProviderAllowedCIDRs are the URL policy of the
	// provider addresses Canaries and MetricTemplates name; CredentialAllowedHosts are the
	// hosts credentials from a tenant's Secret may be sent to (issue 19).
	MetricsProviderAllowedHosts string
	MetricsProviderAllowedCIDRs string
	CredentialAllowedHosts      string
	// ReconcileBudget, MaxCheckTimeout and MaxWebhookTimeout bound the time one reconcile
	// of a Canary spends on its checks and webhooks (issue 19; zero: the defaults).
	ReconcileBudget     time.Duration
	MaxCheckTimeout     time.Duration
	MaxWebhookTimeout   time.Duration
	NotificationsConfig string
	// MeshConfig is "namespace/name" of istiod's mesh configuration ConfigMap, read to check
	// the tracing providers and external authorizers MeshPolicies name.
	MeshConfig string
	// AllowedGatewayNamespaces, AllowedClusterIssuers, AllowedHosts and AllowedExternalHosts
	// are the tenancy flags: what one namespace's Canaries and MeshPolicies may claim beyond
	// the namespace (render.Tenancy; comma-separated, empty allows nothing beyond it).
	AllowedGatewayNamespaces string
	AllowedClusterIssuers    string
	AllowedHosts             string
	AllowedExternalHosts     string
	AllowedJWKSHosts         string
	// AllowedIngressSelectors are the labels of the shared namespaces' ingress gateways
	// (render.Tenancy.IngressSelectors); empty is Istio's own, istio=ingressgateway.
	AllowedIngressSelectors string
	// MemoryLimitRatio is the share of the container's memory limit the Go heap keeps under
	// (ApplyMemoryLimit; main applies it, being process-wide).
	MemoryLimitRatio float64

	// NotifyOptions tune the notifier (tests: a fake clock, a faster backoff).
	NotifyOptions notify.Options

	// EnableWebhooks serves the admission webhooks (config/webhook). The flag defaults to
	// true, for the deployed operator; the zero value, which in-process tests and the demo
	// use, serves none.
	EnableWebhooks bool
	// WebhookPort, WebhookCertDir, WebhookCertName and WebhookKeyName locate the webhook
	// server and its serving certificate (the webhook-server-cert Secret, mounted).
	WebhookHost     string
	WebhookPort     int
	WebhookCertDir  string
	WebhookCertName string
	WebhookKeyName  string

	// Analyzer and Hooks replace the Prometheus analyzer and the HTTP webhook caller
	// (tests only; there are no flags for them).
	Analyzer analysis.Analyzer
	Hooks    hooks.Caller
	// InProcess: the manager is one of several run in one process (tests, the demo), so
	// its controller names are not checked against the process-wide registry, which would
	// refuse the second. The binary runs one and keeps the check.
	InProcess bool
}

// BindFlags registers the options as command-line flags.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8080", "Address of the metrics endpoint; 0 disables it.")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "Address of the health and readiness probes.")
	fs.BoolVar(&o.SecureMetrics, "metrics-secure", false, "Serve metrics over HTTPS with authentication and authorization.")
	fs.BoolVar(&o.EnableHTTP2, "enable-http2", false, "Allow HTTP/2 on the metrics and webhook servers (off: CVE-2023-44487).")
	fs.BoolVar(&o.LeaderElect, "leader-elect", false, "Elect a leader so that only one replica reconciles at a time.")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", DefaultLeaderElectionID, "Name of the leader election Lease; shards need distinct ids.")
	fs.StringVar(&o.LeaderElectionNS, "leader-election-namespace", "", "Namespace of the leader election Lease (default: the pod's).")
	fs.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", 15*time.Second,
		"How long a standby waits after the leader's last renewal before it takes over (the longest a dead leader's work waits).")
	fs.DurationVar(&o.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second,
		"How long the leader keeps retrying to renew before it gives up leadership; less than the lease duration.")
	fs.DurationVar(&o.RetryPeriod, "leader-elect-retry-period", 2*time.Second,
		"How often candidates try to acquire or renew the lease.")
	fs.StringVar(&o.WatchNamespaces, "watch-namespaces", "", "Comma-separated namespaces to watch; empty watches the whole cluster.")
	fs.StringVar(&o.ShardSelector, "shard-selector", "",
		"Label selector of the Canaries and MeshPolicies this instance reconciles, e.g. canopy.dev/shard=a, or !canopy.dev/shard for the default shard (see docs/sharding.md); empty: all.")
	fs.StringVar(&o.PprofAddr, "pprof-bind-address", "", "Address of the pprof endpoint, e.g. 127.0.0.1:6060; empty disables it.")
	fs.IntVar(&o.MaxConcurrent, "max-concurrent-reconciles", 10, "Reconciles run in parallel per controller.")
	fs.Float64Var(&o.QPS, "kube-api-qps", 100, "Queries per second to the API server.")
	fs.IntVar(&o.Burst, "kube-api-burst", 200, "Burst of queries to the API server.")
	fs.StringVar(&o.PrometheusAddress, "prometheus-address", "", "Default Prometheus address for checks, e.g. http://prometheus.istio-system:9090.")
	fs.BoolVar(&o.AllowCrossNamespace, "allow-cross-namespace-refs", false, "Allow Canaries to reference MetricTemplates in other namespaces.")
	fs.StringVar(&o.WebhookAllowedHosts, "webhook-allowed-hosts", "",
		"Comma-separated host names rollout webhooks may call (empty: any host whose addresses are not loopback, link-local, metadata, private or cluster addresses). A listed name may resolve to a private address.")
	fs.StringVar(&o.WebhookAllowedCIDRs, "webhook-allowed-cidrs", "",
		"Comma-separated CIDRs rollout webhooks may call; a CIDR within a refused range (e.g. 10.0.0.0/8, 127.0.0.0/8) lifts that part of it.")
	fs.StringVar(&o.MetricsProviderAllowedHosts, "metrics-provider-allowed-hosts", "",
		"Comma-separated host names the provider.address of a Canary or MetricTemplate may name, e.g. prometheus.monitoring.svc (empty: as for webhooks, no loopback, link-local, metadata, private or cluster address). Does not apply to --prometheus-address.")
	fs.StringVar(&o.MetricsProviderAllowedCIDRs, "metrics-provider-allowed-cidrs", "",
		"Comma-separated CIDRs a provider.address may reach; a CIDR within a refused range lifts that part of it.")
	fs.StringVar(&o.CredentialAllowedHosts, "credential-allowed-hosts", "",
		"Comma-separated host names (or addresses) that credentials from a tenant's Secret (provider secretRef, webhook header) may be sent to; empty: none, except the --prometheus-address. The Secret must also be labelled mesh.canopy.dev/credentials=true.")
	fs.DurationVar(&o.ReconcileBudget, "reconcile-budget", budget.DefaultReconcile,
		"Time one reconcile of a Canary may spend on its metric queries and webhook calls, retries included; what does not fit is reported as a Timeout and never passes. Bounds how long one Canary holds a worker (twice: checks, then notifications).")
	fs.DurationVar(&o.MaxCheckTimeout, "max-check-timeout", budget.DefaultMaxCheckTimeout,
		"Ceiling of a metric provider query's timeout (provider.timeout); a check asking for more gets this, and its status says so.")
	fs.DurationVar(&o.MaxWebhookTimeout, "max-webhook-timeout", budget.DefaultMaxWebhookTimeout,
		"Ceiling of one webhook attempt's timeout (webhooks[].timeout); a webhook asking for more gets this, and its status says so.")
	fs.BoolVar(&o.EnableWebhooks, "enable-webhooks", true, "Serve the admission webhooks of Canary, MeshPolicy and MetricTemplate.")
	fs.IntVar(&o.WebhookPort, "webhook-port", 9443, "Port of the admission webhook server.")
	fs.StringVar(&o.WebhookCertDir, "webhook-cert-path", "", "Directory of the webhook server's certificate (default: controller-runtime's, /tmp/k8s-webhook-server/serving-certs).")
	fs.StringVar(&o.WebhookCertName, "webhook-cert-name", "tls.crt", "File name of the webhook server's certificate in --webhook-cert-path.")
	fs.StringVar(&o.WebhookKeyName, "webhook-cert-key", "tls.key", "File name of the webhook server's key in --webhook-cert-path.")
	fs.Float64Var(&o.MemoryLimitRatio, "memory-limit-ratio", DefaultMemoryLimitRatio,
		"Share of the container's memory limit (its cgroup's) the Go runtime keeps the heap under, collecting harder near it; 0 disables; GOMEMLIMIT, when set, wins.")
	fs.StringVar(&o.MeshConfig, "mesh-config", "istio-system/istio",
		"namespace/name of istiod's mesh configuration ConfigMap (its \"mesh\" key), read to check the tracing providers and external authorizers MeshPolicies name.")
	fs.StringVar(&o.NotificationsConfig, "notifications-config", "",
		"YAML file of rollout notification channels (Slack, Teams, webhook); mount it from a Secret. Empty: no notifications.")
	o.bindTenancyFlags(fs)
}

// bindTenancyFlags registers the flags of what a namespace may claim beyond itself
// (docs/security.md). Every default allows nothing beyond the namespace.
func (o *Options) bindTenancyFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.AllowedGatewayNamespaces, "allowed-gateway-namespaces", "",
		"Comma-separated namespaces besides its own where a MeshPolicy may put its ingress Gateway and Certificate, and whose Gateways a Canary may bind to; * for any. Empty: the resource's own namespace only.")
	fs.StringVar(&o.AllowedClusterIssuers, "allowed-cluster-issuers", "",
		"Comma-separated ClusterIssuers a MeshPolicy's ingress certificate may name: name (cert-manager.io) or group/name. Empty: none; Issuers of the policy's own namespace are always allowed when its gateway is there.")
	fs.StringVar(&o.AllowedHosts, "allowed-hosts", "",
		"Comma-separated host rules [namespace:]host for the hosts a namespace may route and serve besides its own Services' (Canary spec.service.hosts, MeshPolicy spec.ingress.hosts): a name, *.domain or *; no namespace (or *) means every namespace; {namespace} in the host stands for the namespace. Empty: none.")
	fs.StringVar(&o.AllowedExternalHosts, "allowed-external-hosts", "",
		"Comma-separated host rules [namespace:]host, as --allowed-hosts, for the hosts a MeshPolicy may declare as external services (spec.externalServices). Empty: none.")
	fs.StringVar(&o.AllowedJWKSHosts, "allowed-jwks-hosts", "",
		"Comma-separated host rules [namespace:]host, as --allowed-hosts, for the hosts of the JWKS URLs a MeshPolicy's authentication may name (spec.authentication.jwt[].jwksUri), which istiod fetches. Empty: none, inline keys (jwks) only.")
	fs.StringVar(&o.AllowedIngressSelectors, "allowed-ingress-selectors", render.DefaultIngressSelector,
		"Comma-separated labels key=value of the ingress gateways in the --allowed-gateway-namespaces: a MeshPolicy's ingress Gateway put there must select on one of them, so that it lands on ingress gateway pods only; * allows any selector.")
}

// Tenancy is what the tenancy flags allow; an error names the flag at fault.
func (o *Options) Tenancy() (*render.Tenancy, error) {
	t := &render.Tenancy{}
	var err error
	if t.GatewayNamespaces, err = render.ParseNamespaces(splitList(o.AllowedGatewayNamespaces)); err != nil {
		return nil, fmt.Errorf("--allowed-gateway-namespaces: %w", err)
	}
	if t.ClusterIssuers, err = render.ParseClusterIssuers(splitList(o.AllowedClusterIssuers)); err != nil {
		return nil, fmt.Errorf("--allowed-cluster-issuers: %w", err)
	}
	if t.Hosts, err = render.ParseHostRules(splitList(o.AllowedHosts)); err != nil {
		return nil, fmt.Errorf("--allowed-hosts: %w", err)
	}
	if t.ExternalHosts, err = render.ParseHostRules(splitList(o.AllowedExternalHosts)); err != nil {
		return nil, fmt.Errorf("--allowed-external-hosts: %w", err)
	}
	if t.JWKSHosts, err = render.ParseHostRules(splitList(o.AllowedJWKSHosts)); err != nil {
		return nil, fmt.Errorf("--allowed-jwks-hosts: %w", err)
	}
	if t.IngressSelectors, err = render.ParseIngressSelectors(splitList(o.AllowedIngressSelectors)); err != nil {
		return nil, fmt.Errorf("--allowed-ingress-selectors: %w", err)
	}
	return t, nil
}

// Limits are the bounds of the time one reconcile of a Canary spends on its checks and
// webhooks; zero fields (Options built in code) keep the defaults.
func (o *Options) Limits() budget.Limits {
	return budget.Limits{Reconcile: o.ReconcileBudget, MaxCheckTimeout: o.MaxCheckTimeout, MaxWebhookTimeout: o.MaxWebhookTimeout}
}

// Namespaces returns the watched namespaces, or nil for the whole cluster.
func (o *Options) Namespaces() []string {
	var out []string
	for _, ns := range strings.Split(o.WatchNamespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			out = append(out, ns)
		}
	}
	return out
}

// leaderElectionJitter is client-go's: a renewal deadline must exceed 1.2 retry periods.
const leaderElectionJitter = 1.2

// validateLeaderElection checks the lease timings as client-go would, but names the flags.
// Zero values (Options built in code) keep controller-runtime's defaults.
func (o *Options) validateLeaderElection() error {
	lease, renew, retry := o.LeaseDuration, o.RenewDeadline, o.RetryPeriod
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"--leader-elect-lease-duration", lease}, {"--leader-elect-renew-deadline", renew}, {"--leader-elect-retry-period", retry}} {
		if f.v < 0 {
			return fmt.Errorf("%s: %s is negative", f.name, f.v)
		}
	}
	if lease > 0 && renew > 0 && lease <= renew {
		return fmt.Errorf("--leader-elect-lease-duration: %s must be longer than --leader-elect-renew-deadline (%s)", lease, renew)
	}
	if renew > 0 && retry > 0 && float64(renew) <= leaderElectionJitter*float64(retry) {
		return fmt.Errorf("--leader-elect-renew-deadline: %s must be longer than %.1f times --leader-elect-retry-period (%s)",
			renew, leaderElectionJitter, retry)
	}
	return nil
}

// Run starts the manager and blocks until ctx ends.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	if err := o.validateLeaderElection(); err != nil {
		return err
	}
	// A bad notifications config is refused before anything starts.
	var notifications *notify.Config
	if o.NotificationsConfig != "" {
		var err error
		if notifications, err = notify.LoadConfig(o.NotificationsConfig); err != nil {
			return fmt.Errorf("--notifications-config: %w", err)
		}
	}
	tenancy, err := o.Tenancy()
	if err != nil {
		return err
	}
	limits := o.Limits()
	if err := limits.Validate(); err != nil {
		return err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = float32(o.QPS), o.Burst
	metrics.InstrumentRequests(cfg)

	var tlsOpts []func(*tls.Config)
	if !o.EnableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	if o.ShardSelector != "" && o.LeaderElect && (o.LeaderElectionID == "" || o.LeaderElectionID == DefaultLeaderElectionID) {
		return fmt.Errorf("--leader-election-id: a shard (--shard-selector %q) needs its own Lease, named by --leader-election-id, distinct from every other shard's", o.ShardSelector)
	}
	sch := scheme.New()
	cacheOpts, err := cacheOptions(cfg, sch, o)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: sch,
		Cache:  cacheOpts,
		// Secrets are read one at a time where a provider needs credentials: never cached,
		// so canopy holds no cluster-wide Secret informer.
		Client:  client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		Metrics: metricsOptions(o, tlsOpts),
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: o.WebhookHost, Port: o.WebhookPort, CertDir: o.WebhookCertDir, CertName: o.WebhookCertName, KeyName: o.WebhookKeyName,
			TLSOpts: tlsOpts,
		}),
		HealthProbeBindAddress:        o.ProbeAddr,
		PprofBindAddress:              o.PprofAddr,
		LeaderElection:                o.LeaderElect,
		LeaderElectionID:              o.LeaderElectionID,
		LeaderElectionNamespace:       o.LeaderElectionNS,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 nonZero(o.LeaseDuration),
		RenewDeadline:                 nonZero(o.RenewDeadline),
		RetryPeriod:                   nonZero(o.RetryPeriod),
		Controller:                    config.Controller{SkipNameValidation: ptr.To(o.InProcess)},
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	policies, err := o.policies(cfg)
	if err != nil {
		return err
	}
	if o.EnableWebhooks {
		if err := webhookv1.Setup(mgr, webhookv1.Options{
			URLPolicy: policies.hooks, ProviderPolicy: policies.providers, Credentials: policies.credentials,
			AllowCrossNamespace: o.AllowCrossNamespace, Tenancy: tenancy,
		}); err != nil {
			return err
		}
	}
	var observers []controllers.RolloutObserver
	if notifications != nil {
		opts := o.NotifyOptions
		opts.Log = mgr.GetLogger().WithName("notify")
		n, err := notify.New(notifications, opts)
		if err != nil {
			return fmt.Errorf("--notifications-config: %w", err)
		}
		if err := mgr.Add(n); err != nil {
			return fmt.Errorf("adding the notifier: %w", err)
		}
		observers = append(observers, n)
	}
	meshConfig, err := parseMeshConfig(o.MeshConfig)
	if err != nil {
		return err
	}
	if err := controllers.Setup(mgr, controllers.Config{
		MaxConcurrentReconciles: o.MaxConcurrent,
		PrometheusAddress:       o.PrometheusAddress,
		AllowCrossNamespace:     o.AllowCrossNamespace,
		Tenancy:                 tenancy,
		HookPolicy:              policies.hooks,
		ProviderPolicy:          policies.providers,
		Credentials:             policies.credentials,
		Limits:                  limits,
		MeshConfig:              meshConfig,
		Analyzer:                o.Analyzer,
		Hooks:                   o.Hooks,
		Observers:               observers,
	}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding the readiness check: %w", err)
	}
	if o.EnableWebhooks {
		// Not ready until the webhook server serves: the apiserver calls it for every write.
		if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
			return fmt.Errorf("adding the webhook readiness check: %w", err)
		}
	}
	return mgr.Start(ctx)
}

// metricsOptions serves the metrics endpoint. Served securely, every scrape must carry a
// bearer token the apiserver authenticates (a TokenReview) and that may get /metrics (a
// SubjectAccessReview): config/rbac's metrics-reader role. Without the filter HTTPS would only
// encrypt the answer to anyone who reaches the port.
func metricsOptions(o Options, tlsOpts []func(*tls.Config)) metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.MetricsAddr, SecureServing: o.SecureMetrics, TLSOpts: tlsOpts}
	if o.SecureMetrics {
		m.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return m
}

// urlPolicies are the operator's answers to where a tenant's objects may make it connect.
type urlPolicies struct {
	hooks, providers *hooks.Policy
	credentials      *hooks.CredentialPolicy
}

func (o *Options) policies(cfg *rest.Config) (urlPolicies, error) {
	var p urlPolicies
	var err error
	if p.hooks, err = hooks.ParsePolicy(splitList(o.WebhookAllowedHosts), splitList(o.WebhookAllowedCIDRs)); err != nil {
		return p, fmt.Errorf("--webhook-allowed-hosts/--webhook-allowed-cidrs: %w", err)
	}
	if p.providers, err = hooks.ParsePolicy(splitList(o.MetricsProviderAllowedHosts), splitList(o.MetricsProviderAllowedCIDRs)); err != nil {
		return p, fmt.Errorf("--metrics-provider-allowed-hosts/--metrics-provider-allowed-cidrs: %w", err)
	}
	if p.credentials, err = hooks.ParseCredentialPolicy(splitList(o.CredentialAllowedHosts)); err != nil {
		return p, fmt.Errorf("--credential-allowed-hosts: %w", err)
	}
	addrs, addrPorts := apiserverAddresses(cfg.Host, os.Getenv("KUBERNETES_SERVICE_HOST"))
	for _, pol := range []*hooks.Policy{p.hooks, p.providers} {
		pol.DeniedAddrs, pol.DeniedAddrPorts = addrs, addrPorts
	}
	return p, nil
}

// apiserverAddresses are the API server's addresses no tenant may make canopy call, even
// within an allowed CIDR: its in-cluster Service IP (serviceHost, KUBERNETES_SERVICE_HOST),
// refused on every port, and the address:port canopy reaches it at (host, the client
// config's), refused on that port only: a test bed serves other things on loopback.
func apiserverAddresses(host, serviceHost string) ([]netip.Addr, []netip.AddrPort) {
	var addrs []netip.Addr
	var addrPorts []netip.AddrPort
	if a, err := netip.ParseAddr(serviceHost); err == nil {
		addrs = append(addrs, a.Unmap())
	}
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	if u, err := url.Parse(host); err == nil {
		if a, err := netip.ParseAddr(u.Hostname()); err == nil {
			port := u.Port()
			if port == "" {
				port = "443"
				if u.Scheme == "http" {
					port = "80"
				}
			}
			if n, err := strconv.ParseUint(port, 10, 16); err == nil {
				addrPorts = append(addrPorts, netip.AddrPortFrom(a.Unmap(), uint16(n)))
			}
		}
	}
	return addrs, addrPorts
}

// nonZero leaves a zero duration to controller-runtime's default.
func nonZero(d time.Duration) *time.Duration {
	if d == 0 {
		return nil
	}
	return &d
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// parseMeshConfig reads --mesh-config: "namespace/name", or empty for the default.
func parseMeshConfig(v string) (types.NamespacedName, error) {
	if v == "" {
		return controllers.DefaultMeshConfig, nil
	}
	ns, name, ok := strings.Cut(v, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return types.NamespacedName{}, fmt.Errorf("--mesh-config: %q is not namespace/name", v)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}
