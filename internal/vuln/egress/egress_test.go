package egress

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"testing"
)

func TestParse(t *testing.T) {
	for _, bad := range []string{"http://x", "a:b:c", "10.0.0.0/33", "host:0", "host:99999", "host:", "[::1", "bad host"} {
		if _, err := Parse([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := Parse([]string{"ghcr.io", "registry.corp:5000", "127.0.0.1:5000", "[::1]:5000", "10.20.0.0/16", " "}); err != nil {
		t.Fatal(err)
	}
}

func TestAllowsRegistry(t *testing.T) {
	p, err := Parse([]string{"ghcr.io", "registry.corp:5000", "127.0.0.1:5000", "10.20.0.0/16", "docker.io"})
	if err != nil {
		t.Fatal(err)
	}
	for reg, want := range map[string]bool{
		"ghcr.io":              true,
		"GHCR.io":              true,
		"ghcr.io:8443":         true,
		"registry.corp:5000":   true,
		"registry.corp":        false, // another port
		"registry.corp:5001":   false,
		"127.0.0.1:5000":       true,
		"127.0.0.1:6379":       false,
		"10.20.3.4:5000":       true,
		"10.0.0.1:6379":        false,
		"169.254.169.254":      false,
		"index.docker.io":      true,
		"quay.io":              false,
		"evil.ghcr.io":         false,
		"ghcr.io.evil.com":     false,
		"[::ffff:10.20.0.1]":   true,
		"localhost:5000":       false,
		"registry-1.docker.io": true,
	} {
		if got := p.AllowsRegistry(reg); got != want {
			t.Errorf("AllowsRegistry(%q) = %v, want %v", reg, got, want)
		}
	}
	var none *Policy
	if none.AllowsRegistry("ghcr.io") {
		t.Error("nil policy allows")
	}
	empty, _ := Parse(nil)
	if empty.AllowsRegistry("ghcr.io") || !empty.Empty() {
		t.Error("empty policy allows")
	}
}

func TestSpecial(t *testing.T) {
	for s, want := range map[string]bool{
		"127.0.0.1": true, "10.0.0.1": true, "172.16.0.1": true, "192.168.1.1": true, "169.254.169.254": true,
		"100.64.0.1": true, "0.0.0.0": true, "::1": true, "fe80::1": true, "fd00::1": true, "::ffff:127.0.0.1": true,
		"224.0.0.1": true, "255.255.255.255": true, "64:ff9b::a00:1": true,
		"8.8.8.8": false, "203.0.113.7": false, "2001:4860:4860::8888": false,
	} {
		if got := Special(netip.MustParseAddr(s)); got != want {
			t.Errorf("Special(%s) = %v", s, got)
		}
	}
}

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// TestDial: names are checked on what they resolve to; a name that
// resolves (or rebinds) to a private address is refused unless an entry
// names it; a name with one refused address among others is refused whole.
func TestDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	lo := netip.MustParseAddr("127.0.0.1")
	res := fakeResolver{
		"rebind.example":  {lo},
		"mixed.example":   {netip.MustParseAddr("203.0.113.9"), lo},
		"registry.corp":   {lo},
		"metadata.google": {netip.MustParseAddr("169.254.169.254")},
	}
	p, err := Parse([]string{"registry.corp:" + port, "public.example"})
	if err != nil {
		t.Fatal(err)
	}
	p.Resolver = res
	dial := p.DialContext(&net.Dialer{})
	for addr, ok := range map[string]bool{
		"registry.corp:" + port:      true,  // named explicitly, resolves to loopback
		"rebind.example:" + port:     false, // an unnamed host resolving to loopback
		"mixed.example:" + port:      false,
		"metadata.google:80":         false,
		"127.0.0.1:" + port:          false, // the address itself is not named
		"registry.corp:1":            false, // named, another port
		"[::ffff:127.0.0.1]:" + port: false,
	} {
		c, err := dial(t.Context(), "tcp", addr)
		if ok {
			if err != nil {
				t.Errorf("%s: %v", addr, err)
			} else {
				c.Close()
			}
			continue
		}
		if err == nil {
			c.Close()
			t.Errorf("%s: dialed", addr)
		} else if !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v, want a refusal", addr, err)
		}
	}
}

// TestTransportRefusesLiteral: a request (a redirect hop, a token realm) to
// a refused literal address fails before any dial, and non-HTTP schemes too.
func TestTransportRefusesLiteral(t *testing.T) {
	p, _ := Parse([]string{"127.0.0.1:5000"})
	rt := p.Transport()
	for _, u := range []string{"http://169.254.169.254/latest/meta-data/", "http://10.0.0.1:6379/", "http://127.0.0.1:6379/", "file:///etc/passwd", "http://[::1]:5000/"} {
		req, _ := http.NewRequest("GET", u, nil)
		if _, err := rt.RoundTrip(req); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v, want a refusal", u, err)
		}
	}
}
