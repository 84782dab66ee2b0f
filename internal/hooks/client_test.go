package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// loopbackPolicy lets the tests reach their own servers on 127.0.0.1, which the default
// policy refuses.
func loopbackPolicy(t *testing.T) *Policy {
	t.Helper()
	p, err := ParsePolicy(nil, []string{"127.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// hookServer answers with the codes given, one per request, then with the last one.
type hookServer struct {
	*httptest.Server
	calls    atomic.Int32
	payloads chan Payload
}

func newHookServer(t *testing.T, codes ...int) *hookServer {
	t.Helper()
	h := &hookServer{payloads: make(chan Payload, 16)}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(h.calls.Add(1))
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("got %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		}
		var p Payload
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			t.Errorf("decoding the payload: %v", err)
		}
		select {
		case h.payloads <- p:
		default:
		}
		code := codes[min(n, len(codes))-1]
		w.WriteHeader(code)
		if code != http.StatusOK {
			_, _ = fmt.Fprintf(w, "attempt %d: waiting for QA\n", n)
		}
	}))
	t.Cleanup(h.Close)
	return h
}

func hook(u string, retries int32) meshv1.CanaryWebhook {
	return meshv1.CanaryWebhook{Name: "gate", Type: meshv1.WebhookConfirmPromotion, URL: u, Timeout: "5s", Retries: ptr.To(retries)}
}

var payload = Payload{
	Name: "reviews", Namespace: "shop", Phase: meshv1.PhaseProgressing, Weight: 30,
	Revision: "abc123", Type: meshv1.WebhookConfirmPromotion, Metadata: map[string]string{"env": "staging"},
}

func TestCallPostsThePayload(t *testing.T) {
	srv := newHookServer(t, http.StatusOK)
	c := NewClient(loopbackPolicy(t), ClientOptions{Backoff: time.Millisecond})
	if err := c.Call(context.Background(), hook(srv.URL+"/gate", 2), payload); err != nil {
		t.Fatal(err)
	}
	got := <-srv.payloads
	if fmt.Sprint(got) != fmt.Sprint(payload) {
		t.Fatalf("payload = %+v, want %+v", got, payload)
	}
}

func TestCallRetries(t *testing.T) {
	tests := []struct {
		name      string
		codes     []int
		retries   int32
		wantCalls int32
		wantCode  int // 0: success
	}{
		{name: "recovers after server errors", codes: []int{503, 500, 200}, retries: 2, wantCalls: 3},
		{name: "gives up after retries", codes: []int{500}, retries: 1, wantCalls: 2, wantCode: 500},
		{name: "no retries", codes: []int{502}, retries: 0, wantCalls: 1, wantCode: 502},
		{name: "a closed gate is an answer, not retried", codes: []int{403}, retries: 3, wantCalls: 1, wantCode: 403},
		{name: "too many requests is retried", codes: []int{429, 200}, retries: 3, wantCalls: 2},
		{name: "any 2xx opens", codes: []int{204}, retries: 3, wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newHookServer(t, tt.codes...)
			c := NewClient(loopbackPolicy(t), ClientOptions{Backoff: time.Millisecond})
			err := c.Call(context.Background(), hook(srv.URL, tt.retries), payload)
			if got := srv.calls.Load(); got != tt.wantCalls {
				t.Errorf("%d calls, want %d", got, tt.wantCalls)
			}
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatalf("Call() = %v", err)
				}
				return
			}
			var se *StatusError
			if !errors.As(err, &se) || se.StatusCode != tt.wantCode || !strings.Contains(se.Body, "waiting for QA") {
				t.Fatalf("Call() = %v, want a StatusError %d with the answer's body", err, tt.wantCode)
			}
		})
	}
}

func TestCallTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	h := hook(srv.URL, 0)
	h.Timeout = "20ms"
	err := NewClient(loopbackPolicy(t), ClientOptions{}).Call(context.Background(), h, payload)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call() = %v, want a deadline error", err)
	}
}

func TestCallRefusedByPolicy(t *testing.T) {
	srv := newHookServer(t, http.StatusOK)
	err := NewClient(nil, ClientOptions{}).Call(context.Background(), hook(srv.URL, 2), payload)
	var na *NotAllowedError
	if !errors.As(err, &na) {
		t.Fatalf("Call() = %v, want NotAllowedError", err)
	}
	if srv.calls.Load() != 0 {
		t.Fatal("the refused URL was called")
	}
}

func TestCallPinsTheCheckedAddress(t *testing.T) {
	srv := newHookServer(t, http.StatusServiceUnavailable, http.StatusOK)
	port := mustURL(t, srv.URL).Port()
	// The name first resolves to the test server, then to the metadata service: the call
	// and its retry must both go where the policy looked.
	dns := newZone(map[string][][]string{"hooks.example": {{"127.0.0.1"}, {"169.254.169.254"}}})
	p := loopbackPolicy(t)
	p.Resolver = dns

	err := NewClient(p, ClientOptions{Backoff: time.Millisecond}).Call(context.Background(), hook("http://hooks.example:"+port+"/gate", 1), payload)
	if err != nil {
		t.Fatalf("Call() = %v", err)
	}
	if srv.calls.Load() != 2 || dns.count("hooks.example") != 1 {
		t.Fatalf("%d calls and %d lookups, want 2 calls and 1 lookup", srv.calls.Load(), dns.count("hooks.example"))
	}
	// A second call resolves again, and is refused.
	err = NewClient(p, ClientOptions{}).Call(context.Background(), hook("http://hooks.example:"+port+"/gate", 1), payload)
	var na *NotAllowedError
	if !errors.As(err, &na) {
		t.Fatalf("Call() after rebinding = %v, want NotAllowedError", err)
	}
}

func TestCallTLSVerifiesTheHostName(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	port := mustURL(t, srv.URL).Port()
	// httptest's certificate names example.com and 127.0.0.1: dialling the pinned address
	// must still verify the name in the URL.
	p := loopbackPolicy(t)
	p.Resolver = newZone(map[string][][]string{"example.com": {{"127.0.0.1"}}, "other.example": {{"127.0.0.1"}}})
	c := NewClient(p, ClientOptions{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs})

	if err := c.Call(context.Background(), hook("https://example.com:"+port+"/", 0), payload); err != nil {
		t.Fatalf("Call(example.com) = %v", err)
	}
	err := c.Call(context.Background(), hook("https://other.example:"+port+"/", 0), payload)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Call(other.example) = %v, want a certificate error", err)
	}
}

func TestCallDoesNotFollowRedirects(t *testing.T) {
	elsewhere := newHookServer(t, http.StatusOK)
	srv := httptest.NewServer(http.RedirectHandler(elsewhere.URL, http.StatusFound))
	defer srv.Close()
	err := NewClient(loopbackPolicy(t), ClientOptions{}).Call(context.Background(), hook(srv.URL, 2), payload)
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusFound {
		t.Fatalf("Call() = %v, want a StatusError 302", err)
	}
	if elsewhere.calls.Load() != 0 {
		t.Fatal("the redirect was followed")
	}
}

func TestCallStopsWithTheContext(t *testing.T) {
	srv := newHookServer(t, http.StatusServiceUnavailable)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := NewClient(loopbackPolicy(t), ClientOptions{Backoff: time.Hour}).Call(ctx, hook(srv.URL, 5), payload)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Call() = %v, want context.Canceled", err)
	}
}

func TestCallRefusesABadTimeout(t *testing.T) {
	h := hook("http://127.0.0.1:1/", 0)
	h.Timeout = "soon"
	if err := NewClient(loopbackPolicy(t), ClientOptions{}).Call(context.Background(), h, payload); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("Call() = %v", err)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestStatusErrorBodyIsPrintable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte("closed:\r\n\x1b[31m waiting\tfor QA \xff"))
	}))
	defer srv.Close()
	err := NewClient(loopbackPolicy(t), ClientOptions{}).Call(context.Background(), hook(srv.URL, 0), payload)
	var se *StatusError
	if !errors.As(err, &se) || se.Body != "closed: [31m waiting for QA ?" {
		t.Fatalf("Call() = %v, want the body cleaned", err)
	}
}

// A call that gets no answer says so without the URL (its query carries a token) or the
// address dialed.
func TestTransportErrorsShowNoURL(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	srv.Close() // nothing listens there any more: connection refused
	c := NewClient(loopbackPolicy(t), ClientOptions{Backoff: time.Millisecond})
	err := c.Call(context.Background(), hook("http://"+addr+"/hook?token=s3cret", 0), payload)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Call() = %v, want connection refused", err)
	}
	for _, leak := range []string{"s3cret", addr, "127.0.0.1"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("the error %q shows %q", err, leak)
		}
	}
}

// A webhook's header comes from a Secret that opted in, to a host credentials may go to;
// a ServiceAccount token, a Secret that did not opt in or another host gets nothing sent.
func TestCallHeaderFromSecret(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("Authorization"))
	}))
	t.Cleanup(srv.Close)
	secret := func(name string, labels map[string]string, typ corev1.SecretType) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: labels}, Type: typ,
			Data: map[string][]byte{"auth": []byte("Bearer s3cret\n")}}
	}
	optIn := map[string]string{meshv1.LabelCredentials: "true"}
	secrets := fake.NewClientBuilder().WithObjects(
		secret("ok", optIn, corev1.SecretTypeOpaque),
		secret("unlabelled", nil, corev1.SecretTypeOpaque),
		secret("sa", optIn, corev1.SecretTypeServiceAccountToken),
	).Build()
	withHeader := func(name string) meshv1.CanaryWebhook {
		h := hook(srv.URL+"/gate", 0)
		h.Header = &meshv1.WebhookHeader{Name: "authorization", SecretKeyRef: meshv1.SecretKeyReference{Name: name, Key: "auth"}}
		return h
	}
	allowed := NewClient(loopbackPolicy(t), ClientOptions{Secrets: secrets, Credentials: &CredentialPolicy{AllowedHosts: []string{"127.0.0.1"}}})
	elsewhere := NewClient(loopbackPolicy(t), ClientOptions{Secrets: secrets, Credentials: &CredentialPolicy{AllowedHosts: []string{"hooks.example.com"}}})
	for _, tt := range []struct {
		name   string
		client *Client
		secret string
		err    string
	}{
		{"a host not allowed", elsewhere, "ok", "header.secretKeyRef: URL http://127.0.0.1:"},
		{"a Secret that did not opt in", allowed, "unlabelled", "is not labelled mesh.canopy.dev/credentials=true"},
		{"a ServiceAccount token", allowed, "sa", "is a ServiceAccount token"},
		{"a missing key", allowed, "absent", "Secret shop/absent is not found"},
	} {
		err := tt.client.Call(context.Background(), withHeader(tt.secret), payload)
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.err)
		}
		if v, _ := got.Load().(string); v != "" {
			t.Fatalf("%s: the hook received %q", tt.name, v)
		}
	}
	if err := allowed.Call(context.Background(), withHeader("ok"), payload); err != nil {
		t.Fatal(err)
	}
	if v, _ := got.Load().(string); v != "Bearer s3cret" {
		t.Fatalf("the hook received Authorization %q, want the Secret's value", v)
	}
}
