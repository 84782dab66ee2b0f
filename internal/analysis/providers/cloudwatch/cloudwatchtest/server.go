// Package cloudwatchtest is a stand-in for CloudWatch's GetMetricData, for tests of the
// cloudwatch provider: it speaks the SDK's service model (Smithy RPC v2 CBOR) and accepts
// only requests SigV4-signed with the keys it is given.
package cloudwatchtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go/encoding/cbor"
)

// Region is the region the server's requests must be signed for.
const Region = "us-east-1"

// verifySigV4 signs a copy of r, with the headers r's Authorization says were signed, with
// the SDK's own SigV4 signer and creds, and compares the signatures: the server accepts
// only requests those keys signed for CloudWatch ("monitoring") in Region.
func verifySigV4(creds aws.Credentials, r *http.Request, body []byte) error {
	auth := r.Header.Get("Authorization")
	_, signedPart, ok := strings.Cut(auth, "SignedHeaders=")
	if !ok || !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential="+creds.AccessKeyID+"/") {
		return fmt.Errorf("authorization %q", auth)
	}
	signed, _, _ := strings.Cut(signedPart, ",")
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return err
	}
	cp, err := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	for _, h := range strings.Split(signed, ";") {
		if h != "host" && h != "content-length" {
			cp.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, cp, hex.EncodeToString(sum[:]), "monitoring", Region, at); err != nil {
		return err
	}
	if got := cp.Header.Get("Authorization"); got != auth {
		return fmt.Errorf("signature mismatch:\n got  %s\n want %s", auth, got)
	}
	return nil
}

// NewServer stands in for CloudWatch's GetMetricData as the SDK's service model defines it:
// POST /service/GraniteServiceVersion20100801/operation/GetMetricData, a CBOR
// GetMetricDataInput, signed with SigV4 by creds; the answer a CBOR GetMetricDataOutput, or
// an error {"__type","message"}. answer gets the decoded input and returns the status and
// the CBOR body.
func NewServer(t testing.TB, creds aws.Credentials, answer func(in cbor.Map) (int, cbor.Map)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/cbor")
		w.Header().Set("Smithy-Protocol", "rpc-v2-cbor")
		if err := verifySigV4(creds, r, body); err != nil {
			t.Logf("CloudWatch stand-in refused a request: %v", err)
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write(cbor.Encode(cbor.Map{"__type": cbor.String("IncompleteSignature"), "message": cbor.String("The request signature we calculated does not match")}))
			return
		}
		in, err := cbor.Decode(body)
		m, ok := in.(cbor.Map)
		if r.Method != http.MethodPost || r.URL.Path != "/service/GraniteServiceVersion20100801/operation/GetMetricData" ||
			r.Header.Get("Smithy-Protocol") != "rpc-v2-cbor" || err != nil || !ok {
			t.Errorf("CloudWatch stand-in: request %s %s, Smithy-Protocol %q, body %v (%v)", r.Method, r.URL, r.Header.Get("Smithy-Protocol"), in, err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		code, out := answer(m)
		w.WriteHeader(code)
		_, _ = w.Write(cbor.Encode(out))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Result is a MetricDataResult of values, newest first, a minute apart before now.
func Result(id, status string, now time.Time, values ...float64) cbor.Map {
	ts, vs := cbor.List{}, cbor.List{}
	for i, v := range values {
		ts = append(ts, &cbor.Tag{ID: 1, Value: cbor.Float64(float64(now.Add(-time.Duration(i) * time.Minute).Unix()))})
		vs = append(vs, cbor.Float64(v))
	}
	return cbor.Map{"Id": cbor.String(id), "Label": cbor.String(id), "StatusCode": cbor.String(status), "Timestamps": ts, "Values": vs, "Messages": cbor.List{}}
}
