package analysis

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/analysis/providers/prometheus"
	"canopy.dev/canopy/internal/hooks"
	"canopy.dev/canopy/internal/scheme"
)

// promServer stands in for Prometheus' HTTP API: it answers each query with the first
// answer whose key the query contains, and records what it was asked.
type promServer struct {
	*httptest.Server
	mu      sync.Mutex
	queries []string
	auth    []string
}

func newPromServer(t *testing.T, answers map[string]string) *promServer {
	t.Helper()
	p := &promServer{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.FormValue("query")
		p.mu.Lock()
		p.queries = append(p.queries, q)
		p.auth = append(p.auth, r.Header.Get("Authorization"))
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		// Longest key first would be nicer; tests keep keys unambiguous instead.
		for key, body := range answers {
			if strings.Contains(q, key) {
				if strings.HasPrefix(body, `{"status":"error"`) {
					w.WriteHeader(http.StatusBadRequest)
				}
				_, _ = w.Write([]byte(body))
				return
			}
		}
		_, _ = w.Write([]byte(sample()))
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *promServer) received() ([]string, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.queries...), append([]string(nil), p.auth...)
}

// sample is a vector answer with the given values, one series each.
func sample(values ...string) string {
	var s []string
	for _, v := range values {
		s = append(s, `{"metric":{},"value":[1700000000,"`+v+`"]}`)
	}
	return `{"status":"success","data":{"resultType":"vector","result":[` + strings.Join(s, ",") + `]}}`
}

var testNow = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func testCanary(metrics ...meshv1.CanaryMetric) *meshv1.Canary {
	return &meshv1.Canary{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "reviews"},
		Spec: meshv1.CanarySpec{
			TargetRef: meshv1.TargetRef{Name: "reviews"},
			Analysis:  meshv1.CanaryAnalysis{Interval: "30s", Metrics: metrics},
		},
	}
}

func newTestRunner(t *testing.T, address string, opts Options, objs ...client.Object) *Runner {
	t.Helper()
	reader := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).Build()
	opts.DefaultProvider.Address = address
	if opts.Clock == nil {
		opts.Clock = clocktesting.NewFakePassiveClock(testNow)
	}
	return New(reader, prometheus.NewFactory().New, opts)
}

func successRate(min float64) meshv1.CanaryMetric {
	return meshv1.CanaryMetric{Name: CheckRequestSuccessRate, ThresholdRange: meshv1.ThresholdRange{Min: &min}}
}

func duration(max float64) meshv1.CanaryMetric {
	return meshv1.CanaryMetric{Name: CheckRequestDuration, ThresholdRange: meshv1.ThresholdRange{Max: &max}}
}

func TestBuiltinChecks(t *testing.T) {
	prom := newPromServer(t, map[string]string{
		"istio_requests_total":                       sample("99.514"),
		"istio_request_duration_milliseconds_bucket": sample("812.3"),
	})
	r := newTestRunner(t, prom.URL, Options{})
	got := r.Run(context.Background(), testCanary(successRate(99), duration(500)))

	if len(got) != 2 {
		t.Fatalf("got %d results, want 2", len(got))
	}
	sr, d := got[0], got[1]
	if sr.Name != CheckRequestSuccessRate || sr.Outcome != meshv1.OutcomePass || sr.Value != "99.51" || sr.Threshold != ">= 99" || sr.Message != "" {
		t.Errorf("success rate = %+v", sr)
	}
	if d.Name != CheckRequestDuration || d.Outcome != meshv1.OutcomeFail || d.Value != "812.3" || d.Threshold != "<= 500" ||
		!strings.Contains(d.Message, "812.3 is above the maximum 500") {
		t.Errorf("duration = %+v", d)
	}
	for _, st := range got {
		if st.LastMeasured == nil || !st.LastMeasured.Time.Equal(testNow) || st.HoldingSince != nil {
			t.Errorf("%s: LastMeasured = %v, HoldingSince = %v", st.Name, st.LastMeasured, st.HoldingSince)
		}
	}

	queries, _ := prom.received()
	wantSR := `100 * (sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="reviews",response_code!~"5.*"}[30s])) or vector(0))` +
		` / sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="reviews"}[30s]))`
	wantD := `histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload_namespace="shop",destination_workload="reviews"}[30s])) by (le))`
	if !contains(queries, wantSR) || !contains(queries, wantD) {
		t.Errorf("queries sent:\n%s\nwant\n%s\n%s", strings.Join(queries, "\n"), wantSR, wantD)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestOutcomes(t *testing.T) {
	blocked := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-blocked:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(blocked)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := "http://" + l.Addr().String()
	_ = l.Close()

	withMin := successRate(99)
	withMin.MinRequests = ptr.To[int64](100)
	withInterval := successRate(99)
	withInterval.Interval = "2m"

	tests := []struct {
		name    string
		answers map[string]string
		address string
		timeout time.Duration
		metric  meshv1.CanaryMetric
		want    meshv1.CheckOutcome
		value   string
		message string
	}{
		{name: "no data", answers: map[string]string{"": sample()}, metric: successRate(99), want: meshv1.OutcomeNoData, message: "no data"},
		{name: "NaN", answers: map[string]string{"": sample("NaN")}, metric: successRate(99), want: meshv1.OutcomeNaN, value: "NaN"},
		{name: "+Inf never passes a max", answers: map[string]string{"": sample("+Inf")}, metric: duration(500), want: meshv1.OutcomeNaN, value: "+Inf"},
		{name: "-Inf never passes a max", answers: map[string]string{"": sample("-Inf")}, metric: duration(500), want: meshv1.OutcomeNaN, value: "-Inf"},
		{
			name:    "bad query",
			answers: map[string]string{"": `{"status":"error","errorType":"bad_data","error":"parse error: unexpected identifier"}`},
			metric:  successRate(99), want: meshv1.OutcomeBadQuery, message: "parse error",
		},
		{name: "unreachable", address: closedAddr, metric: successRate(99), want: meshv1.OutcomeUnreachable, message: "connection refused"},
		{name: "timeout", address: slow.URL, timeout: 20 * time.Millisecond, metric: successRate(99), want: meshv1.OutcomeTimeout},
		{
			name:    "too few requests",
			answers: map[string]string{"increase(": sample("12"), "rate(": sample("100")},
			metric:  withMin, want: meshv1.OutcomeTooFewRequests, message: "12 requests in the last 30s, fewer than minRequests 100",
		},
		{
			name:    "no requests at all is too few",
			answers: map[string]string{"increase(": sample(), "rate(": sample("100")},
			metric:  withMin, want: meshv1.OutcomeTooFewRequests, message: "0 requests",
		},
		{
			name:    "enough requests",
			answers: map[string]string{"increase(": sample("150.5"), "rate(": sample("99.9")},
			metric:  withMin, want: meshv1.OutcomePass, value: "99.9",
		},
		{
			name:    "counting fails",
			address: closedAddr,
			metric:  withMin, want: meshv1.OutcomeUnreachable, message: "counting requests",
		},
		{name: "metric interval", answers: map[string]string{"[2m]": sample("99.5")}, metric: withInterval, want: meshv1.OutcomePass, value: "99.5"},
		{name: "below the minimum", answers: map[string]string{"": sample("98.999")}, metric: successRate(99), want: meshv1.OutcomeFail, value: "99", message: "98.999 is below the minimum 99"},
		{
			name:   "neither built-in nor template",
			metric: meshv1.CanaryMetric{Name: "error-budget", ThresholdRange: meshv1.ThresholdRange{Max: ptr.To(1.0)}},
			want:   meshv1.OutcomeBadQuery, message: "not a built-in check",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			address := tt.address
			if address == "" {
				address = newPromServer(t, tt.answers).URL
			}
			r := newTestRunner(t, address, Options{DefaultProvider: providers.Config{Timeout: tt.timeout}})
			got := r.Run(context.Background(), testCanary(tt.metric))[0]
			if got.Outcome != tt.want || got.Value != tt.value || !strings.Contains(got.Message, tt.message) {
				t.Fatalf("got %s value=%q message=%q, want %s value=%q message containing %q",
					got.Outcome, got.Value, got.Message, tt.want, tt.value, tt.message)
			}
			if got.LastMeasured == nil {
				t.Fatal("LastMeasured not set")
			}
		})
	}
}

func TestNoDefaultAddress(t *testing.T) {
	r := newTestRunner(t, "", Options{})
	got := r.Run(context.Background(), testCanary(successRate(99)))[0]
	if got.Outcome != meshv1.OutcomeError || !strings.Contains(got.Message, "--prometheus-address") {
		t.Fatalf("got %+v", got)
	}
}

func template(ns, name, address, query string) *meshv1.MetricTemplate {
	return &meshv1.MetricTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       meshv1.MetricTemplateSpec{Provider: meshv1.MetricProvider{Address: address}, Query: query},
	}
}

func templated(name, ns string, vars map[string]string) meshv1.CanaryMetric {
	return meshv1.CanaryMetric{
		Name:              name,
		TemplateRef:       &meshv1.TemplateRef{Name: name, Namespace: ns},
		ThresholdRange:    meshv1.ThresholdRange{Min: ptr.To(0.0), Max: ptr.To(1.0)},
		TemplateVariables: vars,
	}
}

func TestTemplates(t *testing.T) {
	prom := newPromServer(t, map[string]string{"": sample("0.25")})
	query := `sum(rate(errors_total{namespace="{{ namespace }}",app="{{ target }}",canary="{{ name }}",svc="{{ service }}",route="{{ variables.route }}"}[{{ interval }}]))`

	r := newTestRunner(t, prom.URL, Options{},
		template("shop", "errors", "", query),
		template("monitoring", "shared", "", `vector({{ variables.x }})`),
	)
	got := r.Run(context.Background(), testCanary(
		templated("errors", "", map[string]string{"route": `/api"}`}),
		templated("shared", "monitoring", map[string]string{"x": "1"}),
		templated("missing", "", nil),
		templated("errors", "shop", map[string]string{}),
	))
	if got[0].Outcome != meshv1.OutcomePass || got[0].Value != "0.25" || got[0].Threshold != "0..1" {
		t.Errorf("same namespace: %+v", got[0])
	}
	if got[1].Outcome != meshv1.OutcomeBadQuery || !strings.Contains(got[1].Message, "--allow-cross-namespace-refs") {
		t.Errorf("cross namespace: %+v", got[1])
	}
	if got[2].Outcome != meshv1.OutcomeBadQuery || !strings.Contains(got[2].Message, "MetricTemplate shop/missing not found") {
		t.Errorf("missing: %+v", got[2])
	}
	if got[3].Outcome != meshv1.OutcomeBadQuery || !strings.Contains(got[3].Message, `"route" is not set`) {
		t.Errorf("missing variable: %+v", got[3])
	}
	queries, _ := prom.received()
	want := `sum(rate(errors_total{namespace="shop",app="reviews",canary="reviews",svc="reviews",route="/api\"}"}[30s]))`
	if len(queries) != 1 || queries[0] != want {
		t.Errorf("queries sent: %q, want only %q", queries, want)
	}

	shared := template("monitoring", "shared", "", `vector({{ variables.x }})`)
	shared.Spec.AllowedNamespaces = []string{"shop"}
	unlisted := template("monitoring", "private", "", `vector(1)`)
	unlisted.Spec.AllowedNamespaces = []string{"payments"}
	authed := template("monitoring", "authed", "", `vector(1)`)
	authed.Spec.AllowedNamespaces = []string{"*"}
	authed.Spec.Provider.SecretRef = &meshv1.LocalObjectReference{Name: "prom-auth"}
	r = newTestRunner(t, prom.URL, Options{AllowCrossNamespaceTemplates: true}, shared, unlisted, authed)
	if got := r.Run(context.Background(), testCanary(templated("shared", "monitoring", map[string]string{"x": "1"})))[0]; got.Outcome != meshv1.OutcomePass {
		t.Errorf("cross namespace allowed: %+v", got)
	}
	if got := r.Run(context.Background(), testCanary(templated("private", "monitoring", nil)))[0]; got.Outcome != meshv1.OutcomeBadQuery ||
		!strings.Contains(got.Message, "does not list namespace shop in spec.allowedNamespaces") {
		t.Errorf("cross namespace, not listed: %+v", got)
	}
	if got := r.Run(context.Background(), testCanary(templated("authed", "monitoring", nil)))[0]; got.Outcome != meshv1.OutcomeBadQuery ||
		!strings.Contains(got.Message, "spec.provider.secretRef: a template lends no credentials") {
		t.Errorf("cross namespace with a Secret: %+v", got)
	}
	if got := r.Run(context.Background(), testCanary(templated("shared", "monitoring", map[string]string{"x": "1) or vector(0"})))[0]; got.Outcome != meshv1.OutcomeBadQuery {
		t.Errorf("injected variable: %+v", got)
	}
}

func TestTemplateProviderCredentials(t *testing.T) {
	own := newPromServer(t, map[string]string{"": sample("0.5")})
	def := newPromServer(t, map[string]string{"": sample("0.5")})
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "prom-auth", Labels: optIn},
		Data:       map[string][]byte{"token": []byte("template-token\n")},
	}
	withSecret := template("shop", "authed", own.URL, `vector(0.5)`)
	withSecret.Spec.Provider.SecretRef = &meshv1.LocalObjectReference{Name: "prom-auth"}
	ownAddress := template("shop", "elsewhere", own.URL, `vector(0.5)`)
	defaultAddress := template("shop", "default", "", `vector(0.5)`)
	missingSecret := template("shop", "nosecret", own.URL, `vector(0.5)`)
	missingSecret.Spec.Provider.SecretRef = &meshv1.LocalObjectReference{Name: "absent"}

	// Secrets come through their own reader, as the operator passes an uncached one.
	secrets := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(secret).Build()
	r := newTestRunner(t, def.URL, loopbackOptions(Options{
		DefaultProvider: providers.Config{Credentials: providers.Credentials{BearerToken: "operator-token"}},
		SecretReader:    secrets,
	}), withSecret, ownAddress, defaultAddress, missingSecret)
	got := r.Run(context.Background(), testCanary(
		templated("authed", "", nil),
		templated("elsewhere", "", nil),
		templated("default", "", nil),
		templated("nosecret", "", nil),
	))
	for _, st := range got[:3] {
		if st.Outcome != meshv1.OutcomePass {
			t.Errorf("%s: %+v", st.Name, st)
		}
	}
	if got[3].Outcome != meshv1.OutcomeError || !strings.Contains(got[3].Message, "shop/absent") {
		t.Errorf("missing secret: %+v", got[3])
	}

	_, ownAuth := own.received()
	_, defAuth := def.received()
	// The operator's own token goes to the operator's Prometheus only, never to an address
	// a template author chose.
	if len(ownAuth) != 2 || !contains(ownAuth, "Bearer template-token") || !contains(ownAuth, "") {
		t.Errorf("template's Prometheus saw Authorization %q", ownAuth)
	}
	if len(defAuth) != 1 || defAuth[0] != "Bearer operator-token" {
		t.Errorf("default Prometheus saw Authorization %q", defAuth)
	}
}

// optIn labels a Secret whose credentials canopy may send.
var optIn = map[string]string{meshv1.LabelCredentials: "true"}

// loopbackOptions let a tenant's provider address and credentials reach this test's
// servers on 127.0.0.1, which the default policies refuse.
func loopbackOptions(o Options) Options {
	o.ProviderPolicy = &hooks.Policy{AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	o.Credentials = &hooks.CredentialPolicy{AllowedHosts: []string{"127.0.0.1"}}
	return o
}

// A tenant's provider address goes through the URL policy; credentials go only to allowed
// hosts, from Secrets that opted in and are no ServiceAccount token. Each refusal names the
// field and sends nothing.
func TestProviderPolicies(t *testing.T) {
	prom := newPromServer(t, map[string]string{"": sample("99.9")})
	secret := func(name string, labels map[string]string, typ corev1.SecretType) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: labels},
			Type:       typ,
			Data:       map[string][]byte{"token": []byte("s3cret")},
		}
	}
	secrets := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(
		secret("labelled", optIn, corev1.SecretTypeOpaque),
		secret("unlabelled", nil, corev1.SecretTypeOpaque),
		secret("sa-token", optIn, corev1.SecretTypeServiceAccountToken),
	).Build()
	canary := func(secretName string) *meshv1.Canary {
		c := testCanary(successRate(99))
		c.Spec.Analysis.Provider = &meshv1.MetricProvider{Address: prom.URL}
		if secretName != "" {
			c.Spec.Analysis.Provider.SecretRef = &meshv1.LocalObjectReference{Name: secretName}
		}
		return c
	}
	defaults := Options{SecretReader: secrets}
	noCredentials := loopbackOptions(Options{SecretReader: secrets})
	noCredentials.Credentials = nil
	tests := []struct {
		name    string
		opts    Options
		canary  *meshv1.Canary
		outcome meshv1.CheckOutcome
		message string
	}{
		{"loopback refused by default", defaults, canary(""), meshv1.OutcomeError, "spec.analysis.provider.address: URL http://127.0.0.1:"},
		{"loopback allowed by the operator", loopbackOptions(defaults), canary(""), meshv1.OutcomePass, ""},
		{"credentials to a host not allowed", noCredentials, canary("labelled"), meshv1.OutcomeError, "spec.analysis.provider.secretRef: URL http://127.0.0.1:"},
		{"a Secret that did not opt in", loopbackOptions(defaults), canary("unlabelled"), meshv1.OutcomeError, "is not labelled mesh.canopy.dev/credentials=true"},
		{"a ServiceAccount token", loopbackOptions(defaults), canary("sa-token"), meshv1.OutcomeError, "is a ServiceAccount token"},
		{"an allowed host and a Secret that opted in", loopbackOptions(defaults), canary("labelled"), meshv1.OutcomePass, ""},
	}
	for _, tt := range tests {
		got := newTestRunner(t, "", tt.opts).Run(context.Background(), tt.canary)[0]
		if got.Outcome != tt.outcome || !strings.Contains(got.Message, tt.message) {
			t.Errorf("%s: %s %q, want %s with %q", tt.name, got.Outcome, got.Message, tt.outcome, tt.message)
		}
	}
	// Only the two runs that passed reached the server, and only the last with the token.
	_, auth := prom.received()
	if len(auth) != 2 || auth[0] != "" || auth[1] != "Bearer s3cret" {
		t.Errorf("the provider saw Authorization %q, want [\"\" \"Bearer s3cret\"]", auth)
	}
}

// A redirect is not followed, and no answer that is not Prometheus' is copied into status.
func TestProviderAnswersStayOut(t *testing.T) {
	var followed atomic.Bool
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		followed.Store(true)
		_, _ = w.Write([]byte(sample("1")))
	}))
	t.Cleanup(target.Close)
	redirect := httptest.NewServer(http.RedirectHandler(target.URL+"/latest/meta-data/", http.StatusFound))
	t.Cleanup(redirect.Close)
	leaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("root:x:0:0:SECRET-CONTENT"))
	}))
	t.Cleanup(leaky.Close)
	for _, addr := range []string{redirect.URL, leaky.URL} {
		c := testCanary(successRate(99))
		c.Spec.Analysis.Provider = &meshv1.MetricProvider{Address: addr}
		got := newTestRunner(t, "", loopbackOptions(Options{})).Run(context.Background(), c)[0]
		if got.Outcome == meshv1.OutcomePass || strings.Contains(got.Message, "SECRET-CONTENT") || strings.Contains(got.Message, "meta-data") {
			t.Errorf("%s: %s %q", addr, got.Outcome, got.Message)
		}
	}
	if followed.Load() {
		t.Error("the redirect was followed")
	}
}

func TestFormatValue(t *testing.T) {
	for v, want := range map[float64]string{
		99.514: "99.51", 100: "100", 99.999: "100", 0.5: "0.5", 0: "0", 812.30: "812.3",
		0.00123: "0.00123", -0.001: "-0.001", -0.0001: "-0.0001", 1234567: "1234567",
	} {
		if got := FormatValue(v); got != want {
			t.Errorf("FormatValue(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestFormatThreshold(t *testing.T) {
	tests := []struct {
		r    meshv1.ThresholdRange
		want string
	}{
		{meshv1.ThresholdRange{Min: ptr.To(99.0)}, ">= 99"},
		{meshv1.ThresholdRange{Max: ptr.To(500.0)}, "<= 500"},
		{meshv1.ThresholdRange{Min: ptr.To(99.5), Max: ptr.To(100.0)}, "99.5..100"},
	}
	for _, tt := range tests {
		if got := FormatThreshold(tt.r); got != tt.want {
			t.Errorf("FormatThreshold(%+v) = %q, want %q", tt.r, got, tt.want)
		}
	}
}

func TestLongMessagesAreCut(t *testing.T) {
	long := strings.Repeat("é", 2000)
	prom := newPromServer(t, map[string]string{"": `{"status":"error","errorType":"bad_data","error":"` + long + `"}`})
	got := newTestRunner(t, prom.URL, Options{}).Run(context.Background(), testCanary(successRate(99)))[0]
	if len(got.Message) > maxMessage+3 || !strings.Contains(got.Message, "é...") || got.Outcome != meshv1.OutcomeBadQuery {
		t.Fatalf("message of %d bytes: %q...", len(got.Message), got.Message[:40])
	}
}

// A Canary can name its own Prometheus for the built-in checks, with credentials from a
// Secret in its namespace; the operator's default is then not asked.
func TestCanaryProviderForBuiltins(t *testing.T) {
	own := newPromServer(t, map[string]string{"": sample("99.9")})
	def := newPromServer(t, map[string]string{"": sample("0")})
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "mesh-prom", Labels: optIn},
		Data:       map[string][]byte{"username": []byte("canopy"), "password": []byte("s3cret")},
	}
	secrets := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(secret).Build()
	r := newTestRunner(t, def.URL, loopbackOptions(Options{SecretReader: secrets}))
	c := testCanary(successRate(99))
	c.Spec.Analysis.Provider = &meshv1.MetricProvider{Address: own.URL, SecretRef: &meshv1.LocalObjectReference{Name: "mesh-prom"}}
	got := r.Run(context.Background(), c)
	if got[0].Outcome != meshv1.OutcomePass || got[0].Value != "99.9" {
		t.Fatalf("success rate from the Canary's Prometheus: %+v", got[0])
	}
	if q, _ := def.received(); len(q) != 0 {
		t.Fatalf("the operator's default Prometheus was asked %v", q)
	}
	if _, auth := own.received(); len(auth) == 0 || !strings.HasPrefix(auth[0], "Basic ") {
		t.Fatalf("the Canary's Prometheus saw Authorization %q, want basic auth from the Secret", auth)
	}
}
