package metrics

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/render"
)

// Phases are every phase a Canary can be in; canopy_canary_phase has a series for each, 1
// for the current one, so that a phase no Canary is in still reads 0.
var Phases = []meshv1.CanaryPhase{
	meshv1.PhaseInitializing, meshv1.PhaseInitialized, meshv1.PhaseWaiting, meshv1.PhaseProgressing,
	meshv1.PhasePromoting, meshv1.PhaseFinalising, meshv1.PhaseSucceeded, meshv1.PhaseRollingBack,
	meshv1.PhaseFailed, meshv1.PhaseTerminating,
}

var (
	canaryLabels = []string{labelNamespace, labelName}
	certLabels   = []string{labelNamespace, "meshpolicy", "certificate_namespace", "certificate", "secret"}

	descInfo = prometheus.NewDesc("canopy_canary_info",
		"Always 1: names the Canary's target Deployment and the primary, Istio's destination_workload of the canary and primary pods.",
		append(canaryLabels, "target", "primary"), nil)
	descPhase = prometheus.NewDesc("canopy_canary_phase",
		"1 for the phase the Canary is in, 0 for the others.", append(canaryLabels, labelPhase), nil)
	descWeight = prometheus.NewDesc("canopy_canary_weight",
		"Percentage of the traffic routed to the canary (status.canaryWeight).", canaryLabels, nil)
	descStep = prometheus.NewDesc("canopy_canary_step",
		"Steps passed in the current rollout (status.stepIndex).", canaryLabels, nil)
	descIterations = prometheus.NewDesc("canopy_canary_iterations",
		"Passed analysis runs of the current A/B or blue/green rollout (status.iterations).", canaryLabels, nil)
	descFailedChecks = prometheus.NewDesc("canopy_canary_failed_checks",
		"Failed checks in the current rollout (status.failedChecks).", canaryLabels, nil)
	descCanaryReady = prometheus.NewDesc("canopy_canary_ready",
		"1 when the Canary's Ready condition is True.", canaryLabels, nil)
	descPaused = prometheus.NewDesc("canopy_canary_paused",
		"1 while the rollout is paused by a request.", canaryLabels, nil)
	descRolloutStart = prometheus.NewDesc("canopy_canary_rollout_start_timestamp_seconds",
		"When the current or last rollout started (status.rolloutStarted), in Unix seconds.", canaryLabels, nil)
	descTransition = prometheus.NewDesc("canopy_canary_last_transition_timestamp_seconds",
		"When the phase last changed (status.lastTransitionTime), in Unix seconds.", canaryLabels, nil)
	descCheckValue = prometheus.NewDesc("canopy_analysis_check_value",
		"Last measured value of a check, when it had a numeric one.", append(canaryLabels, labelCheck), nil)
	descPolicyReady = prometheus.NewDesc("canopy_meshpolicy_ready",
		"1 when the MeshPolicy's Ready condition is True.", canaryLabels, nil)
	descCertReady = prometheus.NewDesc("canopy_certificate_ready",
		"1 when a MeshPolicy's cert-manager Certificate is Ready.", certLabels, nil)
	descCertExpiry = prometheus.NewDesc("canopy_certificate_expiry_timestamp_seconds",
		"When a MeshPolicy's certificate expires (notAfter), in Unix seconds.", certLabels, nil)
	descCertRenewal = prometheus.NewDesc("canopy_certificate_renewal_timestamp_seconds",
		"When cert-manager will renew a MeshPolicy's certificate (renewalTime), in Unix seconds.", certLabels, nil)
	descScrapeErrors = prometheus.NewDesc("canopy_state_scrape_errors",
		"1 when the Canaries or MeshPolicies (kind) could not be listed from the cache for this scrape.", []string{"kind"}, nil)
)

// StateCollector reports the state of every Canary and MeshPolicy from their status in the
// manager's cache, at scrape time. It is a manager Runnable: it joins controller-runtime's
// registry when the manager starts and leaves it when the manager stops, so a process that
// runs the manager again reports the new manager's cache.
type StateCollector struct {
	Reader client.Reader
	// Timeout bounds one scrape's reads from the cache (default 10s).
	Timeout time.Duration
}

var _ prometheus.Collector = (*StateCollector)(nil)

// current is the StateCollector registered now; a new manager replaces it.
var (
	currentMu sync.Mutex
	current   prometheus.Collector
)

// Start registers the collector until ctx ends.
func (s *StateCollector) Start(ctx context.Context) error {
	currentMu.Lock()
	if current != nil {
		crmetrics.Registry.Unregister(current)
	}
	if err := crmetrics.Registry.Register(s); err != nil {
		currentMu.Unlock()
		return err
	}
	current = s
	currentMu.Unlock()

	<-ctx.Done()
	currentMu.Lock()
	if current == s {
		crmetrics.Registry.Unregister(s)
		current = nil
	}
	currentMu.Unlock()
	return nil
}

// NeedLeaderElection is false: every replica serves metrics of what its cache holds.
func (s *StateCollector) NeedLeaderElection() bool { return false }

// Describe sends every descriptor.
func (s *StateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descPhase, descWeight, descStep, descIterations, descFailedChecks,
		descCanaryReady, descPaused, descRolloutStart, descTransition, descCheckValue, descPolicyReady,
		descCertReady, descCertExpiry, descCertRenewal, descScrapeErrors} {
		ch <- d
	}
}

// Collect lists the Canaries and MeshPolicies from the cache and reports their status. A
// failed list is reported in canopy_state_scrape_errors rather than failing the whole scrape,
// which would also hide controller-runtime's metrics.
func (s *StateCollector) Collect(ch chan<- prometheus.Metric) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	// The objects are only read: the cache's deep copy of every Canary and MeshPolicy would
	// be the largest allocation of a scrape with thousands of them.
	canaries := &meshv1.CanaryList{}
	err := s.Reader.List(ctx, canaries, client.UnsafeDisableDeepCopy)
	ch <- prometheus.MustNewConstMetric(descScrapeErrors, prometheus.GaugeValue, boolValue(err != nil), "Canary")
	if err == nil {
		for i := range canaries.Items {
			collectCanary(ch, &canaries.Items[i])
		}
	}
	policies := &meshv1.MeshPolicyList{}
	err = s.Reader.List(ctx, policies, client.UnsafeDisableDeepCopy)
	ch <- prometheus.MustNewConstMetric(descScrapeErrors, prometheus.GaugeValue, boolValue(err != nil), "MeshPolicy")
	if err == nil {
		for i := range policies.Items {
			collectPolicy(ch, &policies.Items[i])
		}
	}
}

func collectCanary(ch chan<- prometheus.Metric, c *meshv1.Canary) {
	st := &c.Status
	// Every series of the Canary shares its namespace and name pairs, and the phase series
	// share phasePairs: a scrape of thousands of Canaries is ~20 series each, and const
	// metrics would build every pair of every series again.
	base := []*dto.LabelPair{pair(labelName, c.Name), pair(labelNamespace, c.Namespace)}
	gauge := func(d *prometheus.Desc, v float64) { ch <- series{desc: d, labels: base, value: v} }
	target := c.Spec.TargetRef.Name
	ch <- series{desc: descInfo, labels: withPairs(base, pair("target", target), pair("primary", render.PrimaryName(target))), value: 1}
	for _, p := range Phases {
		ch <- series{desc: descPhase, labels: withPairs(base, phasePairs[p]), value: boolValue(st.Phase == p)}
	}
	gauge(descWeight, float64(st.CanaryWeight))
	gauge(descStep, float64(st.StepIndex))
	gauge(descIterations, float64(st.Iterations))
	gauge(descFailedChecks, float64(st.FailedChecks))
	gauge(descCanaryReady, boolValue(meta.IsStatusConditionTrue(st.Conditions, meshv1.ConditionReady)))
	gauge(descPaused, boolValue(st.Paused))
	if st.RolloutStarted != nil {
		gauge(descRolloutStart, unixSeconds(st.RolloutStarted.Time))
	}
	if st.LastTransitionTime != nil {
		gauge(descTransition, unixSeconds(st.LastTransitionTime.Time))
	}
	for _, chk := range st.Checks {
		if v, ok := CheckValue(chk.Value); ok {
			ch <- series{desc: descCheckValue, labels: withPairs(base, pair(labelCheck, chk.Name)), value: v}
		}
	}
}

// series is one gauge sample of the state collector. Its label pairs are sorted by name and
// may be shared with other series: the registry treats a collected metric's pairs as
// immutable.
type series struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	value  float64
}

func (s series) Desc() *prometheus.Desc { return s.desc }

func (s series) Write(out *dto.Metric) error {
	out.Label = s.labels
	out.Gauge = &dto.Gauge{Value: ptr.To(s.value)}
	return nil
}

func pair(name, value string) *dto.LabelPair {
	return &dto.LabelPair{Name: ptr.To(name), Value: ptr.To(value)}
}

// withPairs is base and more, sorted by name (a new slice: base is shared).
func withPairs(base []*dto.LabelPair, more ...*dto.LabelPair) []*dto.LabelPair {
	out := make([]*dto.LabelPair, 0, len(base)+len(more))
	out = append(append(out, base...), more...)
	slices.SortFunc(out, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

// phasePairs are the phase label pairs, one per phase, shared by every Canary's series.
var phasePairs = func() map[meshv1.CanaryPhase]*dto.LabelPair {
	m := make(map[meshv1.CanaryPhase]*dto.LabelPair, len(Phases))
	for _, p := range Phases {
		m[p] = pair(labelPhase, string(p))
	}
	return m
}()

func collectPolicy(ch chan<- prometheus.Metric, p *meshv1.MeshPolicy) {
	ch <- prometheus.MustNewConstMetric(descPolicyReady, prometheus.GaugeValue,
		boolValue(meta.IsStatusConditionTrue(p.Status.Conditions, meshv1.ConditionReady)), p.Namespace, p.Name)
	for _, c := range p.Status.Certificates {
		labels := []string{p.Namespace, p.Name, c.Namespace, c.Name, c.SecretName}
		ch <- prometheus.MustNewConstMetric(descCertReady, prometheus.GaugeValue, boolValue(c.Ready), labels...)
		if c.NotAfter != nil {
			ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, unixSeconds(c.NotAfter.Time), labels...)
		}
		if c.RenewalTime != nil {
			ch <- prometheus.MustNewConstMetric(descCertRenewal, prometheus.GaugeValue, unixSeconds(c.RenewalTime.Time), labels...)
		}
	}
}

// CheckValue reads a check's formatted value (status.checks[].value) as a number.
func CheckValue(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
