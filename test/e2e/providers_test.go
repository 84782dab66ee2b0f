package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go/encoding/cbor"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/analysis/providers/cloudwatch/cloudwatchtest"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

// Issue 23, items 1 and 2: a Canary's checks read MetricTemplates of providers other than
// Prometheus, created by a namespace editor: a web endpoint's JSON (a JSONPath), a real
// PromQL/MetricsQL endpoint read as victoriametrics (VictoriaMetrics where it was built,
// else Prometheus), a real InfluxDB 1.8 read with Flux and InfluxQL (where bin/influxd was
// built, else a server speaking both documented query APIs), and servers speaking Datadog's,
// New Relic's (NerdGraph), Dynatrace's and Graphite's documented query APIs and CloudWatch's
// GetMetricData (SigV4 by the AWS SDK), whose keys come from the editor's Secrets. A rollout is promoted
// while all say healthy, and rolled back when one says otherwise.
func TestNonPrometheusProvidersDecideRollouts(t *testing.T) {
	testenv.SkipIfShort(t)
	ns := env.CreateNamespace(t)
	tc := tenantClient(t, ns)
	startOperator(t, manager.Options{WatchNamespaces: ns, MetricsProviderAllowedCIDRs: "127.0.0.0/8", CredentialAllowedHosts: "127.0.0.1"})

	var healthy atomic.Bool
	healthy.Store(true)
	health := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"service":"reviews","status":{"healthy":%t,"checks":[{"name":"db","ok":true}]}}`, healthy.Load())
	})
	vm := startPromQLSource(t, ns)
	// successRate stores v and waits until the PromQL endpoint answers it, so that the next
	// rollout's checks see it.
	successRate := func(v float64) {
		t.Helper()
		vm.set(v)
		q := strings.ReplaceAll(vm.query, "{{ namespace }}", ns)
		testenv.Eventually(t, time.Minute, func() error {
			got, ok, err := promQuery(t.Context(), vm.url, q)
			if err != nil || !ok || got != v {
				return fmt.Errorf("%s answers %v (ok %t, err %v), want %v", vm.url, got, ok, err, v)
			}
			return nil
		})
	}
	successRate(99.9)

	// Datadog's query API as documented, answering only with the keys of the tenant's Secret.
	datadog := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/api/v1/query" || r.Header.Get("DD-API-KEY") != "dd-api" || r.Header.Get("DD-APPLICATION-KEY") != "dd-app" ||
			r.URL.Query().Get("from") == "" || r.URL.Query().Get("query") != "sum:trace.http.request.errors{service:reviews}.as_count()" {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"errors":["Forbidden"]}`))
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok","res_type":"time_series","series":[{"metric":"trace.http.request.errors","pointlist":[[1700000000000,0.5]]}]}`))
	})
	keys := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "datadog", Labels: map[string]string{meshv1.LabelCredentials: "true"}},
		StringData: map[string]string{"api-key": "dd-api", "application-key": "dd-app"}}
	if err := tc.Create(t.Context(), keys); err != nil {
		t.Fatal(err)
	}

	// NerdGraph and Dynatrace's metrics API as documented, each answering only with the
	// tenant's key.
	nerdGraph := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		var body struct {
			Variables struct {
				AccountID int64  `json:"accountId"`
				NRQL      string `json:"nrql"`
			} `json:"variables"`
		}
		if r.URL.Path != "/graphql" || r.Header.Get("API-Key") != "NRAK-TENANT" || json.NewDecoder(r.Body).Decode(&body) != nil ||
			body.Variables.AccountID != 4242 || body.Variables.NRQL != "SELECT percentage(count(*), WHERE error IS false) FROM Transaction WHERE appName = 'reviews' SINCE 1 minute ago" {
			_, _ = w.Write([]byte(`{"errors":[{"message":"Unauthorized or unexpected query"}]}`))
			return
		}
		_, _ = w.Write([]byte(`{"data":{"actor":{"account":{"nrql":{"results":[{"percentage":99.95}]}}}}}`))
	})
	dynatrace := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/api/v2/metrics/query" || r.Header.Get("Authorization") != "Api-Token dt0c01.TENANT" ||
			r.URL.Query().Get("metricSelector") != `builtin:service.errors.total.rate:filter(eq("dt.entity.service.name","reviews")):splitBy()` {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"code":401,"message":"Token is missing required scope"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"totalCount":1,"result":[{"metricId":"builtin:service.errors.total.rate","data":[{"dimensions":[],"timestamps":[1700000000000],"values":[0.2]}]}]}`))
	})
	// Graphite's render API as documented, behind basic auth.
	graphite := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		q := r.URL.Query()
		if r.URL.Path != "/render" || user != "canopy" || pass != "graphite-pw" || q.Get("format") != "json" || q.Get("until") != "now" ||
			!strings.HasPrefix(q.Get("from"), "-") || q.Get("target") != "sumSeries(stats."+ns+".reviews.errors)" {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte("<h1>Bad Request</h1>"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[{"target":"sumSeries(stats.x.reviews.errors)","tags":{},"datapoints":[[0.1,1700000000],[null,1700000060]]}]`))
	})
	influx := startInfluxSource(t)
	// CloudWatch's GetMetricData as the AWS SDK's service model defines it, accepting only
	// requests SigV4-signed with the tenant's access key.
	cloudWatch := cloudwatchtest.NewServer(t, aws.Credentials{AccessKeyID: "AKIDTENANT", SecretAccessKey: "tenant-secret"}, func(in cbor.Map) (int, cbor.Map) {
		queries, _ := in["MetricDataQueries"].(cbor.List)
		if len(queries) != 1 || queries[0].(cbor.Map)["Expression"] != cbor.String(`SELECT SUM(HTTPCode_Target_5XX_Count) FROM "AWS/ApplicationELB" WHERE TargetGroup = 'targetgroup/reviews/0123'`) {
			return http.StatusBadRequest, cbor.Map{"__type": cbor.String("InvalidParameterValueException"), "message": cbor.String("unexpected query")}
		}
		return http.StatusOK, cbor.Map{"MetricDataResults": cbor.List{cloudwatchtest.Result("e", "Complete", time.Now(), 0.6)}}
	})
	secrets := map[string]map[string]string{
		"newrelic":     {"api-key": "NRAK-TENANT"},
		"dynatrace":    {"token": "dt0c01.TENANT"},
		"cloudwatch":   {"aws-access-key-id": "AKIDTENANT", "aws-secret-access-key": "tenant-secret"},
		"graphite":     {"username": "canopy", "password": "graphite-pw"},
		"influx-token": {"token": influx.token},
		"influx-basic": {"username": "canopy", "password": "influx-pw"},
	}
	for name, data := range secrets {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{meshv1.LabelCredentials: "true"}}, StringData: data}
		if err := tc.Create(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}

	templates := map[string]meshv1.MetricTemplateSpec{
		"nr-success": {
			Provider: meshv1.MetricProvider{Type: "newrelic", Address: nerdGraph.URL, SecretRef: &meshv1.LocalObjectReference{Name: "newrelic"},
				NewRelic: &meshv1.NewRelicProvider{AccountID: 4242}},
			Query: "SELECT percentage(count(*), WHERE error IS false) FROM Transaction WHERE appName = '{{ service }}' SINCE 1 minute ago",
		},
		"dt-errors": {
			Provider: meshv1.MetricProvider{Type: "dynatrace", Address: dynatrace.URL, SecretRef: &meshv1.LocalObjectReference{Name: "dynatrace"}},
			Query:    `builtin:service.errors.total.rate:filter(eq("dt.entity.service.name","{{ service }}")):splitBy()`,
		},
		"flux-errors": {
			Provider: meshv1.MetricProvider{Type: "influxdb", Address: influx.url, SecretRef: &meshv1.LocalObjectReference{Name: "influx-token"},
				InfluxDB: &meshv1.InfluxDBProvider{Org: "shop"}},
			Query: `from(bucket: "mesh") |> range(start: -{{ interval }}) |> filter(fn: (r) => r.service == "{{ service }}") |> last()`,
		},
		"influxql-errors": {
			Provider: meshv1.MetricProvider{Type: "influxql", Address: influx.url, SecretRef: &meshv1.LocalObjectReference{Name: "influx-basic"},
				InfluxDB: &meshv1.InfluxDBProvider{Database: "mesh"}},
			Query: `SELECT last("errors") FROM "requests" WHERE "service" = '{{ service }}' AND time > now() - {{ interval }}`,
		},
		"cw-errors": {
			Provider: meshv1.MetricProvider{Type: "cloudwatch", Address: cloudWatch.URL, SecretRef: &meshv1.LocalObjectReference{Name: "cloudwatch"},
				CloudWatch: &meshv1.CloudWatchProvider{Region: cloudwatchtest.Region}},
			Query: `[{"Id": "e", "Expression": "SELECT SUM(HTTPCode_Target_5XX_Count) FROM \"AWS/ApplicationELB\" WHERE TargetGroup = 'targetgroup/{{ service }}/0123'"}]`,
		},
		"graphite-errors": {
			Provider: meshv1.MetricProvider{Type: "graphite", Address: graphite.URL, SecretRef: &meshv1.LocalObjectReference{Name: "graphite"}},
			Query:    "sumSeries(stats.{{ namespace }}.{{ service }}.errors)",
		},
		"dd-errors": {
			Provider: meshv1.MetricProvider{Type: "datadog", Address: datadog.URL, SecretRef: &meshv1.LocalObjectReference{Name: "datadog"}},
			Query:    "sum:trace.http.request.errors{service:{{ service }}}.as_count()",
		},
		"web-health": {Provider: meshv1.MetricProvider{Type: "web", Address: health.URL + "/health?service=reviews"}, Query: "{.status.healthy}"},
		"vm-success": {Provider: meshv1.MetricProvider{Type: "victoriametrics", Address: vm.url}, Query: vm.query},
	}
	c := newCanary(ns, "reviews", 10, 30)
	c.Spec.Analysis.Metrics = nil
	for name, spec := range templates {
		mt := &meshv1.MetricTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
		if err := tc.Create(t.Context(), mt); err != nil {
			t.Fatalf("creating MetricTemplate %s as the namespace editor: %v", name, err)
		}
	}
	c.Spec.Analysis.Metrics = []meshv1.CanaryMetric{
		{Name: "web-health", TemplateRef: &meshv1.TemplateRef{Name: "web-health"}, ThresholdRange: meshv1.ThresholdRange{Min: ptr.To(1.0)}},
		{Name: "vm-success", TemplateRef: &meshv1.TemplateRef{Name: "vm-success"}, ThresholdRange: meshv1.ThresholdRange{Min: ptr.To(99.0)}},
		{Name: "dd-errors", TemplateRef: &meshv1.TemplateRef{Name: "dd-errors"}, ThresholdRange: meshv1.ThresholdRange{Max: ptr.To(1.0)}},
		{Name: "nr-success", TemplateRef: &meshv1.TemplateRef{Name: "nr-success"}, ThresholdRange: meshv1.ThresholdRange{Min: ptr.To(99.0)}},
		{Name: "dt-errors", TemplateRef: &meshv1.TemplateRef{Name: "dt-errors"}, ThresholdRange: meshv1.ThresholdRange{Max: ptr.To(1.0)}},
		{Name: "graphite-errors", TemplateRef: &meshv1.TemplateRef{Name: "graphite-errors"}, ThresholdRange: meshv1.ThresholdRange{Max: ptr.To(1.0)}},
		{Name: "cw-errors", TemplateRef: &meshv1.TemplateRef{Name: "cw-errors"}, ThresholdRange: meshv1.ThresholdRange{Max: ptr.To(1.0)}},
		{Name: "flux-errors", TemplateRef: &meshv1.TemplateRef{Name: "flux-errors"}, ThresholdRange: meshv1.ThresholdRange{Max: ptr.To(1.0)}},
		{Name: "influxql-errors", TemplateRef: &meshv1.TemplateRef{Name: "influxql-errors"}, ThresholdRange: meshv1.ThresholdRange{Max: ptr.To(1.0)}},
	}

	// Both healthy: promoted, each check measured its provider's value.
	startRollout(t, tc, c)
	done := waitPhase(t, ns, "reviews", meshv1.PhaseSucceeded)
	for name, want := range map[string]string{"web-health": "1", "vm-success": "99.9", "dd-errors": "0.5", "nr-success": "99.95", "dt-errors": "0.2",
		"graphite-errors": "0.1", "flux-errors": influx.want["flux-errors"], "influxql-errors": influx.want["influxql-errors"], "cw-errors": "0.6"} {
		if ch := findCheck(done, name); ch == nil || ch.Value != want {
			t.Errorf("check %s = %+v, want value %s", name, ch, want)
		}
	}
	for name := range templates {
		testenv.Eventually(t, time.Minute, func() error {
			mt := &meshv1.MetricTemplate{}
			if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, mt); err != nil {
				return err
			}
			if cond := meta.FindStatusCondition(mt.Status.Conditions, meshv1.ConditionReady); cond == nil || cond.Status != metav1.ConditionTrue {
				return fmt.Errorf("MetricTemplate %s Ready = %+v", name, cond)
			}
			return nil
		})
	}

	// The PromQL endpoint says the success rate fell: rolled back on its value.
	successRate(42)
	setImage(t, ns, "reviews", "bookinfo/reviews:v3")
	failed := waitPhase(t, ns, "reviews", meshv1.PhaseFailed)
	if ch := findCheck(failed, "vm-success"); ch == nil || ch.Value != "42" || ch.Outcome != meshv1.OutcomeFail {
		t.Errorf("check vm-success after the rollback = %+v, want Failed at 42", ch)
	}

	// The web endpoint says unhealthy: rolled back on its value.
	successRate(99.9)
	healthy.Store(false)
	setImage(t, ns, "reviews", "bookinfo/reviews:v4")
	testenv.Eventually(t, time.Minute, func() error {
		got := getCanary(t, ns, "reviews")
		if got.Status.Phase != meshv1.PhaseFailed || got.Status.CurrentRevision == failed.Status.CurrentRevision {
			return fmt.Errorf("phase %s at revision %s, want Failed at a new revision", got.Status.Phase, got.Status.CurrentRevision)
		}
		if ch := findCheck(got, "web-health"); ch == nil || ch.Value != "0" || ch.Outcome != meshv1.OutcomeFail {
			return fmt.Errorf("check web-health = %+v, want Failed at 0", ch)
		}
		return nil
	})
}

// promQLSource is the endpoint the victoriametrics check reads: a real VictoriaMetrics
// (MetricsQL) where bin/victoria-metrics was built, else a real Prometheus scraping an
// exporter, whose query API is the one VictoriaMetrics serves (PromQL is MetricsQL too).
type promQLSource struct {
	url, query string
	set        func(v float64)
}

func startPromQLSource(t *testing.T, ns string) *promQLSource {
	t.Helper()
	vm, ok := startOptional(t, "VictoriaMetrics", testenv.StartVictoriaMetrics)
	if !ok {
		t.Log("the victoriametrics check reads Prometheus")
		return startPrometheusSource(t, ns)
	}
	return &promQLSource{
		url: vm.URL(),
		// last_over_time with a default window is MetricsQL, not PromQL.
		query: `max(last_over_time(reviews_success_percent{namespace="{{ namespace }}"}))`,
		set: func(v float64) {
			if err := vm.Import(t.Context(), fmt.Sprintf("reviews_success_percent{namespace=%q} %g\n", ns, v)); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func startPrometheusSource(t *testing.T, ns string) *promQLSource {
	t.Helper()
	var value atomic.Value
	value.Store(0.0)
	exporter := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = fmt.Fprintf(w, "reviews_success_percent{namespace=%q} %g\n", ns, value.Load())
	})
	prom, err := testenv.StartPrometheus(testenv.PrometheusOptions{Targets: []string{strings.TrimPrefix(exporter.URL, "http://")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Prometheus log:\n%s", prom.Log())
		}
		if err := prom.Close(); err != nil {
			t.Errorf("closing Prometheus: %v", err)
		}
	})
	return &promQLSource{url: prom.URL(), query: `max(reviews_success_percent{namespace="{{ namespace }}"})`, set: func(v float64) { value.Store(v) }}
}

// influxSource is the InfluxDB the flux-errors and influxql-errors checks read: a real
// InfluxDB 1.8 (InfluxQL on /query, Flux on /api/v2/query) where bin/influxd was built, else
// a server speaking both documented query APIs.
type influxSource struct {
	url   string
	token string            // the Flux check's token; InfluxDB 1.x takes user:password
	want  map[string]string // each check's value
}

func startInfluxSource(t *testing.T) *influxSource {
	t.Helper()
	db, ok := startOptional(t, "InfluxDB", func() (*testenv.InfluxDB, error) { return testenv.StartInfluxDB("canopy", "influx-pw") })
	if !ok {
		t.Log("the flux and influxql checks read a server mimicking InfluxDB")
		return startInfluxFake(t)
	}
	// A fresh point every second, so that every check's window holds one. Both languages
	// read the same series.
	const point = "requests,service=reviews errors=0.4"
	if err := db.Write(t.Context(), "mesh", point); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
				_ = db.Write(context.Background(), "mesh", point) // a lost point shows as the check's missing value
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-stopped })
	return &influxSource{url: db.URL(), token: "canopy:influx-pw", want: map[string]string{"flux-errors": "0.4", "influxql-errors": "0.4"}}
}

// startInfluxFake serves InfluxDB's two query APIs as documented.
func startInfluxFake(t *testing.T) *influxSource {
	t.Helper()
	// InfluxDB's two query APIs as documented: Flux (POST /api/v2/query, a token, annotated
	// CSV) and InfluxQL (GET /query, basic auth, JSON).
	// The check's interval is rendered as a duration literal of either language.
	fluxQuery := regexp.MustCompile("^" + regexp.QuoteMeta(`from(bucket: "mesh") |> range(start: -`) + "[0-9]+[smh]" +
		regexp.QuoteMeta(`) |> filter(fn: (r) => r.service == "reviews") |> last()`) + "$")
	influxQL := regexp.MustCompile("^" + regexp.QuoteMeta(`SELECT last("errors") FROM "requests" WHERE "service" = 'reviews' AND time > now() - `) + "[0-9]+[smh]$")
	server := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		var body struct{ Query, Type string }
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/api/v2/query" && r.URL.Query().Get("org") == "shop" && r.Header.Get("Authorization") == "Token influx-token" &&
			json.NewDecoder(r.Body).Decode(&body) == nil && body.Type == "flux" && fluxQuery.MatchString(body.Query):
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			_, _ = w.Write([]byte("#datatype,string,long,dateTime:RFC3339,double\r\n#group,false,false,false,false\r\n#default,_result,,,\r\n" +
				",result,table,_time,_value\r\n,,0,2026-12-07T10:00:00Z,0.3\r\n\r\n"))
		case r.Method == http.MethodGet && r.URL.Path == "/query" && r.URL.Query().Get("db") == "mesh" && user == "canopy" && pass == "influx-pw" &&
			influxQL.MatchString(r.URL.Query().Get("q")):
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"results":[{"statement_id":0,"series":[{"name":"requests","columns":["time","last"],"values":[[1700000000000,0.4]]}]}]}`))
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"code":"unauthorized","message":"unauthorized access"}`))
		}
	})
	return &influxSource{url: server.URL, token: "influx-token", want: map[string]string{"flux-errors": "0.3", "influxql-errors": "0.4"}}
}

// startOptional starts a server whose binary only some tests need. Outside CI (CI=true) a
// missing binary is logged and reported as !ok; any other error fails t. The server is
// closed when t ends, its log shown if t failed.
func startOptional[S interface {
	Log() string
	Close() error
}](t *testing.T, name string, start func() (S, error)) (S, bool) {
	t.Helper()
	s, err := start()
	if errors.Is(err, testenv.ErrOptionalBinary) && os.Getenv("CI") != "true" {
		t.Logf("%s: %v", name, err)
		return s, false
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", name, s.Log())
		}
		if err := s.Close(); err != nil {
			t.Errorf("closing %s: %v", name, err)
		}
	})
	return s, true
}
