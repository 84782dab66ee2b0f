package manager

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"canopy.dev/canopy/controllers"
)

func TestLeaderElectionFlagDefaultsAreControllerRuntimes(t *testing.T) {
	var o Options
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	o.BindFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if o.LeaseDuration != 15*time.Second || o.RenewDeadline != 10*time.Second || o.RetryPeriod != 2*time.Second {
		t.Fatalf("lease %s, renew %s, retry %s; want 15s, 10s, 2s", o.LeaseDuration, o.RenewDeadline, o.RetryPeriod)
	}
	if err := o.validateLeaderElection(); err != nil {
		t.Fatal(err)
	}
}

func TestLeaderElectionTimingsAreValidated(t *testing.T) {
	for _, tc := range []struct {
		name               string
		lease, renew, poll time.Duration
		err                string // a part of the error; "" for none
	}{
		{name: "short timings of the tests", lease: 4 * time.Second, renew: 3 * time.Second, poll: 500 * time.Millisecond},
		{name: "zero keeps the defaults", lease: 0, renew: 0, poll: 0},
		{name: "lease not longer than renew", lease: 10 * time.Second, renew: 10 * time.Second, poll: time.Second,
			err: "--leader-elect-lease-duration: 10s must be longer than --leader-elect-renew-deadline (10s)"},
		{name: "renew within the jitter of the retry", lease: 15 * time.Second, renew: 2 * time.Second, poll: 2 * time.Second,
			err: "--leader-elect-renew-deadline: 2s must be longer than 1.2 times --leader-elect-retry-period (2s)"},
		{name: "negative", lease: -time.Second, err: "--leader-elect-lease-duration: -1s is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{LeaseDuration: tc.lease, RenewDeadline: tc.renew, RetryPeriod: tc.poll}
			err := o.validateLeaderElection()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
}

// The API server is refused where canopy reaches it and at its in-cluster Service IP.
func TestAPIServerAddresses(t *testing.T) {
	for _, tt := range []struct {
		host, service string
		addrs, ports  string
	}{
		{"https://127.0.0.1:6443", "", "[]", "[127.0.0.1:6443]"},
		{"https://10.96.0.1:443", "10.96.0.1", "[10.96.0.1]", "[10.96.0.1:443]"},
		{"10.0.0.5", "", "[]", "[10.0.0.5:443]"},
		{"http://[::1]", "", "[]", "[[::1]:80]"},
		{"https://api.example.com:6443", "fd00::1", "[fd00::1]", "[]"},
	} {
		addrs, ports := apiserverAddresses(tt.host, tt.service)
		if got := fmt.Sprint(addrs); got != tt.addrs {
			t.Errorf("%s, %s: addresses %s, want %s", tt.host, tt.service, got, tt.addrs)
		}
		if got := fmt.Sprint(ports); got != tt.ports {
			t.Errorf("%s, %s: address:ports %s, want %s", tt.host, tt.service, got, tt.ports)
		}
	}
}

// The budget flags default to the safe bounds, and a negative one is refused by name.
func TestBudgetFlags(t *testing.T) {
	var o Options
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	o.BindFlags(fs)
	if err := fs.Parse([]string{"--max-webhook-timeout=5s"}); err != nil {
		t.Fatal(err)
	}
	l := o.Limits()
	if l.Reconcile != 30*time.Second || l.MaxCheckTimeout != 10*time.Second || l.MaxWebhookTimeout != 5*time.Second {
		t.Errorf("limits %+v, want 30s, 10s and the 5s given", l)
	}
	if err := fs.Parse([]string{"--reconcile-budget=-1s"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Limits().Validate(); err == nil || !strings.Contains(err.Error(), "--reconcile-budget: -1s is negative") {
		t.Errorf("a negative budget: %v, want it refused by name", err)
	}
}

// --mesh-config is namespace/name; anything else is refused naming the flag.
func TestParseMeshConfig(t *testing.T) {
	if got, err := parseMeshConfig(""); err != nil || got != controllers.DefaultMeshConfig {
		t.Errorf("empty: %v %v, want the default", got, err)
	}
	if got, err := parseMeshConfig("mesh/istio-1-31"); err != nil || got.Namespace != "mesh" || got.Name != "istio-1-31" {
		t.Errorf("mesh/istio-1-31: %v %v", got, err)
	}
	for _, bad := range []string{"istio", "/istio", "istio-system/", "a/b/c"} {
		if _, err := parseMeshConfig(bad); err == nil || !strings.Contains(err.Error(), "--mesh-config") {
			t.Errorf("%q: %v, want an error naming --mesh-config", bad, err)
		}
	}
}
