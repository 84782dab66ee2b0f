package cloudwatch

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go/encoding/cbor"

	"canopy.dev/canopy/internal/analysis/providers"
	"canopy.dev/canopy/internal/analysis/providers/cloudwatch/cloudwatchtest"
	"canopy.dev/canopy/internal/analysis/providers/providertest"
)

var keys = providers.AWSKeys{AccessKeyID: "AKIDTENANT", SecretAccessKey: "tenant-secret", SessionToken: "tenant-session"}

func cloudWatchServer(t *testing.T, answer func(in cbor.Map) (int, cbor.Map)) *httptest.Server {
	return cloudwatchtest.NewServer(t, aws.Credentials{AccessKeyID: keys.AccessKeyID, SecretAccessKey: keys.SecretAccessKey, SessionToken: keys.SessionToken}, answer)
}

func result(id, status string, values ...float64) cbor.Map {
	return cloudwatchtest.Result(id, status, time.Unix(1700000000, 0), values...)
}

func newClient(t *testing.T, address string, k providers.AWSKeys) *Client {
	t.Helper()
	c, err := New(providers.Config{Type: Type, Address: address, Region: cloudwatchtest.Region, Window: 2 * time.Minute,
		Credentials: providers.Credentials{AWS: k}}, http.DefaultTransport)
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return time.Unix(1700000000, 0) }
	return c
}

const errorRate = `[
  {"Id": "errors", "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "HTTPCode_Target_5XX_Count",
    "Dimensions": [{"Name": "TargetGroup", "Value": "targetgroup/reviews-canary/0123"}]}, "Period": 60, "Stat": "Sum"}, "ReturnData": false},
  {"Id": "requests", "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount",
    "Dimensions": [{"Name": "TargetGroup", "Value": "targetgroup/reviews-canary/0123"}]}, "Period": 60, "Stat": "Sum"}, "ReturnData": false},
  {"Id": "rate", "Expression": "100 * errors / requests", "Label": "error rate"}
]`

func TestQuerySendsASignedGetMetricData(t *testing.T) {
	var seen cbor.Map
	srv := cloudWatchServer(t, func(in cbor.Map) (int, cbor.Map) {
		seen = in
		return 200, cbor.Map{"MetricDataResults": cbor.List{result("rate", "Complete", 0.5, 0.25)}, "Messages": cbor.List{}}
	})
	got, err := newClient(t, srv.URL, keys).Query(context.Background(), errorRate)
	if err != nil || got != 0.5 {
		t.Fatalf("Query = %v, %v; want the newest value 0.5", got, err)
	}
	queries, _ := seen["MetricDataQueries"].(cbor.List)
	start, _ := seen["StartTime"].(*cbor.Tag)
	end, _ := seen["EndTime"].(*cbor.Tag)
	if len(queries) != 3 || seen["ScanBy"] != cbor.String("TimestampDescending") || start == nil || end == nil ||
		start.Value != cbor.Float64(1700000000-120) || end.Value != cbor.Float64(1700000000) {
		t.Errorf("input %#v", seen)
	}
	if q, _ := queries[2].(cbor.Map); q["Expression"] != cbor.String("100 * errors / requests") {
		t.Errorf("the expression query %#v", queries[2])
	}
}

func TestQueryAnswers(t *testing.T) {
	for _, tt := range []struct {
		name     string
		code     int
		out      cbor.Map
		keys     *providers.AWSKeys
		want     float64
		wantKind providers.Kind
		wantMsg  string
	}{
		{name: "partial data", code: 200, out: cbor.Map{"MetricDataResults": cbor.List{result("rate", "PartialData", 3)}}, want: 3},
		{name: "no value", code: 200, out: cbor.Map{"MetricDataResults": cbor.List{result("rate", "Complete")}}, wantKind: providers.NoData},
		{name: "forbidden", code: 200, out: cbor.Map{"MetricDataResults": cbor.List{cbor.Map{"Id": cbor.String("rate"), "StatusCode": cbor.String("Forbidden"),
			"Messages": cbor.List{cbor.Map{"Code": cbor.String("Forbidden"), "Value": cbor.String("no access to account 1234")}}}}}, wantKind: providers.Other, wantMsg: "no access to account 1234"},
		{name: "invalid parameter", code: 400, out: cbor.Map{"__type": cbor.String("InvalidParameterValueException"), "message": cbor.String("The expression is not valid: errors /")},
			wantKind: providers.BadQuery, wantMsg: "The expression is not valid"},
		{name: "wrong keys", code: 200, out: cbor.Map{}, keys: &providers.AWSKeys{AccessKeyID: "AKIDTENANT", SecretAccessKey: "guess", SessionToken: "tenant-session"},
			wantKind: providers.Other, wantMsg: "IncompleteSignature"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := cloudWatchServer(t, func(cbor.Map) (int, cbor.Map) { return tt.code, tt.out })
			k := keys
			if tt.keys != nil {
				k = *tt.keys
			}
			got, err := newClient(t, srv.URL, k).Query(context.Background(), errorRate)
			providertest.CheckQuery(t, got, err, tt.want, tt.wantKind, tt.wantMsg)
		})
	}
}

// An answer that is not CloudWatch's is not quoted.
func TestQueryDoesNotQuoteOtherAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("<html>secret internal page</html>"))
	}))
	t.Cleanup(srv.Close)
	_, err := newClient(t, srv.URL, keys).Query(context.Background(), errorRate)
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("Query error = %v", err)
	}
}

func TestParseQueries(t *testing.T) {
	argo := `[{"id": "rate", "expression": "SUM(METRICS())"}]`
	if _, err := ParseQueries(argo); err != nil {
		t.Errorf("Argo's field names: %v", err)
	}
	for q, want := range map[string]string{
		`{"Id": "a"}`:                     "not a JSON list",
		`[{"Id": "a", "Expresion": "x"}]`: "unknown field",
		`[{"Expression": "x"}]`:           "no Id",
		`[{"Id": "a"}]`:                   "one of Expression and MetricStat",
		`[{"Id": "a", "Expression": "x"}, {"Id": "b", "Expression": "y"}]`: "2 of the queries return data",
	} {
		if _, err := ParseQueries(q); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseQueries(%s) = %v, want an error containing %q", q, err, want)
		}
	}
}

func TestNewNeedsTheTenantsKeys(t *testing.T) {
	if _, err := New(providers.Config{Type: Type, Address: "https://monitoring.us-east-1.amazonaws.com", Region: "us-east-1"}, http.DefaultTransport); err == nil {
		t.Error("New without keys accepted: it must never fall back to the operator's AWS identity")
	}
}
