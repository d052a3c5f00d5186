package agent

import (
	"net/netip"
	"sort"
	"time"

	"github.com/palisade-dev/palisade/internal/agent/capture"
	"github.com/palisade-dev/palisade/internal/agent/conntrack"
	"github.com/palisade-dev/palisade/internal/flow"
)

// aggregator turns drained per-interface counters into Observations: one
// per 5-tuple per drain in detailed mode; one per conversation (client,
// server, server port, protocol) per window in conversation mode.
//
// It keeps a little state per 5-tuple across drains: who the client is (the
// SYN sender, decided once), the TCP flags seen so far, and whether the
// connection was already counted as new.
type aggregator struct {
	node  string
	point func(ifindex int) flow.ObservationPoint

	flows map[capture.Key]*flowState
	conv  map[convKey]*convAcc
	// window counts conversation windows; a 5-tuple counts once in Conns
	// per window.
	window uint64
	seen   uint64 // 5-tuples first seen (health)
}

type flowState struct {
	clientIsB bool
	bySYN     bool   // client decided by a SYN, kept until the next connection's SYN
	flags     uint32 // client flags | server flags<<16, capture bits
	synSeq    uint32 // ISN of the last connection started
	lastSeen  time.Time
	window    uint64
}

type convKey struct {
	ifindex    int
	proto      uint8
	client     netip.Addr
	server     netip.Addr
	serverPort uint16
}

type convAcc struct {
	obs   flow.Observation
	inner map[flow.Tuple]struct{}
}

func newAggregator(node string, point func(int) flow.ObservationPoint) *aggregator {
	return &aggregator{node: node, point: point, flows: map[capture.Key]*flowState{}, conv: map[convKey]*convAcc{}, window: 1}
}

// oriented is a record as client→server.
type oriented struct {
	client, server         netip.AddrPort
	fwdP, fwdB, revP, revB uint64
	newConns               uint64
	firstInWindow          bool
	st                     *flowState
}

// orient updates the 5-tuple's state with a drained record and returns it
// client→server.
func (a *aggregator) orient(r capture.Record) oriented {
	st := a.flows[r.Key]
	var newConns uint64
	if st == nil {
		st = &flowState{}
		a.flows[r.Key] = st
		a.seen++
		if r.Proto != 6 {
			newConns = 1
		}
	}
	// A TCP connection is new when its SYN is in this drain (one picked
	// up mid-stream, e.g. after an agent restart, is not). A SYN with the
	// last connection's ISN is a retransmission, not a new connection.
	if r.SYNs > 0 {
		newConns = uint64(r.SYNs)
		if r.SYNs == 1 && st.synSeq == r.SYNSeq && st.flags != 0 {
			newConns = 0
		} else {
			st.bySYN, st.flags = false, 0 // a new connection on a reused 5-tuple
		}
		st.synSeq = r.SYNSeq
	}
	switch {
	case st.bySYN:
	case r.FlagsAB&capture.FlagSYN != 0 || r.FlagsBA&capture.FlagSYNACK != 0:
		st.clientIsB, st.bySYN = false, true
	case r.FlagsBA&capture.FlagSYN != 0 || r.FlagsAB&capture.FlagSYNACK != 0:
		st.clientIsB, st.bySYN = true, true
	case st.flags == 0:
		st.clientIsB = !serverIsB(r.Key, r.FirstFromB)
	}
	o := oriented{newConns: newConns, st: st}
	a1, b1 := netip.AddrPortFrom(r.A, r.APort), netip.AddrPortFrom(r.B, r.BPort)
	cf, sf := r.FlagsAB, r.FlagsBA
	o.client, o.server = a1, b1
	o.fwdP, o.fwdB, o.revP, o.revB = r.PktsAB, r.BytesAB, r.PktsBA, r.BytesBA
	if st.clientIsB {
		o.client, o.server = b1, a1
		o.fwdP, o.fwdB, o.revP, o.revB = r.PktsBA, r.BytesBA, r.PktsAB, r.BytesAB
		cf, sf = sf, cf
	}
	st.flags |= cf | sf<<16
	st.lastSeen = r.Last
	o.firstInWindow = st.window != a.window
	st.window = a.window
	return o
}

// serverIsB decides the server without a SYN: for ICMP the side holding
// the type (flow.ICMPPorts); a well-known port (<1024, or VXLAN's 4789) on
// one side only; else the lower port; else the receiver of the first packet
// counted.
func serverIsB(k capture.Key, firstFromB bool) bool {
	if (k.Proto == 1 || k.Proto == 58) && (k.APort == 0) != (k.BPort == 0) {
		return k.BPort != 0
	}
	wk := func(p uint16) bool { return p != 0 && (p < 1024 || p == 4789) }
	if wk(k.APort) != wk(k.BPort) {
		return wk(k.BPort)
	}
	if k.APort != k.BPort && k.APort != 0 && k.BPort != 0 {
		return k.BPort < k.APort
	}
	return !firstFromB
}

func flagNames(f uint32) []string {
	client, server := f&0xffff, f>>16
	var out []string
	if client&capture.FlagSYN != 0 {
		out = append(out, flow.FlagSYN)
	}
	if server&capture.FlagSYNACK != 0 {
		out = append(out, flow.FlagSYNACK)
	}
	if (client|server)&capture.FlagFIN != 0 {
		out = append(out, flow.FlagFIN)
	}
	if (client|server)&capture.FlagRST != 0 {
		out = append(out, flow.FlagRST)
	}
	return out
}

func tuple(proto uint8, c, s netip.AddrPort, keepSrcPort bool) flow.Tuple {
	t := flow.Tuple{Proto: conntrack.ProtoName(proto), SrcIP: c.Addr().String(), DstIP: s.Addr().String(), DstPort: s.Port()}
	if keepSrcPort {
		t.SrcPort = c.Port()
	}
	return t
}

// innerByOuter groups VXLAN inner tuples by outer flow, client→server.
func innerByOuter(inner []capture.Inner) map[capture.Key][]flow.Tuple {
	type canon struct {
		outer capture.Key
		proto uint8
		x, y  netip.AddrPort
	}
	best := map[canon]flow.Tuple{}
	var order []canon
	for _, in := range inner {
		s, d := netip.AddrPortFrom(in.Src, in.SrcPort), netip.AddrPortFrom(in.Dst, in.DstPort)
		k := canon{outer: in.Outer, proto: in.Proto, x: s, y: d}
		if d.Compare(s) < 0 {
			k.x, k.y = d, s
		}
		t := tuple(in.Proto, s, d, true)
		// The SYN sender's orientation wins; else the well-known port.
		_, ok := best[k]
		if !ok {
			order = append(order, k)
		}
		switch {
		case in.Flags&capture.FlagSYN != 0:
			best[k] = t
		case in.Flags&capture.FlagSYNACK != 0:
			best[k] = tuple(in.Proto, d, s, true)
		case !ok:
			best[k] = serverSide(t)
		}
	}
	out := map[capture.Key][]flow.Tuple{}
	for _, k := range order {
		out[k.outer] = append(out[k.outer], best[k])
	}
	return out
}

// serverSide orients a tuple seen without a SYN by port: the well-known or
// lower port is the server's.
func serverSide(t flow.Tuple) flow.Tuple {
	k := capture.Key{APort: t.SrcPort, BPort: t.DstPort}
	if serverIsB(k, false) {
		return t
	}
	t.SrcIP, t.DstIP, t.SrcPort, t.DstPort = t.DstIP, t.SrcIP, t.DstPort, t.SrcPort
	return t
}

// detailed returns one observation per drained record.
func (a *aggregator) detailed(recs []capture.Record, inner []capture.Inner) []flow.Observation {
	a.window++
	tun := innerByOuter(inner)
	out := make([]flow.Observation, 0, len(recs))
	for _, r := range recs {
		o := a.orient(r)
		obs := flow.Observation{
			Mode:       flow.DetailedMode,
			Point:      a.point(r.Ifindex),
			Tuple:      tuple(r.Proto, o.client, o.server, true),
			Start:      r.First,
			End:        r.Last,
			FwdPackets: o.fwdP, FwdBytes: o.fwdB,
			RevPackets: o.revP, RevBytes: o.revB,
			Flags:    flagNames(o.st.flags),
			Conns:    max(1, o.newConns),
			NewConns: o.newConns,
		}
		if r.Tunnel {
			obs.Tunnel = &flow.Tunnel{Type: "vxlan", VNI: r.VNI, Inner: tun[r.Key]}
		}
		out = append(out, obs)
	}
	return out
}

// accumulate folds drained records into the current conversation window.
func (a *aggregator) accumulate(recs []capture.Record, inner []capture.Inner) {
	tun := innerByOuter(inner)
	for _, r := range recs {
		o := a.orient(r)
		k := convKey{ifindex: r.Ifindex, proto: r.Proto, client: o.client.Addr(), server: o.server.Addr(), serverPort: o.server.Port()}
		acc := a.conv[k]
		if acc == nil {
			acc = &convAcc{obs: flow.Observation{
				Mode:  flow.ConversationMode,
				Point: a.point(r.Ifindex),
				Tuple: tuple(r.Proto, o.client, o.server, false),
				Start: r.First,
				End:   r.Last,
			}}
			a.conv[k] = acc
		}
		ob := &acc.obs
		if r.First.Before(ob.Start) {
			ob.Start = r.First
		}
		if r.Last.After(ob.End) {
			ob.End = r.Last
		}
		ob.FwdPackets += o.fwdP
		ob.FwdBytes += o.fwdB
		ob.RevPackets += o.revP
		ob.RevBytes += o.revB
		switch {
		case o.newConns > 0:
			ob.Conns += o.newConns
		case o.firstInWindow:
			ob.Conns++ // a connection carried over from an earlier window
		}
		ob.NewConns += o.newConns
		ob.Flags = mergeFlags(ob.Flags, flagNames(o.st.flags))
		if r.Tunnel {
			if ob.Tunnel == nil {
				ob.Tunnel = &flow.Tunnel{Type: "vxlan", VNI: r.VNI}
				acc.inner = map[flow.Tuple]struct{}{}
			}
			for _, t := range tun[r.Key] {
				if _, dup := acc.inner[t]; !dup {
					acc.inner[t] = struct{}{}
					ob.Tunnel.Inner = append(ob.Tunnel.Inner, t)
				}
			}
		}
	}
}

// closeWindow returns the conversation window's observations and starts a
// new window.
func (a *aggregator) closeWindow() []flow.Observation {
	out := make([]flow.Observation, 0, len(a.conv))
	for _, acc := range a.conv {
		out = append(out, acc.obs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	a.conv = map[convKey]*convAcc{}
	a.window++
	return out
}

var flagOrder = []string{flow.FlagSYN, flow.FlagSYNACK, flow.FlagFIN, flow.FlagRST}

func mergeFlags(a, b []string) []string {
	if len(b) == 0 {
		return a
	}
	var out []string
	for _, f := range flagOrder {
		for _, x := range append(a[:len(a):len(a)], b...) {
			if x == f {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

// prune forgets TCP 5-tuples that closed (FIN both ways or RST) more than
// closedAfter ago or went idle for idleAfter, and other 5-tuples idle for
// datagramIdle (they never close; a new one per DNS query would pile up).
func (a *aggregator) prune(now time.Time, closedAfter, idleAfter, datagramIdle time.Duration) {
	for k, st := range a.flows {
		idle := now.Sub(st.lastSeen)
		if k.Proto != 6 {
			if idle > datagramIdle {
				delete(a.flows, k)
			}
			continue
		}
		c, s := st.flags&0xffff, st.flags>>16
		closed := (c|s)&capture.FlagRST != 0 || (c&s)&capture.FlagFIN != 0
		if (closed && idle > closedAfter) || idle > idleAfter {
			delete(a.flows, k)
		}
	}
}
