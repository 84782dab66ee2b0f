// Package cloudwatch runs GetMetricData queries against Amazon CloudWatch with the AWS SDK
// for Go v2, which signs each request with SigV4 and speaks CloudWatch's wire protocol.
package cloudwatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/smithy-go"

	"canopy.dev/canopy/internal/analysis/providers"
)

// Type is the provider type this package implements.
const Type = "cloudwatch"

const backend = "CloudWatch"

// Client queries CloudWatch in one region at one endpoint.
type Client struct {
	api      *cloudwatch.Client
	endpoint string
	timeout  time.Duration
	window   time.Duration
	now      func() time.Time
}

var _ providers.Provider = (*Client)(nil)

// New returns a Client for cfg on transport. Only the Secret's access key signs requests:
// never the operator's own AWS identity (its environment, its role), which a tenant must
// not borrow.
func New(cfg providers.Config, transport http.RoundTripper) (*Client, error) {
	base, timeout, err := providers.Base(cfg, Type, backend)
	if err != nil {
		return nil, err
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("the CloudWatch provider needs cloudWatch.region")
	}
	keys := cfg.Credentials.AWS
	if keys.AccessKeyID == "" || keys.SecretAccessKey == "" {
		return nil, fmt.Errorf("the CloudWatch provider needs a secretRef with %q and %q", providers.SecretKeyAWSAccessKeyID, providers.SecretKeyAWSSecretAccessKey)
	}
	api := cloudwatch.New(cloudwatch.Options{
		Region:       cfg.Region,
		BaseEndpoint: aws.String(base.String()),
		Credentials:  credentials.NewStaticCredentialsProvider(keys.AccessKeyID, keys.SecretAccessKey, keys.SessionToken),
		HTTPClient:   providers.NewHTTPClient(transport),
		// One attempt: the check's own retries and the reconcile's budget decide.
		RetryMaxAttempts: 1,
	})
	return &Client{api: api, endpoint: base.Redacted(), timeout: timeout, window: cfg.LookBack(), now: time.Now}, nil
}

// ParseQueries reads a query: a JSON list of GetMetricData's MetricDataQuery, in the API's
// field names (Id, Expression, MetricStat, ReturnData, ...; matched without regard to case,
// so Argo Rollouts' metricDataQueries written as JSON read the same). Exactly one of them
// may return data (ReturnData unset or true): its value is the check's.
func ParseQueries(query string) ([]types.MetricDataQuery, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(query)))
	dec.DisallowUnknownFields()
	var queries []types.MetricDataQuery
	if err := dec.Decode(&queries); err != nil {
		return nil, fmt.Errorf("not a JSON list of MetricDataQuery: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("text after the list of MetricDataQuery")
	}
	returning := 0
	for i, q := range queries {
		if q.Id == nil || *q.Id == "" {
			return nil, fmt.Errorf("query %d has no Id", i)
		}
		if (q.Expression == nil) == (q.MetricStat == nil) {
			return nil, fmt.Errorf("query %q needs one of Expression and MetricStat", *q.Id)
		}
		if q.ReturnData == nil || *q.ReturnData {
			returning++
		}
	}
	if returning != 1 {
		return nil, fmt.Errorf("%d of the queries return data, want one: set \"ReturnData\": false on the others", returning)
	}
	return queries, nil
}

// Query runs GetMetricData over the check's window, newest value first, and returns the
// newest value of the one query that returns data.
func (c *Client) Query(ctx context.Context, query string) (float64, error) {
	queries, err := ParseQueries(query)
	if err != nil {
		return 0, providers.Errorf(providers.BadQuery, "%s", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	now := c.now()
	out, err := c.api.GetMetricData(ctx, &cloudwatch.GetMetricDataInput{
		MetricDataQueries: queries,
		StartTime:         aws.Time(now.Add(-c.window)),
		EndTime:           aws.Time(now),
		ScanBy:            types.ScanByTimestampDescending,
	})
	if err != nil {
		return 0, classify(ctx, err)
	}
	var results []types.MetricDataResult
	for _, r := range out.MetricDataResults {
		results = append(results, r)
	}
	if len(results) != 1 {
		return 0, providers.Errorf(providers.BadQuery, "CloudWatch returned %d results, want one", len(results))
	}
	r := results[0]
	switch r.StatusCode {
	case types.StatusCodeComplete, types.StatusCodePartialData:
	case types.StatusCodeForbidden:
		return 0, providers.Errorf(providers.Other, "CloudWatch refused the query %s: %s", aws.ToString(r.Id), messages(r.Messages))
	default:
		return 0, providers.Errorf(providers.Other, "CloudWatch answered %s for %s: %s", r.StatusCode, aws.ToString(r.Id), messages(r.Messages))
	}
	if len(r.Values) == 0 {
		return 0, providers.Errorf(providers.NoData, "the query %s has no value in the window", aws.ToString(r.Id))
	}
	// ScanBy TimestampDescending: the first value is the newest.
	return r.Values[0], nil
}

func messages(ms []types.MessageData) string {
	if len(ms) == 0 {
		return "no message"
	}
	return providers.QuoteError(aws.ToString(ms[0].Code) + ": " + aws.ToString(ms[0].Value))
}

// classify tells an error CloudWatch answered (quoted: the SDK decoded its error body) from
// one of the way there.
func classify(ctx context.Context, err error) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		msg := providers.QuoteError(apiErr.ErrorCode() + ": " + apiErr.ErrorMessage())
		switch apiErr.ErrorCode() {
		case "InvalidParameterValueException", "InvalidParameterCombinationException", "MissingRequiredParameterException",
			"InvalidParameterValue", "InvalidParameterCombination", "MissingParameter", "ValidationError":
			return providers.Errorf(providers.BadQuery, "CloudWatch refused the query: %s", msg)
		case "LimitExceededException", "Throttling", "ThrottlingException":
			return providers.Errorf(providers.Unreachable, "CloudWatch throttled the query: %s", msg)
		}
		return providers.Errorf(providers.Other, "CloudWatch answered an error: %s", msg)
	}
	return providers.ClassifyTransportError(ctx, backend, err)
}

// String keeps a Client's keys out of logs that print it.
func (c *Client) String() string { return fmt.Sprintf("cloudwatch(%s)", c.endpoint) }
