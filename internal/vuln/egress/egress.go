// Package egress decides where the scanner may connect, so that a pod
// naming an image on an internal address cannot turn the server into a
// proxy (SSRF). Images are pulled only from registries on the allow-list;
// every connection — to the registry, to a host it redirects to, to the
// token endpoint its WWW-Authenticate realm names — is checked on the
// address it resolves to, at dial time (no DNS-rebinding window: the checked
// address is the one dialed). Loopback, private, link-local and other
// special-purpose addresses are refused unless an entry names them.
//
// Entries:
//
//	registry.example.com        the registry on any port; its name may resolve to a private address
//	registry.example.com:5000   that port only
//	127.0.0.1:5000, [::1]:5000  a literal address (and port)
//	10.20.0.0/16                registries on literal addresses in the range, and connections into it
//
// "docker.io" also names Docker Hub's API host index.docker.io.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// ErrRefused marks connections and pulls the policy refuses.
var ErrRefused = errors.New("refused by the scanner's registry allow-list (--scan-registries)")

type entry struct {
	host   string // lower-case name or canonical IP; "" for a prefix entry
	port   string // "" for any
	prefix netip.Prefix
}

// Policy is an allow-list. The zero value allows nothing.
type Policy struct {
	entries []entry
	// Resolver resolves names at dial time (default net.DefaultResolver).
	Resolver interface {
		LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	}
}

// Parse reads allow-list entries; an empty list allows nothing.
func Parse(list []string) (*Policy, error) {
	p := &Policy{}
	for _, raw := range list {
		s := strings.TrimSpace(raw)
		if s == "" {
			continue
		}
		e, err := parseEntry(s)
		if err != nil {
			return nil, fmt.Errorf("registry allow-list entry %q: %w", raw, err)
		}
		p.entries = append(p.entries, e)
	}
	return p, nil
}

func parseEntry(s string) (entry, error) {
	if strings.Contains(s, "/") {
		if strings.Contains(s, "://") {
			return entry{}, errors.New("give a registry host[:port], not a URL")
		}
		pf, err := netip.ParsePrefix(s)
		if err != nil {
			return entry{}, fmt.Errorf("not a host, host:port or CIDR: %w", err)
		}
		return entry{prefix: pf.Masked()}, nil
	}
	host, port := s, ""
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
		if n, err := parsePort(p); err != nil || n == 0 {
			return entry{}, fmt.Errorf("invalid port %q", p)
		}
	} else if strings.Count(s, ":") == 1 {
		return entry{}, err
	}
	if strings.HasPrefix(host, "[") != strings.HasSuffix(host, "]") {
		return entry{}, errors.New("unbalanced brackets")
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return entry{}, errors.New("empty host")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return entry{host: a.Unmap().String(), port: port}, nil
	}
	if strings.ContainsAny(host, " \t@?#:[]") {
		return entry{}, errors.New("invalid host name")
	}
	return entry{host: strings.ToLower(strings.TrimSuffix(host, ".")), port: port}, nil
}

func parsePort(p string) (int, error) {
	var n int
	if p == "" || len(p) > 5 {
		return 0, errors.New("bad port")
	}
	for _, c := range p {
		if c < '0' || c > '9' {
			return 0, errors.New("bad port")
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0, errors.New("bad port")
	}
	return n, nil
}

// With returns a copy of p with more entries (e.g. the registry an
// operator named on the command line).
func (p *Policy) With(list ...string) (*Policy, error) {
	q, err := Parse(list)
	if err != nil {
		return nil, err
	}
	q.entries = append(append([]entry{}, p.entries...), q.entries...)
	q.Resolver = p.Resolver
	return q, nil
}

// Empty reports whether nothing is allowed.
func (p *Policy) Empty() bool { return p == nil || len(p.entries) == 0 }

// splitRegistry splits "host[:port]" (a registry as image references name
// it) into a normalised host and port.
func splitRegistry(registry string) (host, port string) {
	host = registry
	if h, p, err := net.SplitHostPort(registry); err == nil {
		host, port = h, p
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	if a, err := netip.ParseAddr(host); err == nil {
		host = a.Unmap().String()
	}
	return host, port
}

func aliases(host string) []string {
	switch host {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return []string{"docker.io", "index.docker.io", "registry-1.docker.io"}
	}
	return []string{host}
}

// matches reports whether an entry names host (and port, which may be ""
// for "the registry's default port").
func (e entry) matches(host, port string) bool {
	if e.host == "" {
		a, err := netip.ParseAddr(host)
		return err == nil && e.prefix.Contains(a.Unmap())
	}
	if e.port != "" && e.port != port {
		return false
	}
	for _, h := range aliases(host) {
		if h == e.host {
			return true
		}
	}
	return false
}

// AllowsRegistry reports whether images of registry ("host[:port]", as in
// an image reference) may be pulled.
func (p *Policy) AllowsRegistry(registry string) bool {
	if p == nil {
		return false
	}
	host, port := splitRegistry(registry)
	for _, e := range p.entries {
		if e.matches(host, port) {
			return true
		}
	}
	return false
}

// Special reports whether a is loopback, private, link-local, unspecified,
// multicast or another special-purpose range no registry on the internet
// uses (RFC 6890): connecting there needs an explicit entry.
func Special(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return true
	}
	for _, pf := range specialPrefixes {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

var specialPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "240.0.0.0/4",
		"64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "100::/64",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// allowsAddr reports whether a connection to host:port resolving to a is
// allowed: public addresses are; special ones need an entry naming the
// host (by name or address, with that port or none) or a range holding a.
func (p *Policy) allowsAddr(host, port string, a netip.Addr) bool {
	a = a.Unmap()
	if !Special(a) {
		return true
	}
	for _, e := range p.entries {
		if e.host == "" {
			if e.prefix.Contains(a) {
				return true
			}
			continue
		}
		if e.port != "" && e.port != port {
			continue
		}
		if e.host == a.String() || e.matches(host, port) {
			return true
		}
	}
	return false
}

// RefusedError says which connection was refused and why. Its text is the
// scanner's own: it never carries anything a remote host sent.
type RefusedError struct {
	Host, Port string
	Addr       netip.Addr
}

func (e *RefusedError) Error() string {
	where := net.JoinHostPort(e.Host, e.Port)
	if e.Addr.IsValid() && e.Addr.String() != e.Host {
		where += " (" + e.Addr.String() + ")"
	}
	return fmt.Sprintf("connection to %s: %v: loopback, private and link-local addresses need an explicit entry", where, ErrRefused)
}

func (e *RefusedError) Unwrap() error { return ErrRefused }

// DialContext resolves address, checks every address it resolves to, and
// dials a checked one. A name resolving to any refused address is refused
// as a whole (no mixing of answers).
func (p *Policy) DialContext(d *net.Dialer) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return nil, err
		}
		lhost := strings.ToLower(strings.Trim(host, "[]"))
		var addrs []netip.Addr
		if a, err := netip.ParseAddr(lhost); err == nil {
			addrs = []netip.Addr{a.Unmap()}
			lhost = addrs[0].String()
		} else {
			var r interface {
				LookupNetIP(context.Context, string, string) ([]netip.Addr, error)
			} = net.DefaultResolver
			if p.Resolver != nil {
				r = p.Resolver
			}
			addrs, err = r.LookupNetIP(ctx, "ip", lhost)
			if err != nil {
				return nil, err
			}
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("%s resolves to no address", host)
		}
		for _, a := range addrs {
			if !p.allowsAddr(lhost, port, a) {
				return nil, &RefusedError{Host: host, Port: port, Addr: a.Unmap()}
			}
		}
		var last error
		for _, a := range addrs {
			c, err := d.DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
			if err == nil {
				return c, nil
			}
			last = err
		}
		return nil, last
	}
}

// Transport returns an HTTP transport whose every connection goes through
// the policy's dial check, without proxies from the environment (a proxy
// would hide the destination from the check), wrapped in a round tripper
// that refuses non-HTTP schemes and literal refused addresses before any
// dial (every redirect hop and token request passes through it).
func (p *Policy) Transport() http.RoundTripper {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:                 nil,
		DialContext:           p.DialContext(d),
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &checked{p: p, next: t}
}

type checked struct {
	p    *Policy
	next http.RoundTripper
}

func (c *checked) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" && r.URL.Scheme != "http" {
		return nil, fmt.Errorf("scheme %q: %w", r.URL.Scheme, ErrRefused)
	}
	host, port := r.URL.Hostname(), r.URL.Port()
	if port == "" {
		port = "443"
		if r.URL.Scheme == "http" {
			port = "80"
		}
	}
	if a, err := netip.ParseAddr(host); err == nil && !c.p.allowsAddr(a.Unmap().String(), port, a) {
		return nil, &RefusedError{Host: host, Port: port, Addr: a.Unmap()}
	}
	return c.next.RoundTrip(r)
}
