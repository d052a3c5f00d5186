package enforce

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/agent/agenttest"
	"github.com/palisade-dev/palisade/internal/ruleset"
)

// BenchmarkEnforcePods programs two nodes with N pods between them
// (default 460; PALISADE_ENFORCE_BENCH_PODS) in real namespaces, one
// enforcer per node as one agent per node, or all N pods on one node with
// its one enforcer (PALISADE_ENFORCE_BENCH_NODES=1, so that the idle CPU
// is one agent's). A node's first 230 pods are on its /24 range
// 10.244.k.0/24 (.20 to .249), each further 230 on one more /24 range
// 10.244.(k+10r).0/24 in the node's PodCIDRs: the benchmark reports the
// time from Apply of the bundles to every pod's rules in place
// ("enforce"), from Apply of empty bundles to every rule gone ("revoke"),
// with the CPU (the process's and its children's) of each, and the
// process's CPU while the nodes stay programmed and idle for 10 s
// (PALISADE_ENFORCE_BENCH_SETCHECK sets Config.SetCheckInterval).
func BenchmarkEnforcePods(b *testing.B) {
	n := 460
	if s := os.Getenv("PALISADE_ENFORCE_BENCH_PODS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	var setCheck time.Duration // default
	if s := os.Getenv("PALISADE_ENFORCE_BENCH_SETCHECK"); s != "" {
		setCheck, _ = time.ParseDuration(s)
	}
	nodes := 2
	if s := os.Getenv("PALISADE_ENFORCE_BENCH_NODES"); s != "" {
		nodes, _ = strconv.Atoi(s)
	}
	if n < 1 || nodes < 1 || nodes > 2 || n > nodes*podsPerRange*9 {
		b.Fatalf("PALISADE_ENFORCE_BENCH_PODS=%d, PALISADE_ENFORCE_BENCH_NODES=%d: want 1 or 2 nodes and 1 to %d pods per node", n, nodes, podsPerRange*9)
	}
	l := agenttest.New(b)
	c := l.TwoNodes("direct")
	perNode := [2][]string{}
	podCIDRs := [2][]string{{"10.244.1.0/24"}, {"10.244.2.0/24"}}
	for i := 0; i < n; i++ {
		k, j := i%nodes, i/nodes
		if r := j / podsPerRange; r > 0 && j%podsPerRange == 0 {
			podCIDRs[k] = append(podCIDRs[k], addPodRange(l, c, k, r))
		}
		name := fmt.Sprintf("b%d", i)
		var ip string
		if r := j / podsPerRange; r == 0 {
			ip = l.AddPod(c.Nodes[k], name, 20+j).IP
		} else {
			ip = addRangePod(l, c.Nodes[k], name, fmt.Sprintf("10.244.%d", k+1+10*r), 20+j%podsPerRange)
		}
		perNode[k] = append(perNode[k], ip)
	}
	all := append(append([]string(nil), perNode[0]...), perNode[1]...)
	servers := ruleset.IPSet{Name: "PALISADE-servers", Type: ruleset.HashIP, Members: all[:n/2]}
	clients := ruleset.IPSet{Name: "PALISADE-clients", Type: ruleset.HashIP, Members: all[n/2:]}
	es := make([]*Enforcer, nodes)
	bundles := make([]*ruleset.Bundle, nodes)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for k := range nodes {
		var pods []ruleset.Pod
		for _, ip := range perNode[k] {
			r := &ruleset.Rules{Scope: "bench", Version: "v1",
				Egress:  ruleset.Chain{Default: ruleset.Reject, Rules: []ruleset.Rule{{Verdict: ruleset.Allow, Proto: "tcp", Ports: "8080", Set: servers.Name}}},
				Ingress: ruleset.Chain{Default: ruleset.Reject, Rules: []ruleset.Rule{{Verdict: ruleset.Allow, Proto: "tcp", Ports: "8080", Set: clients.Name}}},
				Sets:    []ruleset.IPSet{servers, clients}}
			pods = append(pods, ruleset.Pod{ID: "bench/" + ip, IPs: []string{ip}, Rules: r})
		}
		bundles[k] = &ruleset.Bundle{Node: c.Nodes[k].Name, Versions: []string{"bench@v1"}, PodCIDRs: podCIDRs[k], Pods: pods}
		bundles[k].Seal()
		e, err := New(Config{Node: c.Nodes[k].Name, NetNS: agenttest.Path(c.Nodes[k].NS), Pods: &NetNSDir{Prefix: l.Prefix + "-b"}, SetCheckInterval: setCheck})
		if err != nil {
			b.Fatal(err)
		}
		es[k] = e
		go func() { _ = e.Run(ctx) }()
	}
	both := func(f func(k int) error) time.Duration {
		t0 := time.Now()
		errs := make(chan error, nodes)
		for k := range nodes {
			go func() { errs <- f(k) }()
		}
		for range nodes {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(t0)
	}
	b.ResetTimer()
	var enforce, revoke, idle, full, fullWall, enforceCPU, revokeCPU time.Duration
	var restores int64
	for i := 0; i < b.N; i++ {
		c0, r0 := cpuTimeAll(), restored.Load()
		enforce += both(func(k int) error { return es[k].Apply(bundles[k]) })
		restores += restored.Load() - r0
		enforceCPU += cpuTimeAll() - c0
		for k := range nodes {
			if st := es[k].Status(); st.Hash != bundles[k].Hash {
				b.Fatalf("node %d not programmed: %+v", k, st.Errors)
			}
		}
		// Idle: after the checks the programming's own notifications cause.
		time.Sleep(2 * time.Second)
		cpu0 := cpuTime()
		time.Sleep(10 * time.Second)
		idle += cpuTime() - cpu0
		cpu0 = cpuTime()
		t0 := time.Now()
		both(func(k int) error { es[k].markAll(); es[k].check(); return nil })
		fullWall += time.Since(t0)
		full += cpuTime() - cpu0
		c0 = cpuTimeAll()
		revoke += both(func(k int) error { return es[k].Disable() })
		revokeCPU += cpuTimeAll() - c0
	}
	b.StopTimer()
	b.ReportMetric(float64(n), "pods")
	b.ReportMetric(float64(nodes), "nodes")
	b.ReportMetric(enforce.Seconds()/float64(b.N), "enforce-s")
	b.ReportMetric(revoke.Seconds()/float64(b.N), "revoke-s")
	b.ReportMetric(enforceCPU.Seconds()/float64(b.N), "enforce-cpu-s")
	b.ReportMetric(float64(restores)/float64(b.N), "iptables-restores")
	b.ReportMetric(revokeCPU.Seconds()/float64(b.N), "revoke-cpu-s")
	b.ReportMetric(100*idle.Seconds()/(10*float64(b.N)), "idle-cpu-%")
	b.ReportMetric(full.Seconds()/float64(b.N), "full-check-cpu-s")
	b.ReportMetric(fullWall.Seconds()/float64(b.N), "full-check-s")
}

// podsPerRange is how many pods the benchmark puts on one /24 pod range
// (.20 to .249).
const podsPerRange = 230

// addPodRange gives node k (0 or 1) of c its pod range 10.244.(k+1+10r).0/24
// for r > 0: the gateway address on its bridge and, on the other node, the
// route to it over the uplink. It returns the range.
func addPodRange(l *agenttest.Lab, c *agenttest.Cluster, k, r int) string {
	prefix := fmt.Sprintf("10.244.%d", k+1+10*r)
	l.Exec(c.Nodes[k].NS, "ip", "addr", "add", prefix+".1/24", "dev", c.Nodes[k].Bridge)
	l.Exec(c.Nodes[1-k].NS, "ip", "route", "add", prefix+".0/24", "via", c.Nodes[k].IP, "dev", "eth0")
	return prefix + ".0/24"
}

// addRangePod plugs pod name into n's bridge with address prefix.host on a
// range added by addPodRange, as agenttest.Lab.AddPod does on the node's
// first range.
func addRangePod(l *agenttest.Lab, n *agenttest.Node, name, prefix string, host int) string {
	p := &agenttest.Pod{Name: name, NS: l.NS(name), HostVeth: "veth" + name, IP: fmt.Sprintf("%s.%d", prefix, host)}
	l.Run("ip", "link", "add", p.HostVeth, "netns", n.NS, "type", "veth", "peer", "name", "eth0", "netns", p.NS)
	l.Exec(n.NS, "ip", "link", "set", p.HostVeth, "master", n.Bridge, "up")
	l.Exec(p.NS, "ip", "addr", "add", p.IP+"/24", "dev", "eth0")
	l.Exec(p.NS, "ip", "link", "set", "eth0", "up")
	l.Exec(p.NS, "ip", "route", "add", "default", "via", prefix+".1")
	n.Pods = append(n.Pods, p)
	return p.IP
}

// cpuTimeAll is cpuTime plus the CPU of the child processes waited for
// (iptables-restore, ipset).
func cpuTimeAll() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return cpuTime() + time.Duration(ru.Utime.Nano()+ru.Stime.Nano())
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
