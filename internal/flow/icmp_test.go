package flow

import (
	"testing"

	"github.com/palisade-dev/palisade/internal/filter"
)

func TestICMPNames(t *testing.T) {
	for _, c := range []struct {
		proto      string
		typ, code  uint8
		ipProto    uint8
		want       string
		wantSrcSet bool
	}{
		{ProtoICMPv6, 133, 0, 58, "icmpv6/router-solicitation", false},
		{ProtoICMPv6, 143, 0, 58, "icmpv6/mldv2-report", false},
		{ProtoICMPv6, 129, 0, 58, "icmpv6/echo-request", true}, // a reply counts in its request's flow
		{ProtoICMP, 8, 0, 1, "icmp/echo-request", false},
		{ProtoICMP, 0, 0, 1, "icmp/echo-request", true},
		{ProtoICMP, 3, 3, 1, "icmp/destination-unreachable/3", false},
		{ProtoICMP, 200, 0, 1, "icmp/type-200", false},
	} {
		src, dst := ICMPPorts(c.ipProto, c.typ, c.code)
		port := dst
		if c.wantSrcSet {
			if dst != 0 || src == 0 {
				t.Errorf("%s type %d: ports %d/%d, want the type on the source side", c.proto, c.typ, src, dst)
			}
			port = src
		}
		if got := ICMPName(c.proto, port); got != c.want {
			t.Errorf("%s type %d code %d: %q, want %q", c.proto, c.typ, c.code, got, c.want)
		}
	}
	if ICMPName("tcp", 80) != "" {
		t.Error("tcp port named as ICMP")
	}
}

// TestICMPFlowFields: search and top see an ICMP flow's destination port
// as its type's name.
func TestICMPFlowFields(t *testing.T) {
	_, rs := ICMPPorts(58, 133, 0)
	f := &Flow{Proto: ProtoICMPv6, Src: Endpoint{IP: "fe80::1"}, Dst: Endpoint{IP: "ff02::2", Port: rs}}
	if k := TopKey(f, "dst.port"); k != "icmpv6/router-solicitation" {
		t.Errorf("top key %q", k)
	}
	q, err := filter.Parse(`dst.port = "icmpv6/router-solicitation" and proto = icmpv6`, Schema)
	if err != nil {
		t.Fatal(err)
	}
	if !q.Match(f) {
		t.Error("filter on the ICMP type name does not match")
	}
	tcp := &Flow{Proto: "tcp", Dst: Endpoint{IP: "10.0.0.1", Port: 80}}
	if k := TopKey(tcp, "dst.port"); k != "80" {
		t.Errorf("tcp top key %q", k)
	}
}
