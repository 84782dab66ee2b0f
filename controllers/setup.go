// Package controllers holds canopy's reconcilers: one per kind.
package controllers

import (
	"fmt"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	"canopy.dev/canopy/internal/analysis"
	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/analysis/providers/prometheus"
	"canopy.dev/canopy/internal/hooks"
	"canopy.dev/canopy/internal/mesh"
)

// Config is what the reconcilers take from the operator's flags.
type Config struct {
	MaxConcurrentReconciles int
	PrometheusAddress       string
	AllowCrossNamespace     bool
	WebhookAllowedHosts     []string
	WebhookAllowedCIDRs     []string

	// Analyzer and Hooks replace the Prometheus analyzer and the HTTP webhook caller; tests
	// set them to feed the analysis. Clock replaces the real clock.
	Analyzer analysis.Analyzer
	Hooks    hooks.Caller
	Clock    clock.PassiveClock
}

// Setup registers every controller with the manager.
func Setup(mgr ctrl.Manager, cfg Config) error {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.MaxConcurrentReconciles < 1 {
		cfg.MaxConcurrentReconciles = 1
	}
	if cfg.Analyzer == nil {
		cfg.Analyzer = analysis.New(mgr.GetClient(), prometheus.NewFactory().New, analysis.Options{
			DefaultProvider:              providers.Config{Type: prometheus.Type, Address: cfg.PrometheusAddress},
			AllowCrossNamespaceTemplates: cfg.AllowCrossNamespace,
			SecretReader:                 mgr.GetAPIReader(),
			Clock:                        cfg.Clock,
		})
	}
	if cfg.Hooks == nil {
		policy, err := hooks.ParsePolicy(cfg.WebhookAllowedHosts, cfg.WebhookAllowedCIDRs)
		if err != nil {
			return fmt.Errorf("--webhook-allowed-hosts/--webhook-allowed-cidrs: %w", err)
		}
		cfg.Hooks = hooks.NewClient(policy, hooks.ClientOptions{})
	}
	applier := &mesh.Applier{Client: mgr.GetClient(), Reader: mgr.GetClient()}
	canaries := &CanaryReconciler{
		Client:   mgr.GetClient(),
		Applier:  applier,
		Recorder: mgr.GetEventRecorder("canopy"),
		Analyzer: cfg.Analyzer,
		Hooks:    cfg.Hooks,
		Clock:    cfg.Clock,
	}
	if err := canaries.SetupWithManager(mgr, cfg.MaxConcurrentReconciles); err != nil {
		return err
	}
	policies := &MeshPolicyReconciler{
		Client:   mgr.GetClient(),
		Applier:  applier,
		Recorder: mgr.GetEventRecorder("canopy"),
		Clock:    cfg.Clock,
	}
	return policies.SetupWithManager(mgr, cfg.MaxConcurrentReconciles)
}
