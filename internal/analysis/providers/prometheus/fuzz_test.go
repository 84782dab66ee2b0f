package prometheus

import (
	"math"
	"net/http"
	"strings"
	"testing"
)

// FuzzReadAnswer feeds arbitrary answers to the parser of Prometheus' API: whatever a provider
// address answers, the parser neither panics nor copies more than Prometheus' own bounded
// error message into the error (which reaches status and events), and a value it returns
// comes from a Prometheus answer.
func FuzzReadAnswer(f *testing.F) {
	for _, seed := range []struct {
		code int
		ct   string
		body string
	}{
		{200, "application/json", `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.5"]}]}}`},
		{200, "application/json", `{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}`},
		{200, "application/json", `{"status":"success","data":{"resultType":"vector","result":[]}}`},
		{400, "application/json", `{"status":"error","errorType":"bad_data","error":"parse error at char 3"}`},
		{503, "application/json", `{"status":"error","errorType":"timeout","error":"query timed out"}`},
		{200, "text/html", `<html><body>login: secret-token-1234</body></html>`},
		{302, "", ``},
		{200, "application/json", `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}`},
	} {
		f.Add(seed.code, seed.ct, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, code int, contentType string, body []byte) {
		if code < 100 || code > 599 {
			return
		}
		resp := &http.Response{StatusCode: code, Header: http.Header{"Content-Type": []string{contentType}}}
		v, err := readAnswer(resp, body)
		if err != nil {
			msg := err.Error()
			// Prometheus' own error is quoted up to 256 bytes; the rest is canopy's words.
			if len(msg) > 640 {
				t.Fatalf("an error of %d bytes from a %d-byte answer: %q", len(msg), len(body), msg)
			}
			if !strings.HasPrefix(string(body), "{") && len(body) >= 24 && strings.Contains(msg, string(body)) {
				t.Fatalf("the error quotes an answer that is not Prometheus': %q", msg)
			}
			return
		}
		if code/100 != 2 {
			t.Fatalf("a value (%v) from an answer with status %d", v, code)
		}
		_ = math.IsNaN(v)
	})
}
