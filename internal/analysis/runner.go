package analysis

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/budget"
	"canopy.dev/canopy/internal/hooks"
	"canopy.dev/canopy/internal/render"
)

const (
	defaultInterval            = time.Minute
	defaultQueryTimeout        = 5 * time.Second
	defaultMaxConcurrentChecks = 4
)

// Options configure a Runner.
type Options struct {
	// DefaultProvider is where the built-in checks query, and templates that name no
	// address: the operator's --prometheus-address and the settings that go with it.
	DefaultProvider providers.Config
	// AllowCrossNamespaceTemplates lets a Canary use a MetricTemplate of another namespace
	// that lists the Canary's namespace in spec.allowedNamespaces. Off, a Canary reaches
	// only the templates of its own namespace; on, still never their Secrets.
	AllowCrossNamespaceTemplates bool
	// ProviderPolicy decides which addresses a Canary's or MetricTemplate's
	// provider.address may reach (--metrics-provider-allowed-hosts/-cidrs); nil is the
	// default policy. The operator's own DefaultProvider is not subject to it.
	ProviderPolicy *hooks.Policy
	// Credentials decides where credentials from a provider's secretRef may be sent
	// (--credential-allowed-hosts); nil sends them nowhere but to DefaultProvider.
	Credentials *hooks.CredentialPolicy
	// SecretReader reads provider Secrets; the reader given to New when nil. An uncached
	// reader (the manager's APIReader) keeps the operator from caching every Secret of
	// the cluster for the few that templates name.
	SecretReader client.Reader
	// PodReader lists the canary's pods for the pod-restarts check; SecretReader when nil.
	// An uncached reader (the manager's APIReader): one List by label selector per check
	// run costs less than a cache of every Pod in the cluster.
	PodReader client.Reader
	// Clock stamps LastMeasured; the real clock when nil.
	Clock clock.PassiveClock
	// MaxConcurrentChecks bounds how many checks of one Canary query at once (default 4).
	MaxConcurrentChecks int
}

// Runner is the Analyzer: it measures a Canary's checks through metric providers.
//
// A check without templateRef is built in (request-success-rate, request-duration) and
// queries Options.DefaultProvider; one with templateRef runs the MetricTemplate's query on
// the template's provider. Both see the same variables: namespace and name are the
// Canary's, target and service its targetRef's name, interval the check's window.
// With minRequests, the canary workload's istio_requests_total over the window is first
// counted on the check's provider; fewer requests is TooFewRequests, whatever the value.
type Runner struct {
	reader  client.Reader
	factory providers.Factory
	opts    Options
}

var _ Analyzer = (*Runner)(nil)

// New returns a Runner that reads MetricTemplates and provider Secrets with reader and
// builds providers with factory, e.g. prometheus.NewFactory().New.
func New(reader client.Reader, factory providers.Factory, opts Options) *Runner {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.SecretReader == nil {
		opts.SecretReader = reader
	}
	if opts.PodReader == nil {
		opts.PodReader = opts.SecretReader
	}
	if opts.MaxConcurrentChecks <= 0 {
		opts.MaxConcurrentChecks = defaultMaxConcurrentChecks
	}
	if opts.DefaultProvider.Type == "" {
		opts.DefaultProvider.Type = "prometheus"
	}
	if opts.DefaultProvider.Timeout <= 0 {
		opts.DefaultProvider.Timeout = defaultQueryTimeout
	}
	if opts.ProviderPolicy == nil {
		opts.ProviderPolicy = &hooks.Policy{}
	}
	return &Runner{reader: reader, factory: factory, opts: opts}
}

// Run measures every check of the Canary, in the order of spec.analysis.metrics. The
// budget ctx carries (budget.NewContext) bounds every query: its timeout is lowered to the
// operator's ceiling and to what is left, and a check that starts after the budget is spent
// is not run and reports OutcomeTimeout, which the progression treats as it treats a
// provider that timed out (onError).
func (r *Runner) Run(ctx context.Context, canary *meshv1.Canary) []meshv1.CheckStatus {
	metrics := canary.Spec.Analysis.Metrics
	results := make([]meshv1.CheckStatus, len(metrics))
	sem := make(chan struct{}, r.opts.MaxConcurrentChecks)
	var wg sync.WaitGroup
	for i := range metrics {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i] = r.runCheck(ctx, canary, &metrics[i])
		}()
	}
	wg.Wait()
	return results
}

// maxMessage bounds a check's message: a provider's error may quote a long query, and
// the status holds one message per check.
const maxMessage = 1024

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// checkFailure is a check that could not be measured, with the outcome that says why.
type checkFailure struct {
	outcome meshv1.CheckOutcome
	msg     string
}

func (f *checkFailure) Error() string { return f.msg }

func failf(outcome meshv1.CheckOutcome, format string, args ...any) *checkFailure {
	return &checkFailure{outcome: outcome, msg: fmt.Sprintf(format, args...)}
}

// outcomeOf maps a provider failure to the check outcome of the same name.
func outcomeOf(err error) meshv1.CheckOutcome {
	switch providers.KindOf(err) {
	case providers.NoData:
		return meshv1.OutcomeNoData
	case providers.Unreachable:
		return meshv1.OutcomeUnreachable
	case providers.Timeout:
		return meshv1.OutcomeTimeout
	case providers.BadQuery:
		return meshv1.OutcomeBadQuery
	case providers.Other:
		return meshv1.OutcomeError
	}
	return meshv1.OutcomeError
}

func (r *Runner) runCheck(ctx context.Context, canary *meshv1.Canary, m *meshv1.CanaryMetric) meshv1.CheckStatus {
	st := meshv1.CheckStatus{Name: m.Name, Threshold: thresholdText(m), DryRun: m.DryRun}
	value, note, err := r.measure(ctx, canary, m)
	now := metav1.NewTime(r.opts.Clock.Now())
	st.LastMeasured = &now
	if err != nil {
		st.Outcome, st.Message = err.outcome, truncate(budget.WithNote(err.msg, note), maxMessage)
		return st
	}
	st.Value = FormatValue(value.canary)
	if value.compare {
		st.PrimaryValue = FormatValue(value.primary)
	}
	st.Outcome, st.Message = judgeMetric(value, m)
	if isPodRestarts(m) {
		// pod-restarts' note is what it counted, not a ceiling's.
		st.Message = truncate(joinMessage(st.Message, note), maxMessage)
	} else {
		st.Message = truncate(budget.WithNote(st.Message, note), maxMessage)
	}
	return st
}

func joinMessage(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// isPodRestarts says whether a check is the built-in pod-restarts.
func isPodRestarts(m *meshv1.CanaryMetric) bool {
	return m.TemplateRef == nil && m.Name == CheckPodRestarts
}

// podRestartsDefault is pod-restarts' range when it sets none: no restart at all.
var podRestartsDefault = meshv1.ThresholdRange{Max: new(0.0)}

// rangeOf is the range a check's value is judged by.
func rangeOf(m *meshv1.CanaryMetric) meshv1.ThresholdRange {
	if r := m.ThresholdRange; r.Min == nil && r.Max == nil && isPodRestarts(m) && m.SuccessCondition == "" && m.FailureCondition == "" {
		return podRestartsDefault
	}
	return m.ThresholdRange
}

// judgeMetric decides a measured value by the check's conditions, else its range.
func judgeMetric(v measured, m *meshv1.CanaryMetric) (meshv1.CheckOutcome, string) {
	if m.SuccessCondition != "" || m.FailureCondition != "" {
		return judgeConditions(v, m)
	}
	return judge(v.canary, rangeOf(m))
}

// thresholdText is what status shows as the check's threshold.
func thresholdText(m *meshv1.CanaryMetric) string {
	if t := conditionText(m); t != "" {
		return t
	}
	return FormatThreshold(rangeOf(m))
}

// measure renders the check's query, runs it and returns its value, and a note when the
// operator's ceiling lowered the provider's timeout.
func (r *Runner) measure(ctx context.Context, canary *meshv1.Canary, m *meshv1.CanaryMetric) (measured, string, *checkFailure) {
	b := budget.FromContext(ctx)
	if b.Spent() {
		return measured{}, "", failf(meshv1.OutcomeTimeout, "%s", budget.ErrNotRun)
	}
	interval, err := CheckInterval(canary, m)
	if err != nil {
		return measured{}, "", failf(meshv1.OutcomeBadQuery, "%s", err)
	}

	if isPodRestarts(m) {
		v, note, fail := r.podRestarts(ctx, canary)
		return measured{canary: v}, note, fail
	}

	tmpl, cfg, fail := r.querySource(ctx, canary, m)
	if fail != nil {
		return measured{}, "", fail
	}
	// The provider's own timeout is the ceiling's; each query is also cut to what is left.
	capped := b.Cap(budget.Query, cfg.Timeout)
	cfg.Timeout = capped.Timeout
	target := canary.Spec.TargetRef.Name
	value, fail := r.query(ctx, canary, m, tmpl, cfg, interval, target)
	if fail != nil || !m.CompareWithPrimary {
		return measured{canary: value}, capped.Note(), fail
	}
	primary, fail := r.query(ctx, canary, m, tmpl, cfg, interval, render.PrimaryName(target))
	if fail != nil {
		fail.msg = "the primary's value: " + fail.msg
	}
	return measured{canary: value, primary: primary, compare: true}, capped.Note(), fail
}

// query runs a check's rendered query for the workload target (the canary's, or the
// primary's for compareWithPrimary), after the canary's request count when it has
// minRequests.
func (r *Runner) query(ctx context.Context, canary *meshv1.Canary, m *meshv1.CanaryMetric, tmpl string, cfg providers.Config, interval time.Duration, target string) (float64, *checkFailure) {
	log := ctrl.LoggerFrom(ctx).WithValues("check", m.Name, "workload", target)
	vars := QueryVars{
		Namespace: canary.Namespace,
		Name:      canary.Name,
		Target:    target,
		// The apex Service is named after the target.
		Service:  canary.Spec.TargetRef.Name,
		Interval: interval,
		Vars:     m.TemplateVariables,
	}
	query, err := RenderFor(cfg.Type, tmpl, vars)
	if err != nil {
		return 0, failf(meshv1.OutcomeBadQuery, "%s", err)
	}
	if cfg.Address == "" {
		return 0, failf(meshv1.OutcomeError, "no Prometheus address: set the MetricTemplate's provider.address or start the operator with --prometheus-address")
	}
	if m.MinRequests != nil && *m.MinRequests > 0 && !IsPromQL(cfg.Type) {
		// The request count is a PromQL query of Istio's metrics.
		return 0, failf(meshv1.OutcomeBadQuery, "minRequests needs a PromQL provider (prometheus, victoriametrics), not %s", cfg.Type)
	}
	b := budget.FromContext(ctx)
	cfg.Window = interval
	provider, err := r.factory(cfg)
	if err != nil {
		return 0, failf(meshv1.OutcomeBadQuery, "metric provider: %s", err)
	}
	run := func(q string) (float64, error) {
		g, err := b.Grant(budget.Query, cfg.Timeout)
		if err != nil {
			return 0, providers.Errorf(providers.Timeout, "%w", err)
		}
		qctx, cancel := context.WithTimeout(ctx, g.Timeout)
		defer cancel()
		v, err := provider.Query(qctx, q)
		if note := g.CutNote(); note != "" && providers.KindOf(err) == providers.Timeout {
			err = providers.Errorf(providers.Timeout, "%w (%s)", err, note)
		}
		return v, err
	}

	if m.MinRequests != nil && *m.MinRequests > 0 && target == canary.Spec.TargetRef.Name {
		countQuery, err := RenderQuery(requestCountQuery, vars)
		if err != nil {
			return 0, failf(meshv1.OutcomeBadQuery, "%s", err)
		}
		count, err := run(countQuery)
		switch {
		case providers.KindOf(err) == providers.NoData:
			count = 0
		case err != nil:
			return 0, failf(outcomeOf(err), "counting requests: %s", err)
		}
		// NaN compares false: a count that is not a number is not enough requests either.
		if !(count >= float64(*m.MinRequests)) {
			return 0, failf(meshv1.OutcomeTooFewRequests, "%s requests in the last %s, fewer than minRequests %d",
				FormatValue(count), PromDuration(interval), *m.MinRequests)
		}
	}

	log.V(1).Info("Running check query", "query", query)
	value, err := run(query)
	if err != nil {
		return 0, failf(outcomeOf(err), "%s", err)
	}
	return value, nil
}

// CheckInterval is the check's look-back window: its own interval, else the analysis'.
// The admission webhook refuses a Canary for which it is an error.
func CheckInterval(canary *meshv1.Canary, m *meshv1.CanaryMetric) (time.Duration, error) {
	s := m.Interval
	if s == "" {
		s = canary.Spec.Analysis.Interval
	}
	if s == "" {
		return defaultInterval, nil
	}
	d, err := time.ParseDuration(string(s))
	if err != nil {
		return 0, fmt.Errorf("interval %q: %w", s, err)
	}
	if d < time.Second {
		return 0, fmt.Errorf("interval %q is shorter than 1s", s)
	}
	return d, nil
}

// querySource returns the query template of a check and the provider it runs on.
func (r *Runner) querySource(ctx context.Context, canary *meshv1.Canary, m *meshv1.CanaryMetric) (string, providers.Config, *checkFailure) {
	if m.TemplateRef == nil {
		q, ok := builtinQueries[m.Name]
		if !ok {
			return "", providers.Config{}, failf(meshv1.OutcomeBadQuery,
				"%q is not a built-in check (%s, %s, %s): name a MetricTemplate in templateRef", m.Name, CheckRequestSuccessRate, CheckRequestDuration, CheckPodRestarts)
		}
		if p := canary.Spec.Analysis.Provider; p != nil {
			cfg, fail := r.providerConfig(ctx, canary.Namespace, "Canary "+canary.Namespace+"/"+canary.Name, "spec.analysis.provider", p)
			return q, cfg, fail
		}
		return q, r.opts.DefaultProvider, nil
	}

	key := types.NamespacedName{Namespace: m.TemplateRef.Namespace, Name: m.TemplateRef.Name}
	if key.Namespace == "" {
		key.Namespace = canary.Namespace
	}
	foreign := key.Namespace != canary.Namespace
	if foreign && !r.opts.AllowCrossNamespaceTemplates {
		return "", providers.Config{}, failf(meshv1.OutcomeBadQuery,
			"MetricTemplate %s is in another namespace than the Canary; the operator allows that only with --allow-cross-namespace-refs", key)
	}
	var tmpl meshv1.MetricTemplate
	if err := r.reader.Get(ctx, key, &tmpl); err != nil {
		if apierrors.IsNotFound(err) {
			return "", providers.Config{}, failf(meshv1.OutcomeBadQuery, "MetricTemplate %s not found", key)
		}
		return "", providers.Config{}, failf(meshv1.OutcomeError, "reading MetricTemplate %s: %s", key, err)
	}
	if foreign {
		if fail := crossNamespaceUse(&tmpl, canary.Namespace); fail != nil {
			return "", providers.Config{}, fail
		}
	}

	cfg, fail := r.providerConfig(ctx, tmpl.Namespace, "MetricTemplate "+tmpl.Namespace+"/"+tmpl.Name, "spec.provider", &tmpl.Spec.Provider)
	if fail != nil {
		return "", providers.Config{}, fail
	}
	return tmpl.Spec.Query, cfg, nil
}

// crossNamespaceUse refuses a template to a Canary of namespace ns, another namespace than
// its own, unless the template lists ns; and always when it has a Secret, which would
// then serve a namespace its owners did not pick.
func crossNamespaceUse(tmpl *meshv1.MetricTemplate, ns string) *checkFailure {
	key := tmpl.Namespace + "/" + tmpl.Name
	if !slices.Contains(tmpl.Spec.AllowedNamespaces, ns) && !slices.Contains(tmpl.Spec.AllowedNamespaces, "*") {
		return failf(meshv1.OutcomeBadQuery, "MetricTemplate %s does not list namespace %s in spec.allowedNamespaces: only the namespaces it lists may use it", key, ns)
	}
	if tmpl.Spec.Provider.SecretRef != nil {
		return failf(meshv1.OutcomeBadQuery, "MetricTemplate %s has spec.provider.secretRef: a template lends no credentials to other namespaces; copy it into namespace %s with a Secret of its own", key, ns)
	}
	return nil
}

// providerConfig is the provider a template or a Canary names: its own address and
// settings, or the operator's default where it names no address. Credentials come from a
// Secret in the namespace of the template or Canary (owner, for messages; path is the
// provider's field) that names it.
func (r *Runner) providerConfig(ctx context.Context, namespace, owner, path string, p *meshv1.MetricProvider) (providers.Config, *checkFailure) {
	cfg := r.opts.DefaultProvider
	if p.Type != "" {
		cfg.Type = p.Type
	}
	if p.Address == "" && !IsPromQL(cfg.Type) {
		// The operator's default address and its credentials are Prometheus'.
		return cfg, failf(meshv1.OutcomeBadQuery, "%s %s.address: provider type %s needs an address", owner, path, cfg.Type)
	}
	if p.Address != "" {
		// An address of the tenant's: every connection is checked against the policy.
		if err := r.opts.ProviderPolicy.CheckStatic(p.Address); err != nil {
			return cfg, failf(meshv1.OutcomeError, "%s %s.address: %s", owner, path, err)
		}
		cfg = providers.Config{Type: cfg.Type, Address: p.Address, Timeout: defaultQueryTimeout, URLPolicy: r.opts.ProviderPolicy}
	}
	if p.InsecureSkipVerify {
		cfg.InsecureSkipVerify = true
	}
	if p.NewRelic != nil {
		cfg.AccountID = p.NewRelic.AccountID
	}
	if p.CloudWatch != nil {
		cfg.Region = p.CloudWatch.Region
	}
	if p.InfluxDB != nil {
		cfg.InfluxDB = providers.InfluxDB{Org: p.InfluxDB.Org, Database: p.InfluxDB.Database, RetentionPolicy: p.InfluxDB.RetentionPolicy}
	}
	if p.Timeout != "" {
		d, err := time.ParseDuration(string(p.Timeout))
		if err != nil || d <= 0 {
			return cfg, failf(meshv1.OutcomeBadQuery, "%s: provider timeout %q is not a positive duration", owner, p.Timeout)
		}
		cfg.Timeout = d
	}
	if p.SecretRef != nil {
		// The operator's own Prometheus may have them; any other address must be allowed.
		if p.Address != "" {
			if err := r.opts.Credentials.CheckHost(p.Address); err != nil {
				return cfg, failf(meshv1.OutcomeError, "%s %s.secretRef: %s", owner, path, err)
			}
		}
		secret, err := hooks.ReadSecret(ctx, r.opts.SecretReader, types.NamespacedName{Namespace: namespace, Name: p.SecretRef.Name})
		if err != nil {
			return cfg, failf(meshv1.OutcomeError, "%s %s.secretRef: %s", owner, path, err)
		}
		creds, err := providers.CredentialsFromSecret(secret)
		if err != nil {
			return cfg, failf(meshv1.OutcomeError, "%s", err)
		}
		cfg.Credentials = creds
	}
	return cfg, nil
}
