package hooks

import (
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// FuzzCheckStatic feeds arbitrary URLs to the default policy, which a tenant's webhook and
// metric provider addresses pass through: what it allows is http(s) to a name or to an
// address outside every refused range, and what it refuses it refuses without echoing the
// URL's path or query (where tokens travel) into the error, which reaches status and logs.
func FuzzCheckStatic(f *testing.F) {
	for _, seed := range []string{
		"https://hooks.example.com/ci?token=s3cr3t-token",
		"http://169.254.169.254/latest/meta-data/",
		"http://127.0.0.1:6443/api/v1/secrets?watch=1",
		"http://[::ffff:10.0.0.1]/x",
		"http://2130706433/",
		"http://0x7f.1/",
		"http://10.96.0.1:443/",
		"http://[fd00::1]/",
		"http://metadata.google.internal/computeMetadata/v1/",
		"ftp://example.com/",
		"https://user:pass@example.com:0/",
		"http://100.64.0.1/",
		"http://[2002:a00:1::]/",
	} {
		f.Add(seed)
	}
	p, err := ParsePolicy(nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		err := p.CheckStatic(raw)
		u, perr := url.Parse(raw)
		if err == nil {
			if perr != nil || (u.Scheme != "http" && u.Scheme != "https") {
				t.Fatalf("allowed %q, which is not an http(s) URL", raw)
			}
			if a, aerr := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); aerr == nil {
				a = a.Unmap()
				if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsMulticast() ||
					netip.MustParsePrefix("100.64.0.0/10").Contains(a) {
					t.Fatalf("allowed %q, an address in a refused range", raw)
				}
			}
			return
		}
		if perr != nil {
			return
		}
		msg, origin := err.Error(), Origin(u)
		for _, secret := range []string{u.RawQuery, u.Path} {
			if len(secret) >= 8 && !strings.Contains(origin, secret) && strings.Contains(msg, secret) {
				t.Fatalf("the refusal of %q echoes %q: %s", raw, secret, msg)
			}
		}
	})
}
