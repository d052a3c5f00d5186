package flow

import "strconv"

// ICMP and ICMPv6 have no ports. Agents put type<<8 | code in the server
// port's place (NetFlow's convention): the destination port of an ICMP flow
// is its type and code, an echo reply counting in its request's flow. Search
// and top show it by name: dst.port of an ICMP flow is
// "icmpv6/router-solicitation", "icmp/echo-request",
// "icmp/destination-unreachable/3" (code 3), "icmpv6/type-200".

// Protocol names of ICMP flows.
const (
	ProtoICMP   = "icmp"
	ProtoICMPv6 = "icmpv6"
)

// IsICMP reports whether proto is ICMP or ICMPv6.
func IsICMP(proto string) bool { return proto == ProtoICMP || proto == ProtoICMPv6 }

var icmpTypes = map[uint8]string{
	0: "echo-reply", 3: "destination-unreachable", 4: "source-quench", 5: "redirect",
	8: "echo-request", 9: "router-advertisement", 10: "router-solicitation", 11: "time-exceeded",
	12: "parameter-problem", 13: "timestamp-request", 14: "timestamp-reply",
}

var icmpv6Types = map[uint8]string{
	1: "destination-unreachable", 2: "packet-too-big", 3: "time-exceeded", 4: "parameter-problem",
	128: "echo-request", 129: "echo-reply", 130: "mld-query", 131: "mld-report", 132: "mld-done",
	133: "router-solicitation", 134: "router-advertisement", 135: "neighbor-solicitation",
	136: "neighbor-advertisement", 137: "redirect", 143: "mldv2-report",
}

// ICMPName names the ICMP type and code carried in an ICMP flow's
// destination port ("icmpv6/router-solicitation"); "" when proto is not
// ICMP.
func ICMPName(proto string, port uint16) string {
	names := icmpTypes
	switch proto {
	case ProtoICMP:
	case ProtoICMPv6:
		names = icmpv6Types
	default:
		return ""
	}
	typ, code := uint8(port>>8), uint8(port)
	name, ok := names[typ]
	if !ok {
		name = "type-" + strconv.Itoa(int(typ))
	}
	s := proto + "/" + name
	if code != 0 {
		s += "/" + strconv.Itoa(int(code))
	}
	return s
}

// ICMPPorts places an ICMP message's type and code as agents do: in the
// destination port, except for an echo reply, whose request's type goes in
// the source port (the replier is the flow's server). ipProto is 1 (ICMP)
// or 58 (ICMPv6).
func ICMPPorts(ipProto, typ, code uint8) (src, dst uint16) {
	switch {
	case ipProto == 1 && typ == 0:
		return 8<<8 | uint16(code), 0
	case ipProto == 58 && typ == 129:
		return 128<<8 | uint16(code), 0
	}
	return 0, uint16(typ)<<8 | uint16(code)
}
