// Package metrics holds canopy's Prometheus metrics, served on the manager's metrics endpoint
// next to controller-runtime's own (controller_runtime_reconcile_*, workqueue_*).
//
// Two kinds, kept apart on purpose:
//
//   - State (phase, weight, readiness, certificate expiry) is read from the objects' status
//     in the manager's cache at every scrape (StateCollector): a deleted object's series
//     vanish with it, and a restarted operator reports exactly what the API server says.
//   - Happenings (phase transitions, rollout durations, check results, webhook calls) are
//     counted when they happen: Rollouts observes each Canary status the reconciler wrote,
//     InstrumentCaller each webhook call.
package metrics

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Label names.
const (
	labelNamespace = "namespace"
	labelName      = "name"
	labelPhase     = "phase"
	labelOutcome   = "outcome"
	labelCheck     = "check"
	labelType      = "type"
)

var (
	phaseTransitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "canopy_canary_phase_transitions_total",
		Help: "Phase changes of Canaries, by the phase entered.",
	}, []string{labelNamespace, labelName, labelPhase})

	// By namespace, not by Canary: a histogram is 15 series, which per Canary made most of
	// canopy's series and much of its memory at scale (150,000 series for 10,000 Canaries).
	// A Canary's own rollouts are counted by canopy_canary_phase_transitions_total.
	rolloutDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "canopy_canary_rollout_duration_seconds",
		Help: "Time from the start of a rollout to its end, by namespace and outcome (promoted or failed).",
		// From a few seconds (tests, tiny steps) to several hours (long bakes).
		Buckets: []float64{10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800},
	}, []string{labelNamespace, labelOutcome})

	checkResults = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "canopy_analysis_check_results_total",
		Help: "Measurements of Canary checks (metrics and check-like webhooks), by outcome.",
	}, []string{labelNamespace, labelName, labelCheck, labelOutcome})

	webhookCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "canopy_webhook_calls_total",
		Help: "Calls of Canary webhooks, by webhook type and outcome (success, rejected, refused, error).",
	}, []string{labelType, labelOutcome})
)

var registerOnce sync.Once

// Register adds canopy's counters and histograms to controller-runtime's registry, once per
// process (tests run several managers in one process). The StateCollector is added per
// manager, as a Runnable.
func Register() {
	registerOnce.Do(func() {
		for _, c := range []prometheus.Collector{phaseTransitions, rolloutDuration, checkResults, webhookCalls} {
			MustRegister(c)
		}
	})
}

// Collectors are every collector of this package, for documentation and tests (the
// StateCollector only describes its metrics without a reader).
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{phaseTransitions, rolloutDuration, checkResults, webhookCalls, apiRequests, &StateCollector{}}
}

// MustRegister registers c on controller-runtime's registry; a collector already registered
// is kept.
func MustRegister(c prometheus.Collector) {
	if err := crmetrics.Registry.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			panic(err)
		}
	}
}
