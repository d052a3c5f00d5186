package enforce

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/agent/agenttest"
	"github.com/palisade-dev/palisade/internal/ruleset"
	"github.com/palisade-dev/palisade/internal/testutil"
)

// listen serves TCP port in namespace ns until the test ends: every
// connection gets "ok" and is closed.
func listen(t *testing.T, ns, ip string, port int) {
	t.Helper()
	var ln net.Listener
	err := agenttest.Do(ns, func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("ok"))
			c.Close()
		}
	}()
}

// dial connects from namespace ns and reads the greeting: nil means the
// connection went through end to end.
func dial(ns, addr string) error {
	var c net.Conn
	err := agenttest.Do(ns, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 500*time.Millisecond)
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(b) != "ok" {
		return fmt.Errorf("got %q", b)
	}
	return nil
}

// probeLoop dials addr from ns in a loop, calling ok for every connection
// that gets through, until the returned stop is called.
func probeLoop(ns, addr string, ok func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if dial(ns, addr) == nil {
				ok()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return func() { close(done); wg.Wait() }
}

type snapshotNS struct{ ipt, sets string }

func saveNS(t *testing.T, ns string) snapshotNS {
	t.Helper()
	ipt, err := SaveAll(agenttest.Path(ns))
	if err != nil {
		t.Fatal(err)
	}
	sets, err := run(agenttest.Path(ns), "", "ipset", "list")
	if err != nil {
		t.Fatal(err)
	}
	return snapshotNS{ipt, sets}
}

// withoutOurs drops Palisade's lines from a normalized save, and the
// filter table's header lines when nothing else is left in it.
func withoutOurs(save string) string {
	lines, _, _, _ := ours(normalizeSave(save))
	drop := map[string]bool{}
	for _, l := range lines {
		drop[l] = true
	}
	var b strings.Builder
	for _, l := range strings.Split(save, "\n") {
		if l != "" && !drop[l] {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func set(name string, t ruleset.SetType, members ...string) ruleset.IPSet {
	return ruleset.IPSet{Name: name, Type: t, Members: members}
}

// TestEnforceOnRealNamespaces programs pod and node rules in a two-node
// network of real namespaces and checks them with real connections: the
// rules' decisions, foreign rules untouched, incremental set updates,
// drift repair within 1 s, resume after a restart, the node's gate for a
// pod that appears while enforced, and disable restoring the exact
// pre-enforcement state.
func TestEnforceOnRealNamespaces(t *testing.T) {
	for _, mode := range []string{"direct", "vxlan"} {
		t.Run(mode, func(t *testing.T) { testEnforce(t, mode) })
	}
}

func testEnforce(t *testing.T, mode string) {
	l := agenttest.New(t)
	c := l.TwoNodes(mode)
	n1 := c.Nodes[0]
	p1, p2, p3 := c.Pod("p1"), c.Pod("p2"), c.Pod("p3")

	// Foreign rules and sets, as a CNI and kube-proxy would have them.
	l.Exec(n1.NS, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.244.0.0/16", "!", "-d", "10.244.0.0/16", "-j", "MASQUERADE")
	l.Exec(n1.NS, "iptables", "-N", "CNI-FORWARD")
	l.Exec(n1.NS, "iptables", "-A", "FORWARD", "-m", "comment", "--comment", "cni", "-j", "CNI-FORWARD")
	l.Exec(n1.NS, "iptables", "-A", "CNI-FORWARD", "-s", "10.244.0.0/16", "-j", "ACCEPT")
	l.Exec(p1.NS, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "9", "-j", "DROP")
	l.Exec(p1.NS, "ipset", "create", "cni-hosts", "hash:ip")
	l.Exec(p1.NS, "ipset", "add", "cni-hosts", "10.9.9.9")
	before := map[string]snapshotNS{}
	for _, ns := range []string{n1.NS, p1.NS, p2.NS, p3.NS} {
		before[ns] = saveNS(t, ns)
	}

	for _, p := range []*agenttest.Pod{p1, p2, p3} {
		listen(t, p.NS, p.IP, 8080)
		listen(t, p.NS, p.IP, 9090)
	}
	// Before enforcement everything connects.
	for _, x := range [][2]string{{p1.NS, p2.IP + ":9090"}, {p3.NS, p1.IP + ":8080"}} {
		if err := dial(x[0], x[1]); err != nil {
			t.Fatalf("before enforcement %s → %s: %v", x[0], x[1], err)
		}
	}

	// p1 may reach tcp/8080 of p2 and p3; p2 accepts tcp/8080 from p1 only.
	p1Rules := &ruleset.Rules{Scope: "app", Version: "v1",
		Egress:  ruleset.Chain{Default: ruleset.Reject, Rules: []ruleset.Rule{{Verdict: ruleset.Allow, Proto: "tcp", Ports: "8080", Set: "PALISADE-servers"}}},
		Ingress: ruleset.Chain{Default: ruleset.Reject},
		Sets:    []ruleset.IPSet{set("PALISADE-servers", ruleset.HashIP, p2.IP, p3.IP)},
	}
	p2Rules := &ruleset.Rules{Scope: "app", Version: "v1",
		Ingress: ruleset.Chain{Default: ruleset.Reject, Rules: []ruleset.Rule{{Verdict: ruleset.Allow, Proto: "tcp", Ports: "8080", Set: "PALISADE-clients"}}},
		Egress:  ruleset.Chain{Default: ruleset.Allow},
		Sets:    []ruleset.IPSet{set("PALISADE-clients", ruleset.HashIP, p1.IP)},
	}
	bundle := func(pods ...ruleset.Pod) *ruleset.Bundle {
		b := &ruleset.Bundle{Node: "node1", Versions: []string{"app@v1"}, PodCIDRs: []string{"10.244.1.0/24"}, Pods: pods}
		b.Seal()
		return b
	}
	b1 := bundle(ruleset.Pod{ID: "app/p1", IPs: []string{p1.IP}, Rules: p1Rules}, ruleset.Pod{ID: "app/p2", IPs: []string{p2.IP}, Rules: p2Rules})

	state := filepath.Join(t.TempDir(), "enforce.json")
	pods := &NetNSDir{Prefix: l.Prefix + "-p"}
	var drifts atomic.Int32
	newEnforcer := func() *Enforcer {
		e, err := New(Config{Node: "node1", NetNS: agenttest.Path(n1.NS), Pods: pods, StateFile: state,
			CheckInterval: time.Hour, SetCheckInterval: time.Second, OnDrift: func(ruleset.DriftEvent) { drifts.Add(1) }})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	e := newEnforcer()
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = e.Run(ctx) }()
	if err := e.Apply(b1); err != nil {
		t.Fatal(err)
	}
	if st := e.Status(); st.Hash != b1.Hash {
		t.Fatalf("status hash %q, want %q (%+v)", st.Hash, b1.Hash, st)
	}

	expect := func(stage string, cases ...[3]string) {
		t.Helper()
		for _, x := range cases {
			err := dial(x[0], x[1])
			if (err == nil) != (x[2] == "ok") {
				t.Errorf("%s: %s → %s: got %v, want %s", stage, x[0], x[1], err, x[2])
			}
		}
	}
	expect("enforced",
		[3]string{p1.NS, p2.IP + ":8080", "ok"},
		[3]string{p1.NS, p2.IP + ":9090", "refused"}, // p1 egress
		[3]string{p1.NS, p3.IP + ":8080", "ok"},      // cross-node, p3 not enforced
		[3]string{p1.NS, p3.IP + ":9090", "refused"},
		[3]string{p3.NS, p2.IP + ":8080", "refused"}, // p2 ingress: p1 only
		[3]string{p3.NS, p1.IP + ":8080", "refused"}, // p1 ingress default
		[3]string{p2.NS, p3.IP + ":9090", "ok"},      // p2 egress default allow
	)

	// Foreign rules and sets are untouched.
	for _, ns := range []string{n1.NS, p1.NS} {
		now := saveNS(t, ns)
		if got, want := withoutOurs(now.ipt), before[ns].ipt; got != want && !(strings.TrimSpace(want) == "" && emptyFilter(got)) {
			t.Errorf("%s: foreign iptables rules changed:\n--- before\n%s--- after (without Palisade's)\n%s", ns, want, got)
		}
		if !strings.Contains(now.sets, "Name: cni-hosts") && ns == p1.NS {
			t.Errorf("%s: foreign set gone:\n%s", ns, now.sets)
		}
	}

	// An IP change of p2 is a set update: p1's chains stay as they are.
	l.Exec(p2.NS, "ip", "addr", "add", "10.244.1.12/24", "dev", "eth0")
	listen(t, p2.NS, "10.244.1.12", 8080)
	chainsBefore, _ := SaveFilter(agenttest.Path(p1.NS))
	p1b := *p1Rules
	p1b.Sets = []ruleset.IPSet{set("PALISADE-servers", ruleset.HashIP, p2.IP, "10.244.1.12", p3.IP)}
	p2b := *p2Rules
	b2 := bundle(ruleset.Pod{ID: "app/p1", IPs: []string{p1.IP}, Rules: &p1b}, ruleset.Pod{ID: "app/p2", IPs: []string{p2.IP, "10.244.1.12"}, Rules: &p2b})
	if err := e.Apply(b2); err != nil {
		t.Fatal(err)
	}
	if after, _ := SaveFilter(agenttest.Path(p1.NS)); after != chainsBefore {
		t.Errorf("an address change reloaded p1's rules:\n%s\n---\n%s", chainsBefore, after)
	}
	expect("new address", [3]string{p1.NS, "10.244.1.12:8080", "ok"})

	// A rules change is programmed even though the kernel still holds
	// what was programmed before (no drift): p2's egress becomes REJECT.
	p2c := p2b
	p2c.Egress = ruleset.Chain{Default: ruleset.Reject}
	if err := e.Apply(bundle(ruleset.Pod{ID: "app/p1", IPs: []string{p1.IP}, Rules: &p1b}, ruleset.Pod{ID: "app/p2", IPs: []string{p2.IP, "10.244.1.12"}, Rules: &p2c})); err != nil {
		t.Fatal(err)
	}
	expect("p2 egress now rejects", [3]string{p2.NS, p3.IP + ":9090", "refused"})
	if err := e.Apply(b2); err != nil {
		t.Fatal(err)
	}
	expect("p2 egress allows again", [3]string{p2.NS, p3.IP + ":9090", "ok"})

	// Drift: flush p1's egress chain while a blocked probe loop runs.
	var leakFirst, leakLast atomic.Int64
	stopLoop := probeLoop(p1.NS, p2.IP+":9090", func() {
		now := time.Now().UnixNano()
		leakFirst.CompareAndSwap(0, now)
		leakLast.Store(now)
	})
	time.Sleep(100 * time.Millisecond)
	flushed := time.Now()
	l.Exec(p1.NS, "iptables", "-F", ChainOut)
	testutil.Eventually(t, 2*time.Second, "p1's egress chain restored", func() bool {
		s, _ := SaveFilter(agenttest.Path(p1.NS))
		return strings.Contains(s, "-A "+ChainOut+" -p tcp -m tcp --dport 8080")
	})
	restored := time.Since(flushed)
	time.Sleep(300 * time.Millisecond)
	stopLoop()
	if restored > time.Second {
		t.Errorf("drift repaired after %v, want ≤ 1 s", restored)
	}
	if f, la := leakFirst.Load(), leakLast.Load(); f != 0 && time.Duration(la-f) > time.Second {
		t.Errorf("blocked probe loop leaked for %v", time.Duration(la-f))
	}
	testutil.Eventually(t, time.Second, "drift event in the status", func() bool {
		for _, d := range e.Status().Drift {
			if d.Target == "app/p1" && strings.Contains(d.What, "chains") {
				return true
			}
		}
		return false
	})
	t.Logf("drift repaired in %v; leak window %v", restored, time.Duration(leakLast.Load()-leakFirst.Load()))

	// Ipset drift (no notification): the quick set check (every second
	// here) restores it; the full check is an hour away.
	deleted := time.Now()
	l.Exec(p1.NS, "ipset", "del", "PALISADE-servers", p2.IP)
	testutil.Eventually(t, 3*time.Second, "set member restored", func() bool { return dial(p1.NS, p2.IP+":8080") == nil })
	setRestored := time.Since(deleted)
	testutil.Eventually(t, time.Second, "set drift event in the status", func() bool {
		for _, d := range e.Status().Drift {
			if d.Target == "app/p1" && strings.Contains(d.What, "1 set changes") {
				return true
			}
		}
		return false
	})
	if setRestored > 2*time.Second {
		t.Errorf("set member restored after %v, want ≤ 2 s (SetCheckInterval 1 s)", setRestored)
	}
	t.Logf("set member restored in %v", setRestored)

	// Restart: a new enforcer on the same state file keeps the rules in
	// force throughout and resumes them.
	cancel()
	<-runDone
	expect("agent stopped", [3]string{p1.NS, p2.IP + ":9090", "refused"}, [3]string{p1.NS, p2.IP + ":8080", "ok"})
	e = newEnforcer()
	if e.Bundle() == nil || e.Bundle().Hash != b2.Hash {
		t.Fatalf("restarted enforcer did not resume bundle %s", b2.Hash)
	}
	ctx, cancel = context.WithCancel(context.Background())
	runDone = make(chan struct{})
	go func() { defer close(runDone); _ = e.Run(ctx) }()
	defer func() { cancel(); <-runDone }()
	testutil.Eventually(t, 2*time.Second, "resumed", func() bool { return e.Status().Hash == b2.Hash })

	// A pod that appears while the node is enforced: a probe loop started
	// before it exists never gets through, neither before its rules are
	// programmed (the node's gate) nor after (its own ingress).
	p4IP := "10.244.1.13"
	var p4ok atomic.Int32
	stopLoop = probeLoop(p3.NS, p4IP+":8080", func() { p4ok.Add(1) })
	p4 := l.AddPod(n1, "p4", 13)
	listen(t, p4.NS, p4.IP, 8080)
	time.Sleep(300 * time.Millisecond) // the pod is up, its rules not yet known
	expect("new pod, not yet programmed", [3]string{p4.NS, p3.IP + ":8080", "refused"}, [3]string{p1.NS, p4.IP + ":8080", "refused"})
	p4Rules := &ruleset.Rules{Scope: "app", Version: "v1",
		Ingress: ruleset.Chain{Default: ruleset.Reject, Rules: []ruleset.Rule{{Verdict: ruleset.Allow, Proto: "tcp", Ports: "8080", Set: "PALISADE-clients"}}},
		Egress:  ruleset.Chain{Default: ruleset.Allow},
		Sets:    []ruleset.IPSet{set("PALISADE-clients", ruleset.HashIP, p1.IP)},
	}
	p1c := p1b
	p1c.Sets = []ruleset.IPSet{set("PALISADE-servers", ruleset.HashIP, p2.IP, "10.244.1.12", p3.IP, p4.IP)}
	b3 := bundle(ruleset.Pod{ID: "app/p1", IPs: []string{p1.IP}, Rules: &p1c}, ruleset.Pod{ID: "app/p2", IPs: []string{p2.IP, "10.244.1.12"}, Rules: &p2b},
		ruleset.Pod{ID: "app/p4", IPs: []string{p4.IP}, Rules: p4Rules})
	if err := e.Apply(b3); err != nil {
		t.Fatal(err)
	}
	expect("new pod programmed", [3]string{p1.NS, p4.IP + ":8080", "ok"}, [3]string{p4.NS, p3.IP + ":8080", "ok"})
	time.Sleep(200 * time.Millisecond)
	stopLoop()
	if n := p4ok.Load(); n != 0 {
		t.Errorf("the probe loop from p3 reached the new pod %d times", n)
	}

	// Disable: every namespace is exactly as before enforcement.
	if err := e.Disable(); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{n1.NS, p1.NS, p2.NS, p3.NS} {
		now := saveNS(t, ns)
		if now.ipt != before[ns].ipt {
			t.Errorf("%s after disable: iptables-save differs:\n--- before\n%s--- after\n%s", ns, before[ns].ipt, now.ipt)
		}
		if now.sets != before[ns].sets {
			t.Errorf("%s after disable: ipset list differs:\n--- before\n%s--- after\n%s", ns, before[ns].sets, now.sets)
		}
	}
	expect("disabled", [3]string{p1.NS, p2.IP + ":9090", "ok"}, [3]string{p3.NS, p1.IP + ":8080", "ok"})
	if _, err := os.Stat(agenttest.Path(p4.NS)); err != nil {
		t.Fatal(err)
	}
	if s, _ := SaveFilter(agenttest.Path(p4.NS)); strings.Contains(s, "PALISADE") {
		t.Errorf("p4 keeps Palisade rules after disable:\n%s", s)
	}
}
