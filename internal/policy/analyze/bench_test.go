package analyze

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
)

// benchSetup is a real inventory of 2,000 pods in 20 namespaces, a 3-level
// scope tree (cluster → namespace → tier) with 2,000 intents, and stored-
// style flows between the pods (and external addresses), each end to be
// resolved through the inventory at the flow's time.
func benchSetup(b *testing.B, nFlows int) (*policy.Evaluator, *inventory.Inventory, []flow.Flow) {
	r := rand.New(rand.NewPCG(7, 1))
	inv, err := inventory.Open(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { inv.Close() })
	t0 := time.Now().Add(-time.Hour)
	set := policy.Set{Versions: map[string]*policy.Version{}}
	set.Scopes = append(set.Scopes, policy.Scope{Name: "cluster", Filter: `cluster = "c1"`, CatchAll: policy.Allow})
	for n := range 20 {
		ns := fmt.Sprintf("ns%02d", n)
		set.Scopes = append(set.Scopes, policy.Scope{Name: ns, Parent: "cluster", Filter: fmt.Sprintf("namespace = %q", ns), CatchAll: policy.Deny})
		for t := range 3 {
			set.Scopes = append(set.Scopes, policy.Scope{Name: fmt.Sprintf("%s-t%d", ns, t), Parent: ns, Filter: fmt.Sprintf(`label.tier = "t%d"`, t), CatchAll: policy.Deny})
		}
	}
	var ips []string
	for i := range 2000 {
		ip := fmt.Sprintf("10.244.%d.%d", i/250, i%250+2)
		ips = append(ips, ip)
		inv.Apply(inventory.Workload{ID: fmt.Sprintf("c1/pod/ns%02d/p%d", i%20, i), Cluster: "c1", Kind: inventory.KindPod,
			Namespace: fmt.Sprintf("ns%02d", i%20), Name: fmt.Sprintf("p%d", i), IPs: []string{ip}, Updated: t0,
			Labels: map[string]string{"app": fmt.Sprintf("a%d", r.IntN(10)), "tier": fmt.Sprintf("t%d", r.IntN(3))}})
	}
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
		v.Policies = append(v.Policies, policy.Policy{Name: fmt.Sprint("i", i), Scope: s, Action: a, Priority: 1 + r.IntN(200),
			Consumer: fmt.Sprintf(`label.app = "a%d" and label.tier = "t%d"`, r.IntN(10), r.IntN(3)),
			Provider: fmt.Sprintf(`namespace = "ns%02d" and label.app = "a%d"`, r.IntN(20), r.IntN(10)),
			Ports:    []string{fmt.Sprintf("tcp/%d", 1000+r.IntN(50))}})
	}
	ev, err := policy.Compile(set)
	if err != nil {
		b.Fatal(err)
	}
	flows := make([]flow.Flow, nFlows)
	for i := range flows {
		dst := ips[r.IntN(len(ips))]
		if r.IntN(10) == 0 {
			dst = fmt.Sprintf("203.0.113.%d", r.IntN(256))
		}
		flows[i] = flow.Flow{ID: fmt.Sprint(i), Proto: "tcp", Start: t0.Add(time.Duration(r.IntN(3600)) * time.Second),
			Src: flow.Endpoint{IP: ips[r.IntN(len(ips))]}, Dst: flow.Endpoint{IP: dst, Port: uint16(1000 + r.IntN(60))},
			Flags: []string{"SYN", "SYN-ACK"}, Replied: true}
	}
	return ev, inv, flows
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAnalyze is historical analysis per flow: both ends resolved
// through the inventory at the flow's time, decided, counted.
func BenchmarkAnalyze(b *testing.B) {
	ev, inv, flows := benchSetup(b, 1<<16)
	a := New(ev, inv, "")
	tl := NewTally("", nil, time.Time{}, time.Time{}, nil)
	for i := range flows {
		fv, _ := a.Analyze(&flows[i])
		tl.Add(&fv)
	}
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
