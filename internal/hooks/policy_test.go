package hooks

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// zone is a DNS stand-in: a fixed table of names, so that no test sends a query off this
// machine. Each name may answer differently on successive lookups.
type zone struct {
	mu      sync.Mutex
	answers map[string][][]string
	lookups map[string]int
}

func newZone(answers map[string][][]string) *zone {
	return &zone{answers: answers, lookups: map[string]int{}}
}

func (z *zone) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	seq, ok := z.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	n := z.lookups[host]
	z.lookups[host]++
	answer := seq[min(n, len(seq)-1)]
	var addrs []netip.Addr
	for _, a := range answer {
		addrs = append(addrs, netip.MustParseAddr(a))
	}
	return addrs, nil
}

func (z *zone) count(host string) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.lookups[host]
}

func TestPolicy(t *testing.T) {
	dns := newZone(map[string][][]string{
		"hooks.shop.svc.cluster.local": {{"10.96.0.5"}},
		"gate.ci.example":              {{"203.0.113.7"}},
		"rebind.example":               {{"203.0.113.9", "169.254.169.254"}},
		"private.example":              {{"192.168.1.20"}},
		"v6meta.example":               {{"fd00:ec2::254"}},
		"localhost":                    {{"127.0.0.1", "::1"}},
	})
	mustParse := func(hosts, cidrs []string) *Policy {
		p, err := ParsePolicy(hosts, cidrs)
		if err != nil {
			t.Fatal(err)
		}
		p.Resolver = dns
		return p
	}
	open := mustParse(nil, nil)
	restricted := mustParse([]string{"hooks.shop.svc.cluster.local", "*.ci.example"}, []string{"10.96.0.0/12"})
	loopback := mustParse(nil, []string{"127.0.0.0/8", "::1"})
	everything := mustParse(nil, []string{"0.0.0.0/0", "::/0"})
	metadataOptIn := mustParse([]string{"metadata.google.internal"}, []string{"169.254.169.254"})
	wildcardOnly := mustParse([]string{"*.google.internal"}, nil)
	private := mustParse(nil, []string{"10.0.0.0/8"})
	apiserver := mustParse(nil, []string{"10.96.0.0/12", "127.0.0.0/8"})
	apiserver.DeniedAddrs = []netip.Addr{netip.MustParseAddr("10.96.0.1")}
	apiserver.DeniedAddrPorts = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:6443")}

	tests := []struct {
		policy *Policy
		url    string
		reason string // "" when allowed
	}{
		{open, "https://203.0.113.7:8443/x", ""},
		{open, "http://10.1.2.3/", "refused range 10.0.0.0/8 (private)"},
		{open, "http://172.20.0.1/", "refused range 172.16.0.0/12 (private)"},
		{open, "http://192.168.0.1/", "refused range 192.168.0.0/16 (private)"},
		{open, "http://100.64.0.10/", "refused range 100.64.0.0/10"},
		{open, "http://[fd12::1]/", "refused range fc00::/7"},
		{open, "http://[2002:a9fe:a9fe::1]/", "refused range 2002::/16 (6to4)"},
		{open, "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "refused range 2001::/32 (Teredo)"},
		{open, "http://[64:ff9b::a00:1]/", "refused range 10.0.0.0/8"},
		{open, "http://hooks.shop.svc.cluster.local/gate", "resolves to a private address"},
		{open, "http://private.example/", "resolves to a private address"},
		{open, "http://169.254.169.254/latest/meta-data/", "refused range 169.254.0.0/16"},
		{open, "http://[fe80::1%25eth0]:80/", "refused range fe80::/10"},
		{open, "http://[::ffff:169.254.169.254]/", "refused range 169.254.0.0/16"},
		{open, "http://[64:ff9b::a9fe:a9fe]/", "refused range 169.254.0.0/16"},
		{open, "http://metadata.google.internal/computeMetadata/v1/", "metadata service"},
		{open, "http://METADATA.google.internal./", "metadata service"},
		{open, "http://100.100.100.200/", "refused range"},
		{open, "http://v6meta.example/", "resolves to a metadata address"},
		{open, "http://127.0.0.1:8080/", "refused range 127.0.0.0/8"},
		{open, "http://localhost:8080/", "resolves to a loopback address"},
		{open, "http://0.0.0.0:8080/", "refused range 0.0.0.0/8"},
		{open, "http://[::]:8080/", "refused range ::/128"},
		{open, "http://rebind.example/", "resolves to a link-local address"},
		{open, "http://unknown.example/", "no such host"},
		{open, "ftp://hooks.shop.svc.cluster.local/", "scheme"},
		{open, "http:///path", "no host"},
		{open, "http://203.0.113.7:99999/", "not a port number"},
		{restricted, "http://hooks.shop.svc.cluster.local/", ""},
		{restricted, "https://gate.ci.example/", ""},
		{restricted, "http://10.100.0.1/", ""},
		{restricted, "http://10.1.2.3/", "refused range 10.0.0.0/8"},
		{restricted, "http://192.0.2.1/", "neither an allowed host nor in an allowed CIDR"},
		{restricted, "http://ci.example/", "no such host"},
		{restricted, "http://169.254.169.254/", "refused range"},
		{loopback, "http://127.0.0.1:8080/", ""},
		{loopback, "http://localhost:8080/", ""},
		{loopback, "http://192.0.2.1/", "neither an allowed host"},
		{everything, "http://10.1.2.3/", "refused range 10.0.0.0/8"},
		{everything, "http://203.0.113.7/", ""},
		{private, "http://10.1.2.3/", ""},
		{private, "http://172.20.0.1/", "refused range 172.16.0.0/12"},
		{apiserver, "http://10.96.0.1/", "the API server's address"},
		{apiserver, "https://10.96.0.1:443/", "the API server's address"},
		{apiserver, "http://10.96.0.2/", ""},
		{apiserver, "https://127.0.0.1:6443/", "the API server's address"},
		{apiserver, "http://127.0.0.1:9090/", ""},
		{everything, "http://169.254.169.254/", "refused range"},
		{everything, "http://127.0.0.1/", "refused range"},
		{metadataOptIn, "http://metadata.google.internal/", "no such host"}, // name allowed; it does not resolve here
		{metadataOptIn, "http://169.254.169.254/", ""},
		{wildcardOnly, "http://metadata.google.internal/", "metadata service"},
	}
	for _, tt := range tests {
		_, err := tt.policy.Check(context.Background(), tt.url)
		if tt.reason == "" {
			if err != nil {
				t.Errorf("Check(%s) = %v, want allowed", tt.url, err)
			}
			continue
		}
		var na *NotAllowedError
		if !errors.As(err, &na) || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("Check(%s) = %v, want refused with %q", tt.url, err, tt.reason)
		}
	}
}

func TestCheckPinsResolvedAddresses(t *testing.T) {
	p := &Policy{Resolver: newZone(map[string][][]string{"hooks.example": {{"203.0.113.1", "2001:db8::1"}}})}
	target, err := p.Check(context.Background(), "https://hooks.example:8443/gate")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8::1")}
	if len(target.Addrs) != 2 || target.Addrs[0] != want[0] || target.Addrs[1] != want[1] {
		t.Fatalf("Addrs = %v, want %v", target.Addrs, want)
	}
}

func TestCheckRedactsCredentials(t *testing.T) {
	_, err := (&Policy{}).Check(context.Background(), "http://user:s3cret@169.254.169.254/")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Check() = %v, want a refusal without the password", err)
	}
}

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy([]string{" Hooks.Example. ", "", "*.ci.example"}, []string{"10.0.0.0/8", "192.168.1.7", "::ffff:10.1.0.0/112", " "})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.AllowedHosts, ","); got != "hooks.example,*.ci.example" {
		t.Errorf("AllowedHosts = %s", got)
	}
	var cidrs []string
	for _, c := range p.AllowedCIDRs {
		cidrs = append(cidrs, c.String())
	}
	if got := strings.Join(cidrs, ","); got != "10.0.0.0/8,192.168.1.7/32,10.1.0.0/16" {
		t.Errorf("AllowedCIDRs = %s", got)
	}
	for _, bad := range [][2][]string{
		{{"a.*.example"}, nil},
		{{"*example.com"}, nil},
		{nil, {"10.0.0.0/33"}},
		{nil, {"not-an-address"}},
	} {
		if _, err := ParsePolicy(bad[0], bad[1]); err == nil {
			t.Errorf("ParsePolicy(%q, %q) accepted", bad[0], bad[1])
		}
	}
}

// TestCheckStatic is what the admission webhook decides without DNS: a URL refused here
// is refused by Check too, and a host name is never resolved.
func TestCheckStatic(t *testing.T) {
	hostsOnly := &Policy{AllowedHosts: []string{"hooks.ci.svc", "*.example.com"}, Resolver: newZone(nil)}
	withCIDRs := &Policy{AllowedHosts: []string{"hooks.ci.svc"}, AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Resolver: newZone(nil)}
	open := &Policy{Resolver: newZone(nil)}
	tests := []struct {
		name    string
		policy  *Policy
		url     string
		wantErr string // empty: allowed
	}{
		{"any name without an allow-list", open, "https://hooks.example.org/gate", ""},
		{"a public address without an allow-list", open, "http://203.0.113.7:8080/gate", ""},
		{"loopback address", open, "http://127.0.0.1:8080/", "in the refused range 127.0.0.0/8"},
		{"IPv6 loopback", open, "http://[::1]/", "in the refused range ::1/128"},
		{"metadata address", open, "http://169.254.169.254/latest/meta-data", "169.254.0.0/16"},
		{"IPv4-mapped loopback", open, "http://[::ffff:127.0.0.1]/", "127.0.0.0/8"},
		{"metadata name", open, "http://metadata.google.internal/", "cloud metadata service"},
		{"file scheme", open, "file:///etc/passwd", "the scheme must be http or https"},
		{"no host", open, "http:///path", "no host"},
		{"port out of range", open, "http://hooks.example.org:70000/", "is not a port number"},
		{"loopback as a single number", open, "http://2130706433/", "in a form other than dotted decimal"},
		{"loopback in octal", open, "http://0177.0.0.1/", "in a form other than dotted decimal"},
		{"loopback in hex", open, "http://0x7f.1/", "in a form other than dotted decimal"},
		{"CR LF in the URL", open, "http://hooks.example.org/\r\nX-Injected: 1", "not a URL"},
		{"listed host", hostsOnly, "https://hooks.ci.svc/gate", ""},
		{"wildcard host", hostsOnly, "https://a.example.com/gate", ""},
		{"unlisted host, host names only", hostsOnly, "https://evil.example.org/gate", "is not an allowed host"},
		{"unlisted host, CIDRs may allow it once resolved", withCIDRs, "https://evil.example.org/gate", ""},
		{"address outside the allowed CIDRs", withCIDRs, "http://192.0.2.1/", "neither an allowed host nor in an allowed CIDR"},
		{"address inside the allowed CIDRs", withCIDRs, "http://10.1.2.3/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.CheckStatic(tt.url)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckStatic(%q) = %v, want nil", tt.url, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CheckStatic(%q) = %v, want an error with %q", tt.url, err, tt.wantErr)
			}
			if _, cerr := tt.policy.Check(context.Background(), tt.url); cerr == nil {
				t.Errorf("Check(%q) allows what CheckStatic refuses", tt.url)
			}
		})
	}
}

// An allowed host name lifts the private ranges an in-cluster Service lives in, never
// loopback or metadata; a refusal of a name never shows the address it resolved to, nor a
// URL's path or query (tokens).
func TestPolicyNamesAndWhatRefusalsShow(t *testing.T) {
	dns := newZone(map[string][][]string{
		"prometheus.monitoring.svc": {{"10.96.4.2"}},
		"evil.example":              {{"10.1.2.3"}},
		"sneaky.monitoring.svc":     {{"127.0.0.1"}},
	})
	p, err := ParsePolicy([]string{"prometheus.monitoring.svc", "*.monitoring.svc"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Resolver = dns
	if _, err := p.Check(context.Background(), "http://prometheus.monitoring.svc:9090/"); err != nil {
		t.Errorf("an allowed name in a private range: %v", err)
	}
	if _, err := p.Check(context.Background(), "http://sneaky.monitoring.svc/"); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("an allowed name resolving to loopback: %v, want refused", err)
	}
	open := &Policy{Resolver: dns}
	_, err = open.Check(context.Background(), "http://evil.example/hook/T0K3N?token=s3cret")
	if err == nil {
		t.Fatal("a name resolving to a private address was allowed")
	}
	for _, leak := range []string{"10.1.2.3", "10.0.0.0", "T0K3N", "s3cret", "/hook"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("the refusal %q shows %q", err, leak)
		}
	}
}
