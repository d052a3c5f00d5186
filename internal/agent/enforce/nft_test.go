package enforce

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/palisade-dev/palisade/internal/agent/agenttest"
	"github.com/palisade-dev/palisade/internal/ruleset"
)

var initval = regexp.MustCompile(` initval 0x[0-9a-f]+`)

// TestNetlinkProgrammingMatchesIptables programs the same rules into two
// fresh namespaces, the first with iptables-restore (which makes the
// template), the second over netlink from the template, and into a third
// that already has foreign rules; what iptables-save, nft and ipset show
// must be identical, and removal must leave each namespace exactly as it
// was.
func TestNetlinkProgrammingMatchesIptables(t *testing.T) {
	l := agenttest.New(t)
	a, b, c := l.NS("a"), l.NS("b"), l.NS("c")
	l.Exec(c, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "9", "-j", "DROP")
	l.Exec(c, "ipset", "create", "cni-hosts", "hash:ip")
	before := saveNS(t, c)

	// Every kind of match the compiler uses: sets of the three types,
	// peer CIDRs, protocols with and without ports, DNAT original
	// destinations, and every verdict.
	r := &ruleset.Rules{Scope: "s", Version: "v1",
		Ingress: ruleset.Chain{Default: ruleset.Reject, Rules: []ruleset.Rule{
			{Verdict: ruleset.Allow, Proto: "tcp", Ports: "8080", Set: "PALISADE-clients", Comment: "intent 1"},
			{Verdict: ruleset.Allow, Proto: "udp", Ports: "53-54", PeerCIDR: "10.0.0.0/8"},
			{Verdict: ruleset.Drop, Proto: "sctp", Ports: "9999"},
			{Verdict: ruleset.Reject, Set: "PALISADE-nets"},
			{Verdict: ruleset.Allow, Proto: "tcp", DNATOnly: true, OrigDst: "10.96.0.10", OrigDstPort: 80},
		}},
		Egress: ruleset.Chain{Default: ruleset.Allow, Rules: []ruleset.Rule{
			{Verdict: ruleset.Reject, Set: "PALISADE-svc"},
			{Verdict: ruleset.Allow, Proto: "icmp"},
		}},
		Sets: []ruleset.IPSet{
			set("PALISADE-clients", ruleset.HashIP, "10.244.1.2", "10.244.2.3"),
			set("PALISADE-nets", ruleset.HashNet, "192.168.0.0/16", "10.1.2.3"),
			set("PALISADE-svc", ruleset.HashIPPort, "10.96.0.10,tcp:80", "10.96.0.11,udp:53", "10.96.0.12,sctp:7"),
		},
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	sp := &spec{rules: r}
	r0, p0 := replicated.Load(), restored.Load()
	for _, ns := range []string{a, b, c} {
		conn, err := openNF(agenttest.Path(ns))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, _, err := program(conn, sp, true, nil); err != nil {
			t.Fatalf("%s: %v", ns, err)
		}
	}
	// The first namespace taught the template (unless an earlier test in
	// this process already had these chains), the others used it.
	if rep, res := replicated.Load()-r0, restored.Load()-p0; rep < 2 || res > 1 {
		t.Fatalf("namespaces programmed over netlink: %d, with iptables-restore: %d; want ≥ 2 and ≤ 1", rep, res)
	}
	saveA, saveB := saveNS(t, a), saveNS(t, b)
	if saveA.ipt != saveB.ipt {
		t.Errorf("iptables-save differs:\n--- iptables-restore\n%s--- netlink\n%s", saveA.ipt, saveB.ipt)
	}
	nftA := l.Exec(a, "nft", "list", "ruleset")
	if nftB := l.Exec(b, "nft", "list", "ruleset"); nftA != nftB {
		t.Errorf("nft list ruleset differs:\n--- iptables-restore\n%s--- netlink\n%s", nftA, nftB)
	}
	sortedSave := func(ns string) string {
		lines := strings.Split(initval.ReplaceAllString(l.Exec(ns, "ipset", "save"), ""), "\n")
		sort.Strings(lines)
		return strings.Join(lines, "\n") + "\n"
	}
	setsA := sortedSave(a)
	if setsB := sortedSave(b); setsA != setsB {
		t.Errorf("ipset save differs:\n--- a\n%s--- b\n%s", setsA, setsB)
	}
	for _, want := range []string{"add PALISADE-svc 10.96.0.11,udp:53", "add PALISADE-nets 192.168.0.0/16", "add PALISADE-nets 10.1.2.3\n"} {
		if !strings.Contains(setsA, want) {
			t.Errorf("ipset save lacks %q:\n%s", want, setsA)
		}
	}
	saveC := saveNS(t, c)
	if !strings.Contains(saveC.ipt, "-A INPUT -p udp -m udp --dport 9 -j DROP") || !strings.Contains(saveC.ipt, "-A PALISADE-IN -p tcp -m tcp --dport 8080 -m set --match-set PALISADE-clients src") {
		t.Errorf("namespace with foreign rules:\n%s", saveC.ipt)
	}
	if got := withoutOurs(saveC.ipt); got != before.ipt {
		t.Errorf("foreign rules changed:\n--- before\n%s--- after, without Palisade's\n%s", before.ipt, got)
	}

	for _, ns := range []string{a, b, c} {
		conn, err := openNF(agenttest.Path(ns))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := remove(conn); err != nil {
			t.Fatalf("%s: remove: %v", ns, err)
		}
	}
	for _, ns := range []string{a, b} {
		if s := saveNS(t, ns); s.ipt != "" || s.sets != "" {
			t.Errorf("%s after removal:\n%s\n%s", ns, s.ipt, s.sets)
		}
		if out := l.Exec(ns, "nft", "list", "ruleset"); out != "" {
			t.Errorf("%s: nft list ruleset after removal:\n%s", ns, out)
		}
	}
	if after := saveNS(t, c); after != before {
		t.Errorf("namespace with foreign rules after removal:\n--- before\n%s%s--- after\n%s%s", before.ipt, before.sets, after.ipt, after.sets)
	}
}

// BenchmarkQuickSetCheck is the cost of one namespace's quick set check
// (checkSets: one header listing of its sets over netlink).
func BenchmarkQuickSetCheck(b *testing.B) {
	l := agenttest.New(b)
	ns := l.NS("q")
	conn, err := openNF(agenttest.Path(ns))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	var members []string
	for i := range 230 {
		members = append(members, fmt.Sprintf("10.244.1.%d", i+1))
	}
	sp := &spec{rules: &ruleset.Rules{Scope: "s", Version: "v1",
		Ingress: ruleset.Chain{Default: ruleset.Reject, Rules: []ruleset.Rule{{Verdict: ruleset.Allow, Proto: "tcp", Ports: "8080", Set: "PALISADE-clients"}}},
		Egress:  ruleset.Chain{Default: ruleset.Reject, Rules: []ruleset.Rule{{Verdict: ruleset.Allow, Proto: "tcp", Ports: "8080", Set: "PALISADE-servers"}}},
		Sets:    []ruleset.IPSet{set("PALISADE-clients", ruleset.HashIP, members...), set("PALISADE-servers", ruleset.HashIP, members...)}}}
	_, snap, err := program(conn, sp, true, nil)
	if err != nil {
		b.Fatal(err)
	}
	c0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		if what, _, err := checkSets(conn, sp, false, snap); err != nil || what != "" {
			b.Fatal(what, err)
		}
	}
	b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-µs/op")
}
