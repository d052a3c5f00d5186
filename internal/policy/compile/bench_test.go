package compile

import (
	"fmt"
	"math/rand"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
)

// benchInput is pods pods over pods/200 nodes, in 200 applications with a
// ClusterIP service each, and intents intents between applications: a
// third to a service, the rest to the application's pods, a tenth DENY.
func benchInput(pods, intents int) Input {
	r := rand.New(rand.NewSource(1))
	const apps = 200
	nodes := pods / 200
	var ws []*inventory.Workload
	for i := 0; i < nodes; i++ {
		ws = append(ws, &inventory.Workload{Cluster: "c", Kind: inventory.KindNode, Name: fmt.Sprintf("node%d", i),
			IPs: []string{fmt.Sprintf("10.10.%d.%d", i/250, i%250+1)}, CIDRs: []string{fmt.Sprintf("10.%d.%d.0/24", 100+i/250, i%250)}})
	}
	for i := 0; i < pods; i++ {
		n := i % nodes
		app := fmt.Sprintf("a%d", i%apps)
		ws = append(ws, &inventory.Workload{Cluster: "c", Kind: inventory.KindPod, Namespace: "bench", Name: fmt.Sprintf("p%d", i),
			Node: fmt.Sprintf("node%d", n), IPs: []string{fmt.Sprintf("10.%d.%d.%d", 100+n/250, n%250, i/nodes+2)},
			Labels: map[string]string{"app": app}})
	}
	for a := 0; a < apps; a++ {
		ws = append(ws, &inventory.Workload{Cluster: "c", Kind: inventory.KindService, Namespace: "bench", Name: fmt.Sprintf("a%d", a),
			ClusterIP: fmt.Sprintf("10.96.%d.%d", a/250, a%250+1), Selector: map[string]string{"app": fmt.Sprintf("a%d", a)},
			Ports: []inventory.ServicePort{{Protocol: "TCP", Port: 80, TargetPort: "8080"}}})
	}
	var ps []policy.Policy
	for i := 0; i < intents; i++ {
		p := policy.Policy{Scope: "bench", Consumer: fmt.Sprintf(`label.app = "a%d"`, r.Intn(apps)), Action: policy.Allow,
			Ports: []string{fmt.Sprintf("tcp/%d", 1000+r.Intn(2000))}}
		if i%3 == 0 {
			p.Provider, p.Ports = fmt.Sprintf("service:bench/a%d", r.Intn(apps)), []string{"tcp/80"}
		} else {
			p.Provider = fmt.Sprintf(`label.app = "a%d"`, r.Intn(apps))
		}
		if i%10 == 0 {
			p.Action = policy.Deny
		}
		ps = append(ps, p)
	}
	return Input{
		Set: policy.Set{Scopes: []policy.Scope{{Name: "bench", Filter: `namespace = "bench"`}},
			Versions: map[string]*policy.Version{"bench": {Scope: "bench", Name: "v1", Number: 1, Policies: ps}}},
		Enforced: map[string]bool{"bench": true}, Workloads: ws,
	}
}

// BenchmarkCompile10kPods2kIntents is the target: 10,000 pods ×
// 2,000 intents (goal < 1 s per compilation).
func BenchmarkCompile10kPods2kIntents(b *testing.B) {
	in := benchInput(benchPods, benchIntents)
	b.ResetTimer()
	cpu0 := cpuTime()
	var out *Output
	for i := 0; i < b.N; i++ {
		var err error
		if out, err = Compile(in); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// The machine is shared: CPU time says what the compiler costs when
	// wall time is inflated by other processes.
	b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
	s := out.Stats
	b.ReportMetric(float64(s.PodRules)/float64(s.EnforcedPods), "rules/pod")
	b.ReportMetric(float64(s.MaxPodRules), "max-rules/pod")
	b.ReportMetric(float64(s.PodMembers)/float64(s.EnforcedPods), "members/pod")
	b.ReportMetric(float64(s.NodeRules)/float64(max(s.Nodes, 1)), "rules/node")
	b.ReportMetric(float64(s.DistinctSets), "sets")
}

var benchPods, benchIntents = 10000, 2000

// cpuTime is the process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
