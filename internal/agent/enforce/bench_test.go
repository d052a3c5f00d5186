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
// (default 460, the most two /24 pod ranges hold; PALISADE_ENFORCE_BENCH_PODS)
// in real namespaces, one enforcer per node as one agent per node: the
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
	l := agenttest.New(b)
	c := l.TwoNodes("direct")
	perNode := [2][]string{}
	for i := 0; i < n; i++ {
		k := i % 2
		p := l.AddPod(c.Nodes[k], fmt.Sprintf("b%d", i), 20+i/2)
		perNode[k] = append(perNode[k], p.IP)
	}
	all := append(append([]string(nil), perNode[0]...), perNode[1]...)
	servers := ruleset.IPSet{Name: "PALISADE-servers", Type: ruleset.HashIP, Members: all[:n/2]}
	clients := ruleset.IPSet{Name: "PALISADE-clients", Type: ruleset.HashIP, Members: all[n/2:]}
	var es [2]*Enforcer
	var bundles [2]*ruleset.Bundle
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for k := range 2 {
		var pods []ruleset.Pod
		for _, ip := range perNode[k] {
			r := &ruleset.Rules{Scope: "bench", Version: "v1",
				Egress:  ruleset.Chain{Default: ruleset.Reject, Rules: []ruleset.Rule{{Verdict: ruleset.Allow, Proto: "tcp", Ports: "8080", Set: servers.Name}}},
				Ingress: ruleset.Chain{Default: ruleset.Reject, Rules: []ruleset.Rule{{Verdict: ruleset.Allow, Proto: "tcp", Ports: "8080", Set: clients.Name}}},
				Sets:    []ruleset.IPSet{servers, clients}}
			pods = append(pods, ruleset.Pod{ID: "bench/" + ip, IPs: []string{ip}, Rules: r})
		}
		bundles[k] = &ruleset.Bundle{Node: c.Nodes[k].Name, Versions: []string{"bench@v1"}, PodCIDRs: []string{fmt.Sprintf("10.244.%d.0/24", k+1)}, Pods: pods}
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
		errs := make(chan error, 2)
		for k := range 2 {
			go func() { errs <- f(k) }()
		}
		for range 2 {
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
		for k := range 2 {
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
	b.ReportMetric(enforce.Seconds()/float64(b.N), "enforce-s")
	b.ReportMetric(revoke.Seconds()/float64(b.N), "revoke-s")
	b.ReportMetric(enforceCPU.Seconds()/float64(b.N), "enforce-cpu-s")
	b.ReportMetric(float64(restores)/float64(b.N), "iptables-restores")
	b.ReportMetric(revokeCPU.Seconds()/float64(b.N), "revoke-cpu-s")
	b.ReportMetric(100*idle.Seconds()/(10*float64(b.N)), "idle-cpu-%")
	b.ReportMetric(full.Seconds()/float64(b.N), "full-check-cpu-s")
	b.ReportMetric(fullWall.Seconds()/float64(b.N), "full-check-s")
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
