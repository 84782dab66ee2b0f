// Package controllers holds canopy's reconcilers: one per kind.
package controllers

import (
	"context"
	"fmt"
	"k8s.io/apimachinery/pkg/types"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"

	"canopy.dev/canopy/internal/analysis"
	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/analysis/providers/prometheus"
	"canopy.dev/canopy/internal/analysis/providers/registry"
	"canopy.dev/canopy/internal/apply"
	"canopy.dev/canopy/internal/budget"
	"canopy.dev/canopy/internal/hooks"
	"canopy.dev/canopy/internal/metrics"
	"canopy.dev/canopy/internal/render"
	webhookv1 "canopy.dev/canopy/internal/webhook/v1alpha1"
)

// Config is what the reconcilers take from the operator's flags.
type Config struct {
	MaxConcurrentReconciles int
	PrometheusAddress       string
	AllowCrossNamespace     bool
	// Tenancy is what a namespace's Canaries and MeshPolicies may claim beyond it; nil
	// allows nothing beyond the namespace.
	Tenancy             *render.Tenancy
	WebhookAllowedHosts []string
	WebhookAllowedCIDRs []string
	// HookPolicy, when set, is the URL policy of the rollout webhooks instead of one
	// parsed from WebhookAllowedHosts and WebhookAllowedCIDRs: the operator gives the
	// caller and the admission webhook the same one.
	HookPolicy *hooks.Policy
	// ProviderPolicy is the URL policy of the provider addresses Canaries and
	// MetricTemplates name; Credentials says where credentials from their Secrets (and
	// webhook headers) may go. Nil: the default policy, and credentials go nowhere.
	ProviderPolicy *hooks.Policy
	Credentials    *hooks.CredentialPolicy
	// MeshConfig is the ConfigMap of istiod's mesh configuration (--mesh-config; zero:
	// istio-system/istio), read to check the tracing providers and external authorizers MeshPolicies name.
	MeshConfig types.NamespacedName
	// Limits bound the time one reconcile of a Canary spends on its checks and webhooks
	// (--reconcile-budget, --max-check-timeout, --max-webhook-timeout; zero: the defaults).
	Limits budget.Limits

	// Analyzer and Hooks replace the Prometheus analyzer and the HTTP webhook caller; tests
	// set them to feed the analysis. Clock replaces the real clock.
	Analyzer analysis.Analyzer
	Hooks    hooks.Caller
	// PolicyPrometheus replaces the Prometheus MeshPolicies' rollouts ask.
	PolicyPrometheus PolicyPrometheus
	Clock            clock.PassiveClock
	// Observers are told of each Canary status written, after canopy's own metrics
	// (notifications).
	Observers []RolloutObserver
}

// Setup registers every controller with the manager.
func Setup(mgr ctrl.Manager, cfg Config) error {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}

	if cfg.MaxConcurrentReconciles < 1 {
		cfg.MaxConcurrentReconciles = 1
	}
	prom := analysis.New(mgr.GetClient(), registry.New().New, analysis.Options{
		DefaultProvider:              providers.Config{Type: prometheus.Type, Address: cfg.PrometheusAddress},
		AllowCrossNamespaceTemplates: cfg.AllowCrossNamespace,
		ProviderPolicy:               cfg.ProviderPolicy,
		Credentials:                  cfg.Credentials,
		SecretReader:                 mgr.GetAPIReader(),
		Clock:                        cfg.Clock,
	})
	if cfg.Analyzer == nil {
		cfg.Analyzer = prom
	}
	if cfg.PolicyPrometheus == nil {
		cfg.PolicyPrometheus = prom
	}
	if cfg.Hooks == nil {
		policy := cfg.HookPolicy
		if policy == nil {
			var err error
			if policy, err = hooks.ParsePolicy(cfg.WebhookAllowedHosts, cfg.WebhookAllowedCIDRs); err != nil {
				return fmt.Errorf("--webhook-allowed-hosts/--webhook-allowed-cidrs: %w", err)
			}
		}
		cfg.Hooks = hooks.NewClient(policy, hooks.ClientOptions{Secrets: mgr.GetAPIReader(), Credentials: cfg.Credentials})
	}
	metrics.Register()
	cfg.Hooks = metrics.InstrumentCaller(cfg.Hooks)
	if err := mgr.Add(&metrics.StateCollector{Reader: mgr.GetCache()}); err != nil {
		return fmt.Errorf("adding the metrics collector: %w", err)
	}
	// One applier, and one memory of canopy's writes, for both controllers (see apply.Writes).
	applier := &apply.Applier{Client: mgr.GetClient(), Reader: mgr.GetClient(), Tracker: apply.NewWrites(mgr.GetScheme(), cfg.Clock)}
	canaries := &CanaryReconciler{
		Client:   mgr.GetClient(),
		Applier:  applier,
		Recorder: mgr.GetEventRecorder("canopy"),
		Analyzer: cfg.Analyzer,
		Hooks:    cfg.Hooks,
		Clock:    cfg.Clock,
		Tenancy:  cfg.Tenancy,
		Limits:   cfg.Limits,
		// Metrics first: counting a transition is cheap and never blocks.
		Observers: append([]RolloutObserver{metrics.Rollouts{}}, cfg.Observers...),
	}
	// Uncached reads for what a cache would cost too much for (see CanaryReconciler.APIReader).
	canaries.APIReader = mgr.GetAPIReader()
	policies := &MeshPolicyReconciler{
		Client:     mgr.GetClient(),
		Applier:    applier,
		Recorder:   mgr.GetEventRecorder("canopy"),
		Clock:      cfg.Clock,
		Tenancy:    cfg.Tenancy,
		MeshConfig: cfg.MeshConfig,
		// The cache keeps no ConfigMap's data (workload.CacheConfigMap).
		APIReader:  mgr.GetAPIReader(),
		Prometheus: cfg.PolicyPrometheus,
	}
	// Indexes must exist before the cache starts, the controllers may come later.
	if err := setupIndexes(mgr); err != nil {
		return err
	}
	// MetricTemplates need no mesh: their controller starts whether Istio is installed or not.
	templates := &MetricTemplateReconciler{Client: mgr.GetClient(), Validator: webhookv1.NewMetricTemplateValidator(cfg.ProviderPolicy, cfg.Credentials)}
	if err := templates.SetupWithManager(mgr, cfg.MaxConcurrentReconciles); err != nil {
		return err
	}
	start := func() error {
		if err := canaries.SetupWithManager(mgr, cfg.MaxConcurrentReconciles); err != nil {
			return err
		}
		return policies.SetupWithManager(mgr, cfg.MaxConcurrentReconciles)
	}
	missing, err := missingMeshAPIs(mgr.GetRESTMapper())
	if err != nil {
		return err
	}
	if len(missing) == 0 {
		return start()
	}
	// Without Istio's CRDs the controllers' watches could not start and would take the
	// whole manager down: wait for them instead, and say so on every Canary and MeshPolicy.
	mgr.GetLogger().Info("Istio's APIs are not installed: Canaries and MeshPolicies wait for them", "missing", missing)
	return mgr.Add(&meshAPIGate{mapper: mgr.GetRESTMapper(), client: mgr.GetClient(), start: start, interval: meshAPIPoll})
}

// setupIndexes registers the field indexes the controllers list by.
func setupIndexes(mgr ctrl.Manager) error {
	idx := mgr.GetFieldIndexer()
	ctx := context.Background()
	if err := idx.IndexField(ctx, &meshv1.Canary{}, indexTarget, func(o client.Object) []string {
		return []string{o.(*meshv1.Canary).Spec.TargetRef.Name}
	}); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &meshv1.Canary{}, indexAutoscaler, func(o client.Object) []string {
		if ref := o.(*meshv1.Canary).Spec.AutoscalerRef; ref != nil {
			return []string{ref.Name}
		}
		return nil
	}); err != nil {
		return err
	}
	return idx.IndexField(ctx, &meshv1.MeshPolicy{}, indexPolicyTarget, func(o client.Object) []string {
		return []string{o.(*meshv1.MeshPolicy).Spec.TargetRef.Name}
	})
}
