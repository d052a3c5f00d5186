package policy

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/inventory"
)

// EndpointKind tells what a consumer or provider names.
type EndpointKind uint8

const (
	EndpointFilter  EndpointKind = iota // an inventory filter
	EndpointScope                       // scope:NAME
	EndpointService                     // service:NAMESPACE/NAME
	EndpointCIDR                        // cidr:A.B.C.D/N
	EndpointAny                         // any
	// EndpointHostNode is host-node: the node the flow's other end (a pod)
	// runs on. It matches only a flow between a pod and its own node
	// (kubelet probes; NetworkPolicy always allows them).
	EndpointHostNode
)

// Endpoint is a parsed consumer or provider.
type Endpoint struct {
	Kind      EndpointKind
	Filter    *filter.Filter // EndpointFilter
	Scope     string         // EndpointScope
	Namespace string         // EndpointService
	Name      string         // EndpointService
	Prefix    netip.Prefix   // EndpointCIDR (masked)
}

// String is the canonical text of the endpoint; ParseEndpoint reads it back.
func (e Endpoint) String() string {
	switch e.Kind {
	case EndpointScope:
		return "scope:" + e.Scope
	case EndpointService:
		return "service:" + e.Namespace + "/" + e.Name
	case EndpointCIDR:
		return "cidr:" + e.Prefix.String()
	case EndpointAny:
		return "any"
	case EndpointHostNode:
		return "host-node"
	}
	return e.Filter.String()
}

// EndpointError is a consumer or provider that does not parse. Column is
// 1-based within the endpoint's text (for a filter, the filter's own
// column of the offending token).
type EndpointError struct {
	Column int
	Msg    string
}

func (e *EndpointError) Error() string { return fmt.Sprintf("column %d: %s", e.Column, e.Msg) }

var (
	nameRE  = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$`)
	k8sName = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`)
)

// ValidName reports whether s can name a scope or an intent: 1-128
// letters, digits, '.', '_' or '-', starting with a letter or digit.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// ParseEndpoint parses a consumer or provider. Errors are *EndpointError.
func ParseEndpoint(s string) (Endpoint, error) {
	lead := len(s) - len(strings.TrimLeft(s, " \t"))
	t := strings.TrimSpace(s)
	col := lead + 1
	switch {
	case strings.EqualFold(t, "any"):
		return Endpoint{Kind: EndpointAny}, nil
	case strings.EqualFold(t, "host-node"):
		return Endpoint{Kind: EndpointHostNode}, nil
	case strings.HasPrefix(t, "scope:"):
		name := t[len("scope:"):]
		if !ValidName(name) {
			return Endpoint{}, &EndpointError{col + len("scope:"), fmt.Sprintf("scope name %q: want 1-128 letters, digits, '.', '_' or '-'", name)}
		}
		return Endpoint{Kind: EndpointScope, Scope: name}, nil
	case strings.HasPrefix(t, "service:"):
		ref := t[len("service:"):]
		ns, name, ok := strings.Cut(ref, "/")
		if !ok || !k8sName.MatchString(ns) || !k8sName.MatchString(name) {
			return Endpoint{}, &EndpointError{col + len("service:"), fmt.Sprintf("service %q: want NAMESPACE/NAME", ref)}
		}
		return Endpoint{Kind: EndpointService, Namespace: ns, Name: name}, nil
	case strings.HasPrefix(t, "cidr:"):
		c := t[len("cidr:"):]
		p, err := netip.ParsePrefix(c)
		if err != nil {
			a, aerr := netip.ParseAddr(c)
			if aerr != nil {
				return Endpoint{}, &EndpointError{col + len("cidr:"), fmt.Sprintf("cidr %q: want an address or A.B.C.D/N", c)}
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		return Endpoint{Kind: EndpointCIDR, Prefix: p.Masked()}, nil
	case t == "":
		return Endpoint{}, &EndpointError{1, "empty: want a filter, scope:NAME, service:NAMESPACE/NAME, cidr:A.B.C.D/N, host-node or any"}
	}
	f, err := filter.Parse(s, inventory.Schema)
	if err != nil {
		if fe, ok := err.(*filter.Error); ok {
			return Endpoint{}, &EndpointError{fe.Pos, fe.Msg}
		}
		return Endpoint{}, &EndpointError{1, err.Error()}
	}
	return Endpoint{Kind: EndpointFilter, Filter: f}, nil
}

func canonicalEndpoint(s string) string {
	e, err := ParseEndpoint(s)
	if err != nil {
		return strings.TrimSpace(s)
	}
	return e.String()
}

// Proto is an IP protocol number; 0 means any protocol.
type Proto uint8

const (
	ProtoAny  Proto = 0
	ProtoICMP Proto = 1
	ProtoTCP  Proto = 6
	ProtoUDP  Proto = 17
	ProtoSCTP Proto = 132
)

func (p Proto) String() string {
	switch p {
	case ProtoAny:
		return "any"
	case ProtoICMP:
		return "icmp"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoSCTP:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

// ParseProto reads tcp, udp, sctp, icmp, any (any case) or a number.
func ParseProto(s string) (Proto, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return ProtoTCP, nil
	case "udp":
		return ProtoUDP, nil
	case "sctp":
		return ProtoSCTP, nil
	case "icmp":
		return ProtoICMP, nil
	case "any", "":
		return ProtoAny, nil
	}
	if n, err := strconv.ParseUint(s, 10, 8); err == nil {
		return Proto(n), nil
	}
	return 0, fmt.Errorf("protocol %q: want tcp, udp, sctp, icmp or any", s)
}

// PortRange is one element of an intent's ports: a protocol and a port
// range, or a protocol and a named port.
type PortRange struct {
	Proto  Proto
	Lo, Hi uint16 // 0, 0 with no Name: every port
	Name   string // a named port, resolved per destination
}

// ParsePort reads "tcp/80", "tcp/1000-2000", "tcp/http", "udp" or "any".
func ParsePort(s string) (PortRange, error) {
	t := strings.TrimSpace(s)
	proto, port, hasPort := strings.Cut(t, "/")
	p, err := ParseProto(proto)
	if err != nil {
		return PortRange{}, fmt.Errorf("port %q: %w", s, err)
	}
	r := PortRange{Proto: p}
	if !hasPort {
		return r, nil
	}
	if p == ProtoAny || p == ProtoICMP {
		return PortRange{}, fmt.Errorf("port %q: %s has no ports", s, p)
	}
	lo, hi, isRange := strings.Cut(port, "-")
	if a, err := strconv.ParseUint(lo, 10, 16); err == nil {
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil {
				return PortRange{}, fmt.Errorf("port %q: range end %q is not a port number", s, hi)
			}
		}
		if a == 0 || b < a {
			return PortRange{}, fmt.Errorf("port %q: want 1-65535, low-high with low <= high", s)
		}
		r.Lo, r.Hi = uint16(a), uint16(b)
		return r, nil
	}
	if !validPortName(port) { // names may hold dashes: serve-80-tcp
		return PortRange{}, fmt.Errorf("port %q: want a number 1-65535, a range lo-hi or a port name", s)
	}
	r.Name = port
	return r, nil
}

// validPortName is Kubernetes' IANA_SVC_NAME: 1-15 lower-case letters,
// digits and '-', at least one letter, no leading, trailing or double '-'.
func validPortName(s string) bool {
	if len(s) == 0 || len(s) > 15 || s[0] == '-' || s[len(s)-1] == '-' || strings.Contains(s, "--") {
		return false
	}
	letter := false
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z':
			letter = true
		case c >= '0' && c <= '9', c == '-':
		default:
			return false
		}
	}
	return letter
}

// String is the canonical text: "tcp/80", "tcp/1000-2000", "tcp/http", "udp", "any".
func (r PortRange) String() string {
	switch {
	case r.Name != "":
		return r.Proto.String() + "/" + r.Name
	case r.Lo == 0:
		return r.Proto.String()
	case r.Lo == r.Hi:
		return r.Proto.String() + "/" + strconv.Itoa(int(r.Lo))
	}
	return r.Proto.String() + "/" + strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
}

// Matches reports whether a numbered range (not a named port) holds proto/port.
func (r PortRange) Matches(proto Proto, port uint16) bool {
	if r.Proto != ProtoAny && r.Proto != proto {
		return false
	}
	return r.Lo == 0 || (port >= r.Lo && port <= r.Hi)
}

func canonicalPorts(ps []string) []string {
	out := make([]string, len(ps))
	for i, s := range ps {
		if r, err := ParsePort(s); err == nil {
			out[i] = r.String()
		} else {
			out[i] = strings.TrimSpace(s)
		}
	}
	return out
}
