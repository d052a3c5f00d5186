package conntrack_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/agent/agenttest"
	"github.com/palisade-dev/palisade/internal/agent/conntrack"
	"github.com/palisade-dev/palisade/internal/flow"
)

// TestDNATMapping: a ClusterIP-like DNAT rule in the node namespace; the
// watcher reports pod1:port→svc:80 with reply pod2:8080→pod1:port.
func TestDNATMapping(t *testing.T) {
	lab := agenttest.New(t)
	cl := lab.TwoNodes("direct")
	n1 := cl.Nodes[0]
	p1, p2 := cl.Pod("p1"), cl.Pod("p2")
	lab.Exec(n1.NS, "iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-d", "10.96.0.10/32", "-p", "tcp",
		"--dport", "80", "-j", "DNAT", "--to-destination", p2.IP+":8080")

	if err := conntrack.Enable(agenttest.Path(n1.NS)); err != nil {
		t.Fatal(err)
	}
	if v := strings.TrimSpace(lab.Exec(n1.NS, "cat", "/proc/sys/net/netfilter/nf_conntrack_acct")); v != "1" {
		t.Fatalf("nf_conntrack_acct = %s", v)
	}
	w := conntrack.NewWatcher(conntrack.Config{Node: "node1", NSPath: agenttest.Path(n1.NS)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	time.Sleep(100 * time.Millisecond)

	srv, err := agenttest.ListenTCP(p2.NS, p2.IP+":8080", 10)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cn, err := agenttest.Exchange(p1.NS, "10.96.0.10:80", 10)
	if err != nil {
		t.Fatal(err)
	}
	want := flow.NAT{Node: "node1",
		Original: flow.Tuple{Proto: "tcp", SrcIP: p1.IP, DstIP: "10.96.0.10", SrcPort: cn.Local.Port(), DstPort: 80},
		Reply:    flow.Tuple{Proto: "tcp", SrcIP: p2.IP, DstIP: p1.IP, SrcPort: 8080, DstPort: cn.Local.Port()},
	}
	var got []flow.NAT
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		got = append(got, w.Take()...)
		for _, n := range got {
			if n.ConnID != 0 && n.Original == want.Original && n.Reply == want.Reply && n.Node == "node1" {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no mapping %+v in %+v (counters %+v)", want, got, w.Counters())
}

// TestEnableTurnsConntrackOn: in a namespace with no rules, conntrack
// tracks nothing until Enable adds Palisade's rule.
func TestEnableTurnsConntrackOn(t *testing.T) {
	lab := agenttest.New(t)
	cl := lab.TwoNodes("direct")
	n2, p3 := cl.Nodes[1], cl.Pod("p3")
	srv, err := agenttest.ListenTCP(n2.NS, "10.244.2.1:9000", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	count := func() int {
		out := lab.Exec(n2.NS, "conntrack", "-L", "-p", "tcp", "--dport", "9000")
		return strings.Count(out, "dport=9000")
	}
	if _, err := agenttest.Exchange(p3.NS, "10.244.2.1:9000", 1); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Fatalf("conntrack already on before Enable (%d entries): fixture assumption broken", n)
	}
	if err := conntrack.Enable(agenttest.Path(n2.NS)); err != nil {
		t.Fatal(err)
	}
	if _, err := agenttest.Exchange(p3.NS, "10.244.2.1:9000", 1); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("after Enable: %d conntrack entries for the new connection, want 1", n)
	}
}
