package hooks

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Resolver resolves a host name to addresses; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Policy decides which webhook URLs the operator may call.
//
// With no allow-list, any http(s) URL may be called except those that reach the
// operator's own pod or its node's metadata service: loopback, unspecified, link-local
// (169.254.0.0/16, fe80::/10, which hold the cloud metadata endpoints), multicast and the
// known metadata addresses and names. With an allow-list, a URL must also have an
// allowed host name, or resolve only to addresses in allowed CIDRs.
//
// An allowed CIDR lifts a refused range only when it lies within it (127.0.0.0/8 lifts
// loopback; 0.0.0.0/0 lifts nothing), so a broad allow-list never opens the metadata
// service by accident.
//
// Every address a name resolves to is checked, and the call then dials those very
// addresses, so a name that resolves elsewhere a moment later (DNS rebinding) changes
// nothing.
type Policy struct {
	// AllowedHosts are host names, exact ("hooks.ci.svc") or with a leading wildcard
	// label ("*.example.com", which matches "a.example.com" but not "example.com").
	AllowedHosts []string
	// AllowedCIDRs are address ranges.
	AllowedCIDRs []netip.Prefix
	// Resolver resolves host names; net.DefaultResolver when nil.
	Resolver Resolver
}

// deniedPrefixes are never called unless an allowed CIDR within them lifts them.
var deniedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),          // "this network"; 0.0.0.0 dials the local host
	netip.MustParsePrefix("127.0.0.0/8"),        // loopback: the operator pod itself
	netip.MustParsePrefix("169.254.0.0/16"),     // link-local, incl. 169.254.169.254 (metadata)
	netip.MustParsePrefix("224.0.0.0/4"),        // multicast
	netip.MustParsePrefix("255.255.255.255/32"), // broadcast
	netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud metadata
	netip.MustParsePrefix("168.63.129.16/32"),   // Azure wire server
	netip.MustParsePrefix("::/128"),             // unspecified
	netip.MustParsePrefix("::1/128"),            // loopback
	netip.MustParsePrefix("fe80::/10"),          // link-local
	netip.MustParsePrefix("ff00::/8"),           // multicast
	netip.MustParsePrefix("fd00:ec2::254/128"),  // AWS metadata over IPv6
}

// nat64 embeds an IPv4 address in its last 32 bits; it is checked as that address.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// deniedNames are metadata service names; only an exact AllowedHosts entry lifts one.
var deniedNames = map[string]bool{
	"metadata":                   true,
	"metadata.google.internal":   true,
	"metadata.goog":              true,
	"instance-data":              true,
	"instance-data.ec2.internal": true,
}

// ParsePolicy builds a Policy from the operator's flags: host names, and CIDRs or bare
// addresses.
func ParsePolicy(hosts, cidrs []string) (*Policy, error) {
	p := &Policy{}
	for _, h := range hosts {
		h = normalizeHost(h)
		if h == "" {
			continue
		}
		if strings.Contains(h, "*") && (!strings.HasPrefix(h, "*.") || strings.Count(h, "*") > 1) {
			return nil, fmt.Errorf("allowed host %q: a wildcard is allowed only as the whole first label, as in *.example.com", h)
		}
		p.AllowedHosts = append(p.AllowedHosts, h)
	}
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(c)
		if err != nil {
			addr, aerr := netip.ParseAddr(c)
			if aerr != nil {
				return nil, fmt.Errorf("allowed CIDR %q: %w", c, err)
			}
			prefix = netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen())
		}
		if prefix.Addr().Is4In6() {
			prefix = netip.PrefixFrom(prefix.Addr().Unmap(), prefix.Bits()-96)
		}
		p.AllowedCIDRs = append(p.AllowedCIDRs, prefix.Masked())
	}
	return p, nil
}

// NotAllowedError is a URL the policy refuses to call.
type NotAllowedError struct {
	URL    string
	Reason string
}

func (e *NotAllowedError) Error() string {
	return fmt.Sprintf("webhook URL %s is not allowed: %s", e.URL, e.Reason)
}

// Target is a URL the policy allows, with the addresses the call must dial.
type Target struct {
	URL   *url.URL
	Addrs []netip.Addr
}

// Check resolves the URL's host and decides whether it may be called.
func (p *Policy) Check(ctx context.Context, rawURL string) (*Target, error) {
	u, host, addr, err := p.checkStatic(rawURL)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	if addr.IsValid() {
		addrs = []netip.Addr{addr}
	} else {
		resolver := p.Resolver
		if resolver == nil {
			resolver = net.DefaultResolver
		}
		addrs, err = resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, refusal(u, "resolving %s: %v", host, err)
		}
		if len(addrs) == 0 {
			return nil, refusal(u, "%s resolves to no address", host)
		}
	}
	for i, a := range addrs {
		a = a.Unmap().WithZone("")
		addrs[i] = a
		if err := p.checkAddr(u, host, a); err != nil {
			return nil, err
		}
	}
	return &Target{URL: u, Addrs: addrs}, nil
}

// CheckStatic decides what can be decided without resolving the host: the URL parses, its
// scheme is http or https, its port is a port, it names no metadata service, a literal
// address is not in a refused range, and with an allow-list of host names only, the host
// is on it. The admission webhook refuses such URLs when a Canary is written; Check, at
// call time, decides again with the addresses the host resolves to then.
func (p *Policy) CheckStatic(rawURL string) error {
	_, _, _, err := p.checkStatic(rawURL)
	return err
}

// checkStatic returns the parsed URL, its normalized host and, when the host is a literal
// address, that address.
func (p *Policy) checkStatic(rawURL string) (*url.URL, string, netip.Addr, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, "", netip.Addr{}, &NotAllowedError{URL: redact(rawURL), Reason: "not a URL"}
	}
	refuse := func(format string, args ...any) (*url.URL, string, netip.Addr, error) {
		return nil, "", netip.Addr{}, refusal(u, format, args...)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return refuse("the scheme must be http or https")
	}
	host := normalizeHost(u.Hostname())
	if host == "" {
		return refuse("no host")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return refuse("port %q is not a port number", port)
		}
	}
	if deniedNames[host] && !p.hostListed(host, true) {
		return refuse("%s is a cloud metadata service", host)
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		addr = addr.Unmap().WithZone("")
		if err := p.checkAddr(u, host, addr); err != nil {
			return nil, "", netip.Addr{}, err
		}
		return u, host, addr, nil
	}
	if numericHost(host) {
		return refuse("%s is an address in a form other than dotted decimal (octal, hex or a single number): write the address itself", host)
	}
	// With host names but no CIDRs allowed, no address can let an unlisted name in.
	if len(p.AllowedHosts) > 0 && len(p.AllowedCIDRs) == 0 && !p.hostListed(host, false) {
		return refuse("%s is not an allowed host", host)
	}
	return u, host, netip.Addr{}, nil
}

// checkAddr refuses an address host resolves to (or is) when it is in a refused range or,
// with an allow-list, when neither the host nor the address is allowed.
func (p *Policy) checkAddr(u *url.URL, host string, a netip.Addr) error {
	if reason := p.deniedAddr(a); reason != "" {
		if host == a.String() {
			return refusal(u, "%s is %s", host, reason)
		}
		return refusal(u, "%s resolves to %s, %s", host, a, reason)
	}
	restricted := len(p.AllowedHosts) > 0 || len(p.AllowedCIDRs) > 0
	if restricted && !p.hostListed(host, false) && !p.cidrListed(a) {
		return refusal(u, "%s (%s) is neither an allowed host nor in an allowed CIDR", host, a)
	}
	return nil
}

func refusal(u *url.URL, format string, args ...any) error {
	return &NotAllowedError{URL: u.Redacted(), Reason: fmt.Sprintf(format, args...)}
}

// deniedAddr says why a is refused, or "" when it is not.
func (p *Policy) deniedAddr(a netip.Addr) string {
	check := []netip.Addr{a}
	if nat64.Contains(a) {
		b := a.As16()
		check = append(check, netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	for _, c := range check {
		for _, d := range deniedPrefixes {
			if d.Contains(c) && !p.lifted(c, d) {
				return fmt.Sprintf("in the refused range %s (loopback, link-local, metadata or multicast)", d)
			}
		}
	}
	return ""
}

// lifted reports whether an allowed CIDR within the denied range d contains a.
func (p *Policy) lifted(a netip.Addr, d netip.Prefix) bool {
	for _, c := range p.AllowedCIDRs {
		if c.Contains(a) && c.Bits() >= d.Bits() && d.Contains(c.Addr()) {
			return true
		}
	}
	return false
}

func (p *Policy) cidrListed(a netip.Addr) bool {
	for _, c := range p.AllowedCIDRs {
		if c.Contains(a) {
			return true
		}
	}
	return false
}

// hostListed reports whether host is in AllowedHosts; exactOnly ignores wildcards.
func (p *Policy) hostListed(host string, exactOnly bool) bool {
	for _, h := range p.AllowedHosts {
		if h == host {
			return true
		}
		if suffix, ok := strings.CutPrefix(h, "*"); ok && !exactOnly && strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
			return true
		}
	}
	return false
}

// numericHost reports a host that is not a valid address but that C resolvers
// (inet_aton) read as one: "2130706433", "0x7f.1", "0177.0.0.1" are all 127.0.0.1. No
// DNS name has a last label that is all digits or starts with 0x.
func numericHost(h string) bool {
	last := h[strings.LastIndexByte(h, '.')+1:]
	if strings.HasPrefix(last, "0x") {
		return true
	}
	return last != "" && strings.Trim(last, "0123456789") == ""
}

func normalizeHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
}

func redact(raw string) string {
	if i := strings.Index(raw, "@"); i >= 0 {
		if j := strings.Index(raw, "://"); j >= 0 && j < i {
			return raw[:j+3] + "xxxxx" + raw[i:]
		}
	}
	return raw
}
