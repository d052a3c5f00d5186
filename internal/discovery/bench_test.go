package discovery

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/flow/flowgen"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
)

// BenchmarkDiscover is discovery over the flow store's benchmark data
// (internal/flow/flowgen: 5,000 pods in 50 namespaces behind 500
// services, 2,000 external peers), streamed into Discoverers with every
// end resolved through a real inventory at the flow's time, for the
// cluster scope (every workload) of a cluster → namespace tree. It reports
// flows/s, the process's CPU time per flow (getrusage: the machine is
// shared), the rules found and the process's peak resident memory.
//
// shards=1 is one Discoverer fed by one generator; shards=N is one
// Discoverer and one generator (flowgen.Fork: the same cluster and
// conversations, another random stream) per core, merged at the end, as
// Parallel does. Both include generating the flows (BenchmarkFlowgen is
// the generator alone).
func BenchmarkDiscover(b *testing.B) {
	for _, n := range benchSizes() {
		for _, shards := range benchShards() {
			b.Run(fmt.Sprintf("flows=%d/shards=%d", n, shards), func(b *testing.B) {
				inv, set := benchWorld(b)
				t0 := time.Now().Add(-6 * time.Hour)
				var rules int
				b.ResetTimer()
				cpu0 := cpuTime()
				for range b.N {
					ds := make([]*Discoverer, shards)
					for s := range ds {
						d, err := New(Input{Resolver: inv, Set: set}, Options{Scope: "cluster"})
						if err != nil {
							b.Fatal(err)
						}
						ds[s] = d
					}
					base := flowgen.New(1)
					var wg sync.WaitGroup
					for s, d := range ds {
						g := base
						if shards > 1 {
							g = base.Fork(uint64(s + 1))
						}
						wg.Add(1)
						go func() {
							defer wg.Done()
							var f flow.Flow
							for i := s; i < n; i += shards {
								g.Flow(&f, t0.Add(time.Duration(i)*time.Millisecond))
								d.Add(&f)
							}
						}()
					}
					wg.Wait()
					for _, o := range ds[1:] {
						ds[0].Merge(o)
					}
					res := ds[0].Result(t0, t0.Add(time.Duration(n)*time.Millisecond))
					rules = len(res.Rules)
				}
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "flows/s")
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(n*b.N), "cpu-ns/flow")
				b.ReportMetric(float64(rules), "rules")
				b.ReportMetric(peakRSSMB(), "peakRSS-MB")
			})
		}
		// As the server's job runs: one reader (here the generator)
		// feeding Parallel, which partitions the flows by source address
		// over one Discoverer per core. The reader bounds the wall time.
		if workers := runtime.GOMAXPROCS(0); workers > 1 {
			b.Run(fmt.Sprintf("flows=%d/parallel=%d", n, workers), func(b *testing.B) {
				inv, set := benchWorld(b)
				t0 := time.Now().Add(-6 * time.Hour)
				var rules int
				b.ResetTimer()
				cpu0 := cpuTime()
				for range b.N {
					p, err := NewParallel(Input{Resolver: inv, Set: set}, Options{Scope: "cluster"}, workers)
					if err != nil {
						b.Fatal(err)
					}
					g := flowgen.New(1)
					var f flow.Flow
					for i := range n {
						g.Flow(&f, t0.Add(time.Duration(i)*time.Millisecond))
						p.Add(&f)
					}
					rules = len(p.Result(t0, t0.Add(time.Duration(n)*time.Millisecond)).Rules)
				}
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "flows/s")
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(n*b.N), "cpu-ns/flow")
				b.ReportMetric(float64(rules), "rules")
				b.ReportMetric(peakRSSMB(), "peakRSS-MB")
			})
		}
	}
}

// BenchmarkFlowgen is the generator alone, to subtract from the above.
func BenchmarkFlowgen(b *testing.B) {
	g := flowgen.New(1)
	var f flow.Flow
	t0 := time.Now()
	cpu0 := cpuTime()
	n := 0
	for ; b.Loop(); n++ {
		g.Flow(&f, t0.Add(time.Duration(n)*time.Millisecond))
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(n), "cpu-ns/flow")
}

func benchWorld(b *testing.B) (*inventory.Inventory, policy.Set) {
	return benchWorldAt(b, time.Now().Add(-7*time.Hour))
}

// benchWorldAt is the inventory flowgen's flows resolve in, as of t0, and a
// cluster → namespace scope tree.
func benchWorldAt(b testing.TB, t0 time.Time) (*inventory.Inventory, policy.Set) {
	inv, err := inventory.Open(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { inv.Close() })
	tiers := []string{"web", "api", "db"}
	for i := range 5000 { // as flowgen lays them out
		ns, app := fmt.Sprintf("ns-%d", i%50), fmt.Sprintf("app-%d", i%500)
		inv.Apply(inventory.Workload{ID: fmt.Sprintf("c/pod/%s/pod-%d", ns, i), Cluster: "c", Kind: inventory.KindPod, Namespace: ns,
			Name: fmt.Sprint("pod-", i), IPs: []string{fmt.Sprintf("10.244.%d.%d", i/250, i%250+1)}, Updated: t0,
			Labels: map[string]string{"app": app, "tier": tiers[i%3]}, Owner: &inventory.Owner{Kind: "Deployment", Name: app}})
	}
	for i := range 500 {
		ns := fmt.Sprintf("ns-%d", i%50)
		inv.Apply(inventory.Workload{ID: fmt.Sprintf("c/service/%s/svc-%d", ns, i), Cluster: "c", Kind: inventory.KindService, Namespace: ns,
			Name: fmt.Sprint("svc-", i), IPs: []string{fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)}, Updated: t0,
			Ports: []inventory.ServicePort{{Protocol: "TCP", Port: 80, TargetPort: "8080"}}})
	}
	set := policy.Set{Versions: map[string]*policy.Version{},
		Scopes: []policy.Scope{{Name: "cluster", Filter: `cluster = "c"`, CatchAll: policy.Deny}}}
	for n := range 50 {
		ns := fmt.Sprintf("ns-%d", n)
		set.Scopes = append(set.Scopes, policy.Scope{Name: ns, Parent: "cluster", Filter: fmt.Sprintf("namespace = %q", ns), CatchAll: policy.Deny})
	}
	return inv, set
}

// cpuTime is the process's CPU time (user + system): on a loaded machine
// it says more than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru) //nolint:errcheck // RUSAGE_SELF does not fail
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSSMB is the process's peak resident set (VmHWM), in MB.
func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:")), "%f", &kb)
			return kb / 1024
		}
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.Sys) / (1 << 20)
}

// benchShards are the Discoverers run in parallel: 1 and one per core
// (DISCOVERY_BENCH_SHARDS overrides the latter).
func benchShards() []int {
	n := runtime.GOMAXPROCS(0)
	if s := os.Getenv("DISCOVERY_BENCH_SHARDS"); s != "" {
		fmt.Sscan(s, &n)
	}
	if n <= 1 {
		return []int{1}
	}
	return []int{1, n}
}

// benchSizes are the flow counts; DISCOVERY_BENCH_FLOWS overrides them
// (e.g. 200000 for a profile).
func benchSizes() []int {
	if s := os.Getenv("DISCOVERY_BENCH_FLOWS"); s != "" {
		var n int
		fmt.Sscan(s, &n)
		return []int{n}
	}
	return []int{1_000_000, 10_000_000}
}

// BenchmarkOutput is writing a large result (the rules 200,000 flows of
// the benchmark data make) as policy-as-code YAML, as the server's job
// does, and as its version, per rule.
func BenchmarkOutput(b *testing.B) {
	inv, set := benchWorld(b)
	t0 := time.Now().Add(-6 * time.Hour)
	d, err := New(Input{Resolver: inv, Set: set}, Options{Scope: "cluster"})
	if err != nil {
		b.Fatal(err)
	}
	g := flowgen.New(1)
	var f flow.Flow
	for i := range 200_000 {
		g.Flow(&f, t0.Add(time.Duration(i)*time.Millisecond))
		d.Add(&f)
	}
	res := d.Result(t0, t0.Add(time.Hour))
	for _, c := range []struct {
		name string
		fn   func() error
	}{
		{"yaml", func() error { return res.WriteYAML(io.Discard) }},
		{"version", func() error { res.Version(); return nil }},
	} {
		b.Run(c.name, func(b *testing.B) {
			cpu0 := cpuTime()
			for b.Loop() {
				if err := c.fn(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N*len(res.Rules)), "cpu-ns/rule")
			b.ReportMetric(float64(len(res.Rules)), "rules")
		})
	}
}
