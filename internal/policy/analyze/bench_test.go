package analyze

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/flow/flowgen"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
)

// benchSetup is the flow store's benchmark data (internal/flow/flowgen:
// 5,000 pods in 50 namespaces behind 500 services, external peers, skewed
// conversations), the same pods and services in a real inventory, and a
// 3-level scope tree (cluster → 50 namespaces → 3 tiers) with 2,000
// intents spread over every level.
func benchSetup(b testing.TB, nFlows int) (*policy.Evaluator, *inventory.Inventory, []flow.Flow) {
	r := rand.New(rand.NewPCG(7, 1))
	inv, err := inventory.Open(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { inv.Close() })
	t0 := time.Now().Add(-6 * time.Hour)
	tiers := []string{"web", "api", "db"}
	// flowgen's pods and services, as its New lays them out.
	for i := range 5000 {
		ns := fmt.Sprintf("ns-%d", i%50)
		app := fmt.Sprintf("app-%d", i%500)
		inv.Apply(inventory.Workload{ID: "c/pod/" + ns + "/pod-" + fmt.Sprint(i), Cluster: "c", Kind: inventory.KindPod, Namespace: ns,
			Name: "pod-" + fmt.Sprint(i), IPs: []string{fmt.Sprintf("10.244.%d.%d", i/250, i%250+1)}, Updated: t0,
			Labels: map[string]string{"app": app, "tier": tiers[i%3]}, Owner: &inventory.Owner{Kind: "Deployment", Name: app}})
	}
	for i := range 500 {
		ns := fmt.Sprintf("ns-%d", i%50)
		inv.Apply(inventory.Workload{ID: "c/service/" + ns + "/svc-" + fmt.Sprint(i), Cluster: "c", Kind: inventory.KindService, Namespace: ns,
			Name: "svc-" + fmt.Sprint(i), IPs: []string{fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)}, Updated: t0,
			Ports: []inventory.ServicePort{{Protocol: "TCP", Port: 80, TargetPort: "8080"}}})
	}
	set := policy.Set{Versions: map[string]*policy.Version{}}
	set.Scopes = append(set.Scopes, policy.Scope{Name: "cluster", Filter: `cluster = "c"`, CatchAll: policy.Allow})
	for n := range 50 {
		ns := fmt.Sprintf("ns-%d", n)
		set.Scopes = append(set.Scopes, policy.Scope{Name: ns, Parent: "cluster", Filter: fmt.Sprintf("namespace = %q", ns), CatchAll: policy.Deny})
		for _, t := range tiers {
			set.Scopes = append(set.Scopes, policy.Scope{Name: ns + "-" + t, Parent: ns, Filter: fmt.Sprintf("label.tier = %q", t), CatchAll: policy.Deny})
		}
	}
	ports := []string{"tcp/80", "tcp/443", "tcp/8080", "tcp/5432", "tcp/6379", "tcp/53", "tcp/9090", "tcp/3306", "tcp/8000-8100"}
	for i := range 2000 {
		s := set.Scopes[r.IntN(len(set.Scopes))].Name
		v := set.Versions[s]
		if v == nil {
			v = &policy.Version{Scope: s, Name: "v1"}
			set.Versions[s] = v
		}
		a := policy.Allow
		if r.IntN(4) == 0 {
			a = policy.Deny
		}
		cons := fmt.Sprintf(`label.app = "app-%d"`, r.IntN(500))
		if r.IntN(3) == 0 {
			cons = fmt.Sprintf(`namespace = "ns-%d" and label.tier = %q`, r.IntN(50), tiers[r.IntN(3)])
		}
		prov := fmt.Sprintf(`namespace = "ns-%d" and label.app = "app-%d"`, r.IntN(50), r.IntN(500))
		switch r.IntN(10) {
		case 0:
			prov = fmt.Sprintf("service:ns-%d/svc-%d", r.IntN(50), r.IntN(500))
		case 1:
			prov = "cidr:203.0.0.0/16"
		}
		v.Policies = append(v.Policies, policy.Policy{Name: fmt.Sprint("i", i), Scope: s, Action: a, Priority: 1 + r.IntN(200),
			Consumer: cons, Provider: prov, Ports: []string{ports[r.IntN(len(ports))]}})
	}
	ev, err := policy.Compile(set)
	if err != nil {
		b.Fatal(err)
	}
	g := flowgen.New(1)
	flows := make([]flow.Flow, nFlows)
	for i := range flows {
		g.Flow(&flows[i], t0.Add(time.Duration(i)*5*time.Millisecond))
	}
	return ev, inv, flows
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAnalyze is historical analysis per flow of the flow store's
// benchmark data: both ends resolved through the inventory at the flow's
// time, decided with 2,000 intents, counted per verdict, rule, scope and
// minute. The same per-flow work is what live analysis (compliance) adds
// to ingest.
func BenchmarkAnalyze(b *testing.B) {
	ev, inv, flows := benchSetup(b, 1<<16)
	a := New(ev, inv, "")
	tl := NewTally("", nil, time.Time{}, time.Time{}, nil)
	for i := range flows {
		fv, _ := a.Analyze(&flows[i])
		tl.Add(&fv)
	}
	runtime.GC() // the setup's garbage is not the benchmark's
	b.ResetTimer()
	cpu := cpuTime()
	for i := 0; i < b.N; i++ {
		fv, _ := a.Analyze(&flows[i&(1<<16-1)])
		tl.Add(&fv)
	}
	c := cpuTime() - cpu
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
	b.ReportMetric(float64(c.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkEvaluateFlowgen is the evaluator alone on the same data: flows
// resolved through the inventory beforehand, timed per verdict.
func BenchmarkEvaluateFlowgen(b *testing.B) {
	ev, inv, flows := benchSetup(b, 1<<16)
	ins := make([]policy.Flow, len(flows))
	for i := range flows {
		ins[i], _ = Input(&flows[i], inv)
	}
	s := ev.NewSession()
	for i := range ins {
		s.Evaluate(&ins[i])
	}
	runtime.GC() // the setup's garbage is not the benchmark's
	b.ResetTimer()
	cpu := cpuTime()
	for i := 0; i < b.N; i++ {
		s.Evaluate(&ins[i&(1<<16-1)])
	}
	c := cpuTime() - cpu
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verdicts/s")
	b.ReportMetric(float64(b.N)/c.Seconds(), "verdicts/cpu-s")
	b.ReportMetric(float64(c.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkAnalyzeLive is live analysis (compliance) per flow: the flow
// service's OnFlows hook gets each flow with the workload versions the
// pipeline resolved its ends to (flow.Ends, made here beforehand as the
// pipeline makes them), decides it with 2,000 intents and counts it per
// verdict, rule, scope and minute.
func BenchmarkAnalyzeLive(b *testing.B) {
	ev, inv, flows := benchSetup(b, 1<<16)
	ends := make([]flow.Ends, len(flows))
	for i := range flows {
		ends[i] = pipelineEnds(&flows[i], inv)
	}
	a := New(ev, nil, "")
	tl := NewTally("", nil, time.Time{}, time.Time{}, nil)
	for i := range flows {
		fv, _ := a.AnalyzeResolved(&flows[i], ends[i])
		tl.Add(&fv)
	}
	runtime.GC() // the setup's garbage is not the benchmark's
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for i := 0; i < b.N; i++ {
		j := i & (1<<16 - 1)
		fv, _ := a.AnalyzeResolved(&flows[j], ends[j])
		tl.Add(&fv)
	}
	c := cpuTime() - cpu
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
	b.ReportMetric(float64(c.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkAnalyzeLiveResolver is live analysis as it ran before the hook
// had the pipeline's ends: both ends resolved again through the
// LiveResolver (a cache of current holders over the inventory).
func BenchmarkAnalyzeLiveResolver(b *testing.B) {
	ev, inv, flows := benchSetup(b, 1<<16)
	a := New(ev, &LiveResolver{R: inv}, "")
	tl := NewTally("", nil, time.Time{}, time.Time{}, nil)
	for i := range flows {
		fv, _ := a.Analyze(&flows[i])
		tl.Add(&fv)
	}
	runtime.GC() // the setup's garbage is not the benchmark's
	b.ResetTimer()
	cpu := cpuTime()
	for i := 0; i < b.N; i++ {
		fv, _ := a.Analyze(&flows[i&(1<<16-1)])
		tl.Add(&fv)
	}
	c := cpuTime() - cpu
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
	b.ReportMetric(float64(c.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// pipelineEnds resolves f's ends as the flow pipeline's enrichment does.
func pipelineEnds(f *flow.Flow, r Resolver) flow.Ends {
	var e flow.Ends
	e.Src, _ = r.WorkloadAt(f.Src.IP, f.Start)
	e.Dst, _ = r.WorkloadAt(f.Dst.IP, f.Start)
	if f.Dst.Port != 0 {
		e.DstService, _ = r.ServiceFor(f.Dst.IP, f.Dst.Port, f.Proto, f.Start)
	}
	return e
}
