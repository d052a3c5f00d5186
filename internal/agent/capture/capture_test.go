package capture_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/agent/agenttest"
	"github.com/palisade-dev/palisade/internal/agent/capture"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func handle(t *testing.T, ns string) *netlink.Handle {
	t.Helper()
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsh.Close() })
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func attach(t *testing.T, c *capture.Capture, h *netlink.Handle, names ...string) map[string]int {
	t.Helper()
	idx := map[string]int{}
	for _, n := range names {
		l, err := h.LinkByName(n)
		if err != nil {
			t.Fatalf("link %s: %v", n, err)
		}
		if err := c.Attach(h, l.Attrs().Index); err != nil {
			t.Fatal(err)
		}
		idx[n] = l.Attrs().Index
	}
	return idx
}

// find returns the record at ifindex for the flow between x and y (either order).
func find(recs []capture.Record, ifindex int, x, y netip.AddrPort, proto uint8) (capture.Record, bool) {
	for _, r := range recs {
		if r.Ifindex != ifindex || r.Proto != proto {
			continue
		}
		a, b := netip.AddrPortFrom(r.A, r.APort), netip.AddrPortFrom(r.B, r.BPort)
		if (a == x && b == y) || (a == y && b == x) {
			return r, true
		}
	}
	return capture.Record{}, false
}

// oriented returns counters as client->server given the client's address.
func oriented(r capture.Record, client netip.AddrPort) (fp, fb, rp, rb uint64, ff, rf uint32) {
	if netip.AddrPortFrom(r.A, r.APort) == client {
		return r.PktsAB, r.BytesAB, r.PktsBA, r.BytesBA, r.FlagsAB, r.FlagsBA
	}
	return r.PktsBA, r.BytesBA, r.PktsAB, r.BytesAB, r.FlagsBA, r.FlagsAB
}

// TestCaptureIntraNode sends known TCP and UDP traffic pod1→pod2 on one node
// and checks the exact counters at both host-side veths, and that the
// uplink saw nothing of it.
func TestCaptureIntraNode(t *testing.T) {
	lab := agenttest.New(t)
	cl := lab.TwoNodes("direct")
	n1 := cl.Nodes[0]
	p1, p2 := cl.Pod("p1"), cl.Pod("p2")

	c, err := capture.Open(capture.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := handle(t, n1.NS)
	idx := attach(t, c, h, "vethp1", "vethp2", "eth0")

	srv, err := agenttest.ListenTCP(p2.NS, p2.IP+":8080", 5000)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	uc, err := agenttest.ListenUDP(p2.NS, p2.IP+":5353")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()

	const conns = 3
	var got []agenttest.Conn
	for i := 0; i < conns; i++ {
		cn, err := agenttest.Exchange(p1.NS, p2.IP+":8080", 10000+i)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, cn)
	}
	rstLocal, err := agenttest.Reset(p1.NS, p2.IP+":8080", 100)
	if err != nil {
		t.Fatal(err)
	}
	udpLocal, err := agenttest.SendUDP(p1.NS, p2.IP+":5353", 7, 200)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)

	recs, _, err := c.Drain()
	if err != nil {
		t.Fatal(err)
	}
	server := netip.MustParseAddrPort(p2.IP + ":8080")
	for i, cn := range got {
		for _, veth := range []string{"vethp1", "vethp2"} {
			r, ok := find(recs, idx[veth], cn.Local, server, 6)
			if !ok {
				t.Fatalf("conn %d: no record at %s", i, veth)
			}
			fp, fb, rp, rb, ff, rf := oriented(r, cn.Local)
			if fp != uint64(cn.SegsOut) || rp != uint64(cn.SegsIn) {
				t.Errorf("conn %d at %s: packets fwd=%d rev=%d, kernel says out=%d in=%d", i, veth, fp, rp, cn.SegsOut, cn.SegsIn)
			}
			// IP bytes = payload + per-packet IP/TCP headers (20+20..60).
			if fb < cn.BytesSent+40*fp || fb > cn.BytesSent+60*fp {
				t.Errorf("conn %d at %s: fwd bytes %d for %d payload in %d packets", i, veth, fb, cn.BytesSent, fp)
			}
			if rb < cn.BytesReceived+40*rp || rb > cn.BytesReceived+60*rp {
				t.Errorf("conn %d at %s: rev bytes %d for %d payload in %d packets", i, veth, rb, cn.BytesReceived, rp)
			}
			if ff&capture.FlagSYN == 0 || ff&capture.FlagFIN == 0 || ff&capture.FlagSYNACK != 0 {
				t.Errorf("conn %d at %s: client flags %#x", i, veth, ff)
			}
			if rf&capture.FlagSYNACK == 0 || rf&capture.FlagFIN == 0 || rf&capture.FlagSYN != 0 {
				t.Errorf("conn %d at %s: server flags %#x", i, veth, rf)
			}
		}
		if _, ok := find(recs, idx["eth0"], cn.Local, server, 6); ok {
			t.Errorf("conn %d: intra-node flow seen on the uplink", i)
		}
	}
	r, ok := find(recs, idx["vethp1"], rstLocal, server, 6)
	if !ok {
		t.Fatal("no record of the reset connection")
	}
	if _, _, _, _, ff, _ := oriented(r, rstLocal); ff&capture.FlagRST == 0 {
		t.Errorf("reset connection: client flags %#x, want RST", ff)
	}
	for _, veth := range []string{"vethp1", "vethp2"} {
		r, ok := find(recs, idx[veth], udpLocal, netip.MustParseAddrPort(p2.IP+":5353"), 17)
		if !ok {
			t.Fatalf("no UDP record at %s", veth)
		}
		fp, fb, rp, rb, _, _ := oriented(r, udpLocal)
		if fp != 7 || fb != 7*(200+28) || rp != 0 || rb != 0 {
			t.Errorf("UDP at %s: fwd %d/%d rev %d/%d, want 7/%d 0/0", veth, fp, fb, rp, rb, 7*228)
		}
	}
	// Drained: a second drain has none of it.
	recs, _, _ = c.Drain()
	for _, r := range recs {
		if r.Proto == 6 && r.BPort == 8080 {
			t.Errorf("flow still in the map after drain: %+v", r)
		}
	}
	st, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets == 0 || st.InsertFails != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestCaptureIPv6: UDP between pods over IPv6 on the same bridge; exact
// packets and IP bytes (payload + 8 UDP + 40 IPv6).
func TestCaptureIPv6(t *testing.T) {
	lab := agenttest.New(t)
	cl := lab.TwoNodes("direct")
	n1, p1, p2 := cl.Nodes[0], cl.Pod("p1"), cl.Pod("p2")
	lab.Exec(p1.NS, "ip", "-6", "addr", "add", "fd00:1::10/64", "dev", "eth0", "nodad")
	lab.Exec(p2.NS, "ip", "-6", "addr", "add", "fd00:1::11/64", "dev", "eth0", "nodad")
	c, err := capture.Open(capture.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := handle(t, n1.NS)
	idx := attach(t, c, h, "vethp1", "vethp2")
	uc, err := agenttest.ListenUDP(p2.NS, "[fd00:1::11]:5353")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	// Neighbour discovery first, so only the datagrams are left to count.
	_, _ = agenttest.SendUDP(p1.NS, "[fd00:1::11]:5354", 1, 1)
	time.Sleep(200 * time.Millisecond)
	_, _, _ = c.Drain()
	src, err := agenttest.SendUDP(p1.NS, "[fd00:1::11]:5353", 5, 300)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	recs, _, err := c.Drain()
	if err != nil {
		t.Fatal(err)
	}
	r, ok := find(recs, idx["vethp2"], src, netip.MustParseAddrPort("[fd00:1::11]:5353"), 17)
	if !ok {
		t.Fatalf("no IPv6 record in %+v", recs)
	}
	fp, fb, _, _, _, _ := oriented(r, src)
	if fp != 5 || fb != 5*(300+8+40) || !r.A.Is6() {
		t.Errorf("IPv6 UDP: %d packets %d bytes, want 5, %d", fp, fb, 5*348)
	}
}
