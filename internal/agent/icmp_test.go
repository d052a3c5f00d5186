package agent_test

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/palisade-dev/palisade/internal/agent/agenttest"
	"github.com/palisade-dev/palisade/internal/flow"
)

// sendICMP sends n messages of typ from ns to dst over a raw socket and
// waits for as many answers when wantReplies.
func sendICMP(t *testing.T, ns, network, dst string, typ icmp.Type, n int, wantReplies bool) {
	t.Helper()
	var c net.Conn
	var err error
	// A fresh interface's IPv6 link-local address is tentative for a
	// moment (duplicate address detection): retry until it can be used.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err = agenttest.Do(ns, func() error {
			var err error
			c, err = net.Dial(network, dst)
			return err
		})
		if err == nil || !errors.Is(err, syscall.EADDRNOTAVAIL) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range n {
		b, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: 7, Seq: i, Data: []byte("palisade")}}).Marshal(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		if wantReplies {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Read(make([]byte, 1500)); err != nil {
				t.Fatalf("echo reply %d from %s: %v", i, dst, err)
			}
		}
	}
}

// TestAgentICMPByType: ICMP flows carry their type and code in the
// destination port, an echo reply counting in its request's flow, and are
// named by type (icmp/echo-request, icmpv6/router-solicitation).
func TestAgentICMPByType(t *testing.T) {
	cl, srv, ag := detailedOnNode1(t, "direct", time.Second)
	p1, p2 := cl.Pod("p1"), cl.Pod("p2")
	const n = 4
	sendICMP(t, p1.NS, "ip4:icmp", p2.IP, ipv4.ICMPTypeEcho, n, true)
	// A router solicitation, as an interface coming up sends (to all routers).
	sendICMP(t, p1.NS, "ip6:ipv6-icmp", "ff02::2%eth0", ipv6.ICMPTypeRouterSolicitation, 1, false)
	time.Sleep(600 * time.Millisecond)
	ag.stop(t)

	var fwd, rev uint64
	echo := map[flow.Tuple]bool{}
	rs := 0
	for _, o := range srv.observations() {
		if o.Point.Interface != "vethp1" {
			continue
		}
		switch {
		case o.Tuple.Proto == flow.ProtoICMP && (o.Tuple.DstIP == p2.IP || o.Tuple.SrcIP == p2.IP):
			echo[o.Tuple] = true
			fwd, rev = fwd+o.FwdPackets, rev+o.RevPackets
		case o.Tuple.Proto == flow.ProtoICMPv6 && o.Tuple.DstIP == "ff02::2":
			rs++
			if name := flow.ICMPName(o.Tuple.Proto, o.Tuple.DstPort); name != "icmpv6/router-solicitation" {
				t.Errorf("router solicitation %+v named %q", o.Tuple, name)
			}
		}
	}
	want := flow.Tuple{Proto: flow.ProtoICMP, SrcIP: p1.IP, DstIP: p2.IP, DstPort: 8 << 8}
	if len(echo) != 1 || !echo[want] || fwd != n || rev != n {
		t.Errorf("echo flows %v with %d/%d packets; want only %+v (replies count in the request's flow) with %d each way", echo, fwd, rev, want, n)
	}
	if name := flow.ICMPName(want.Proto, want.DstPort); name != "icmp/echo-request" {
		t.Errorf("echo named %q", name)
	}
	if rs == 0 {
		t.Error("no router solicitation flow")
	}
}
