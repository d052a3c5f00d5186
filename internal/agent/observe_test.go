package agent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/agent/capture"
	"github.com/palisade-dev/palisade/internal/flow"
)

func key(a string, ap uint16, b string, bp uint16, proto uint8) capture.Key {
	return capture.Key{Ifindex: 3, Proto: proto, A: netip.MustParseAddr(a), APort: ap, B: netip.MustParseAddr(b), BPort: bp}
}

func point(i int) flow.ObservationPoint {
	return flow.ObservationPoint{Node: "n", Interface: "veth", Kind: "pod"}
}

// The client is the SYN sender even when its port is the lower one, and
// stays so on later records without a SYN.
func TestClientIsSYNSender(t *testing.T) {
	ag := newAggregator("n", point)
	now := time.Now()
	// A=10.0.0.1:80 sent the SYN to B=10.0.0.2:40000 (an active FTP-like case).
	k := key("10.0.0.1", 80, "10.0.0.2", 40000, 6)
	r := capture.Record{Key: k, First: now, Last: now, PktsAB: 2, BytesAB: 120, PktsBA: 1, BytesBA: 60,
		FlagsAB: capture.FlagSYN | capture.FlagACK, FlagsBA: capture.FlagSYNACK, SYNs: 1, SYNSeq: 7}
	obs := ag.detailed([]capture.Record{r}, nil)
	o := obs[0]
	if o.Tuple.SrcIP != "10.0.0.1" || o.Tuple.SrcPort != 80 || o.Tuple.DstPort != 40000 || o.FwdPackets != 2 || o.RevPackets != 1 || o.NewConns != 1 {
		t.Fatalf("%+v", o)
	}
	r2 := capture.Record{Key: k, First: now, Last: now, PktsBA: 5, FlagsBA: capture.FlagACK | capture.FlagFIN}
	o = ag.detailed([]capture.Record{r2}, nil)[0]
	if o.Tuple.SrcIP != "10.0.0.1" || o.RevPackets != 5 || o.NewConns != 0 {
		t.Fatalf("second record %+v", o)
	}
	if want := []string{flow.FlagSYN, flow.FlagSYNACK, flow.FlagFIN}; len(o.Flags) != 3 || o.Flags[0] != want[0] || o.Flags[1] != want[1] || o.Flags[2] != want[2] {
		t.Fatalf("flags %v", o.Flags)
	}
	// A retransmitted SYN (same ISN) after a drain is not a new connection;
	// a new ISN on the same 5-tuple is.
	r3 := capture.Record{Key: k, First: now, Last: now, PktsAB: 1, FlagsAB: capture.FlagSYN, SYNs: 1, SYNSeq: 7}
	if o := ag.detailed([]capture.Record{r3}, nil)[0]; o.NewConns != 0 {
		t.Fatalf("retransmitted SYN counted: %+v", o)
	}
	r3.SYNSeq = 99
	if o := ag.detailed([]capture.Record{r3}, nil)[0]; o.NewConns != 1 {
		t.Fatalf("reused 5-tuple not counted: %+v", o)
	}
}

// Without a SYN: the well-known port, then the lower port, is the server.
func TestServerByPort(t *testing.T) {
	for _, c := range []struct {
		k          capture.Key
		firstFromB bool
		serverIsB  bool
	}{
		{key("10.0.0.1", 53, "10.0.0.2", 40000, 17), false, false},
		{key("10.0.0.1", 40000, "10.0.0.2", 5353, 17), false, true},
		{key("10.0.0.1", 6000, "10.0.0.2", 4789, 17), false, true},
		{key("10.0.0.1", 0, "10.0.0.2", 0, 1), true, false},
		{key("10.0.0.1", 0, "10.0.0.2", 0, 1), false, true},
	} {
		if got := serverIsB(c.k, c.firstFromB); got != c.serverIsB {
			t.Errorf("%+v firstFromB=%v: serverIsB %v", c.k, c.firstFromB, got)
		}
	}
}

// Conversation mode folds source ports away and counts connections.
func TestConversationSummary(t *testing.T) {
	ag := newAggregator("n", point)
	now := time.Now()
	var recs []capture.Record
	for p := uint16(40000); p < 40005; p++ {
		recs = append(recs, capture.Record{Key: key("10.0.0.1", p, "10.0.0.2", 8080, 6), First: now, Last: now.Add(time.Millisecond),
			PktsAB: 3, BytesAB: 200, PktsBA: 2, BytesBA: 100, FlagsAB: capture.FlagSYN | capture.FlagFIN, FlagsBA: capture.FlagSYNACK, SYNs: 1, SYNSeq: uint32(p)})
	}
	ag.accumulate(recs[:3], nil)
	ag.accumulate(recs[3:], nil)
	obs := ag.closeWindow()
	if len(obs) != 1 {
		t.Fatalf("%d records, want 1", len(obs))
	}
	o := obs[0]
	if o.Tuple != (flow.Tuple{Proto: "tcp", SrcIP: "10.0.0.1", DstIP: "10.0.0.2", DstPort: 8080}) || o.Conns != 5 || o.NewConns != 5 ||
		o.FwdPackets != 15 || o.RevBytes != 500 || o.Mode != flow.ConversationMode {
		t.Fatalf("%+v", o)
	}
	if len(ag.closeWindow()) != 0 {
		t.Fatal("window not reset")
	}
}

// VXLAN inner tuples come out client→server, once each.
func TestInnerTuples(t *testing.T) {
	outer := key("10.0.0.1", 40000, "10.0.0.2", 4789, 17)
	c, s := netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("10.244.2.10")
	in := []capture.Inner{
		{Outer: outer, VNI: 42, Proto: 6, Src: s, SrcPort: 8080, Dst: c, DstPort: 45000, Flags: capture.FlagSYNACK},
		{Outer: outer, VNI: 42, Proto: 6, Src: c, SrcPort: 45000, Dst: s, DstPort: 8080, Flags: capture.FlagSYN},
	}
	got := innerByOuter(in)[outer]
	want := flow.Tuple{Proto: "tcp", SrcIP: c.String(), DstIP: s.String(), SrcPort: 45000, DstPort: 8080}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("%+v", got)
	}
}
