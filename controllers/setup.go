// Package controllers holds canopy's reconcilers: one per kind.
package controllers

import (
	ctrl "sigs.k8s.io/controller-runtime"
)

// Config is what the reconcilers take from the operator's flags.
type Config struct {
	MaxConcurrentReconciles int
	PrometheusAddress       string
	AllowCrossNamespace     bool
	WebhookAllowedHosts     []string
	WebhookAllowedCIDRs     []string
}

// Setup registers every controller with the manager.
func Setup(mgr ctrl.Manager, cfg Config) error {
	return nil
}
