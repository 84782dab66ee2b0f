package hooks

import (
	"context"
	"errors"
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

// Policy decides which URLs the operator may call on a tenant's behalf: rollout webhooks,
// and the metric providers a Canary or MetricTemplate names.
//
// With no allow-list, any http(s) URL may be called except those that reach the operator's
// own pod, its node, the cluster's network or the API server: loopback, unspecified,
// link-local (169.254.0.0/16, fe80::/10, which hold the cloud metadata endpoints),
// multicast, the known metadata addresses and names, the private and shared ranges a
// cluster's pods and Services live in (RFC 1918, 100.64.0.0/10, fc00::/7), the IPv6
// transition prefixes that carry an IPv4 address (6to4, Teredo), and the API server's own
// addresses (DeniedAddrs, DeniedAddrPorts). With an allow-list, a URL must also have an
// allowed host name, or resolve only to addresses in allowed CIDRs.
//
// An allowed CIDR lifts a refused range only when it lies within it (127.0.0.0/8 lifts
// loopback, 10.0.0.0/8 lifts that private range; 0.0.0.0/0 lifts nothing), so a broad
// allow-list never opens the metadata service or the cluster by accident. An allowed host
// name lifts the private and shared ranges (an in-cluster Service resolves into them), never
// loopback, link-local or metadata. The API server's addresses are never lifted.
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
	// DeniedAddrs are refused whatever the allow-lists say: the API server's Service IP.
	DeniedAddrs []netip.Addr
	// DeniedAddrPorts are refused on their port whatever the allow-lists say: the API
	// server's address as the operator reaches it, which may share an address with
	// allowed services (a test bed on loopback).
	DeniedAddrPorts []netip.AddrPort
	// Resolver resolves host names; net.DefaultResolver when nil.
	Resolver Resolver
}

// deniedRange is a range never called unless an allowed CIDR within it (or, for byName
// ranges, an allowed host name) lifts it.
type deniedRange struct {
	prefix netip.Prefix
	class  string
	byName bool
}

func denied(prefix, class string, byName bool) deniedRange {
	return deniedRange{prefix: netip.MustParsePrefix(prefix), class: class, byName: byName}
}

var deniedPrefixes = []deniedRange{
	denied("0.0.0.0/8", "this-network", false), // 0.0.0.0 dials the local host
	denied("127.0.0.0/8", "loopback", false),   // the operator pod itself
	denied("169.254.0.0/16", "link-local", false),
	denied("224.0.0.0/4", "multicast", false),
	denied("255.255.255.255/32", "broadcast", false),
	denied("100.100.100.200/32", "metadata", false), // Alibaba Cloud
	denied("168.63.129.16/32", "metadata", false),   // Azure wire server
	denied("10.0.0.0/8", "private", true),
	denied("172.16.0.0/12", "private", true),
	denied("192.168.0.0/16", "private", true),
	denied("100.64.0.0/10", "shared (carrier-grade NAT)", true),
	denied("198.18.0.0/15", "benchmarking", true),
	denied("::/128", "unspecified", false),
	denied("::1/128", "loopback", false),
	denied("fe80::/10", "link-local", false),
	denied("ff00::/8", "multicast", false),
	denied("fd00:ec2::254/128", "metadata", false), // AWS over IPv6; within fc00::/7, so first
	denied("fc00::/7", "unique local (private)", true),
	denied("2002::/16", "6to4", false),
	denied("2001::/32", "Teredo", false),
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
	allowed, err := ParseHosts(hosts)
	if err != nil {
		return nil, err
	}
	p := &Policy{AllowedHosts: allowed}
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

// NotAllowedError is a URL the policy refuses to call. URL is its origin alone
// (scheme://host:port): paths and query strings carry tokens (Slack's, signed URLs).
type NotAllowedError struct {
	URL    string
	Reason string
}

func (e *NotAllowedError) Error() string {
	return fmt.Sprintf("URL %s is not allowed: %s", e.URL, e.Reason)
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
			var dnsErr *net.DNSError
			if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
				return nil, refusal(u, "%s: no such host", host)
			}
			return nil, refusal(u, "resolving %s failed", host)
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
		return nil, "", netip.Addr{}, &NotAllowedError{URL: "(unparsable)", Reason: "not a URL"}
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
	if !hostName(host) {
		return refuse("%s is neither an address nor a host name (letters, digits, '-', '_' and '.' only)", host)
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
// with an allow-list, when neither the host nor the address is allowed. A refusal of a
// name never shows the address it resolved to: the cluster's layout is none of the
// tenant's business.
func (p *Policy) checkAddr(u *url.URL, host string, a netip.Addr) error {
	_, perr := netip.ParseAddr(host)
	literal := perr == nil
	if prefix, class := p.deniedAddr(a, urlPort(u), p.hostListed(host, false)); class != "" {
		switch {
		case !prefix.IsValid():
			return refusal(u, "%s is %s", host, class)
		case literal:
			return refusal(u, "%s is in the refused range %s (%s)", host, prefix, class)
		}
		return refusal(u, "%s resolves to a %s address, which is refused", host, class)
	}
	restricted := len(p.AllowedHosts) > 0 || len(p.AllowedCIDRs) > 0
	if restricted && !p.hostListed(host, false) && !p.cidrListed(a) {
		if literal {
			return refusal(u, "%s is neither an allowed host nor in an allowed CIDR", host)
		}
		return refusal(u, "%s is neither an allowed host nor does it resolve into an allowed CIDR", host)
	}
	return nil
}

func refusal(u *url.URL, format string, args ...any) error {
	return &NotAllowedError{URL: Origin(u), Reason: fmt.Sprintf(format, args...)}
}

// Origin is what may be shown of a URL: scheme, host and port, never a user, path or
// query, which carry tokens.
func Origin(u *url.URL) string {
	if u == nil {
		return ""
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
}

// urlPort is the port a URL dials.
func urlPort(u *url.URL) uint16 {
	if p := u.Port(); p != "" {
		return mustPort(p)
	}
	if u.Scheme == "https" {
		return 443
	}
	return 80
}

// deniedAddr returns the refused range a (dialed on port) is in and its class, or "" when
// a is not refused; the API server's addresses have a class and no range. byName says the
// URL's host is an allowed host name, which lifts the private and shared ranges.
func (p *Policy) deniedAddr(a netip.Addr, port uint16, byName bool) (netip.Prefix, string) {
	for _, d := range p.DeniedAddrs {
		if d.Unmap() == a {
			return netip.Prefix{}, "the API server's address"
		}
	}
	for _, d := range p.DeniedAddrPorts {
		if d.Addr().Unmap() == a && d.Port() == port {
			return netip.Prefix{}, "the API server's address"
		}
	}
	check := []netip.Addr{a}
	if nat64.Contains(a) {
		b := a.As16()
		check = append(check, netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	for _, c := range check {
		for _, d := range deniedPrefixes {
			if d.prefix.Contains(c) && (!d.byName || !byName) && !p.lifted(c, d.prefix) {
				return d.prefix, d.class
			}
		}
	}
	return netip.Prefix{}, ""
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
	return hostInList(p.AllowedHosts, host, exactOnly)
}

func hostInList(list []string, host string, exactOnly bool) bool {
	for _, h := range list {
		if h == host {
			return true
		}
		if suffix, ok := strings.CutPrefix(h, "*"); ok && !exactOnly && strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
			return true
		}
	}
	return false
}

// hostName reports whether h is spelled like a DNS name: labels of letters, digits, '-'
// and '_' (seen in service records) joined by dots. Anything else ("10.0.0.0]", a name
// with a space or a percent sign) is refused before a resolver could read it its own way.
func hostName(h string) bool {
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return len(h) <= 253
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

func checkWildcard(h string) error {
	if strings.Contains(h, "*") && (!strings.HasPrefix(h, "*.") || strings.Count(h, "*") > 1) {
		return fmt.Errorf("allowed host %q: a wildcard is allowed only as the whole first label, as in *.example.com", h)
	}
	return nil
}

func normalizeHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
}
