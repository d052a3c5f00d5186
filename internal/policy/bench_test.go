package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/inventory"
)

// benchWorld is a 3-level scope tree (cluster → 20 namespaces → 3 tiers
// each), 2,000 pods and 2,000 intents spread over every level, and a
// reference evaluator that walks every rule with filter.Match.
type benchWorld struct {
	set   Set
	pods  []Peer
	flows []Flow
}

func newBenchWorld(nIntents, nFlows int, seed uint64) *benchWorld {
	r := rand.New(rand.NewPCG(seed, 1))
	w := &benchWorld{set: Set{Versions: map[string]*Version{}}}
	const namespaces, tiers, apps = 20, 3, 10
	w.set.Scopes = append(w.set.Scopes, Scope{Name: "cluster", Filter: `cluster = "c1"`, CatchAll: Allow})
	for n := range namespaces {
		ns := fmt.Sprintf("ns%02d", n)
		ca := Deny
		if n%4 == 0 {
			ca = Allow
		}
		w.set.Scopes = append(w.set.Scopes, Scope{Name: ns, Parent: "cluster", Filter: fmt.Sprintf(`namespace = %q`, ns), CatchAll: ca})
		for t := range tiers {
			w.set.Scopes = append(w.set.Scopes, Scope{Name: fmt.Sprintf("%s-t%d", ns, t), Parent: ns, Filter: fmt.Sprintf(`label.tier = "t%d"`, t), CatchAll: Deny})
		}
	}
	for i := range 2000 {
		ns := fmt.Sprintf("ns%02d", i%namespaces)
		ip := netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(i%250 + 2)})
		cluster := "c1"
		if i%50 == 49 {
			cluster = "c2" // unscoped
		}
		w.pods = append(w.pods, Peer{IP: ip, Workload: &inventory.Workload{
			ID: cluster + "/pod/" + ns + "/p" + fmt.Sprint(i), Cluster: cluster, Kind: inventory.KindPod, Namespace: ns, Name: fmt.Sprintf("p%d", i),
			IPs: []string{ip.String()}, Labels: map[string]string{"app": fmt.Sprintf("a%d", r.IntN(apps)), "tier": fmt.Sprintf("t%d", r.IntN(tiers))}}})
	}
	endpoint := func() string {
		switch k := r.IntN(20); {
		case k == 0:
			return "any"
		case k == 1:
			return fmt.Sprintf("cidr:10.244.%d.0/24", r.IntN(8))
		case k == 2:
			return fmt.Sprintf("scope:ns%02d", r.IntN(namespaces))
		case k < 8:
			return fmt.Sprintf(`namespace = "ns%02d" and label.app = "a%d"`, r.IntN(namespaces), r.IntN(apps))
		default:
			return fmt.Sprintf(`label.app = "a%d" and label.tier = "t%d"`, r.IntN(apps), r.IntN(tiers))
		}
	}
	for i := range nIntents {
		s := w.set.Scopes[r.IntN(len(w.set.Scopes))].Name
		v := w.set.Versions[s]
		if v == nil {
			v = &Version{Scope: s, Name: "v1"}
			w.set.Versions[s] = v
		}
		a := Allow
		if r.IntN(4) == 0 {
			a = Deny
		}
		c := Default
		if r.IntN(5) == 0 {
			c = Absolute
		}
		lo := 1000 + r.IntN(50)
		ports := []string{fmt.Sprintf("tcp/%d", lo)}
		if r.IntN(4) == 0 {
			ports = []string{fmt.Sprintf("tcp/%d-%d", lo, lo+10)}
		}
		v.Policies = append(v.Policies, Policy{Name: fmt.Sprint("i", i), Scope: s, Consumer: endpoint(), Provider: endpoint(), Action: a, Class: c,
			Priority: 1 + r.IntN(200), Ports: ports, Direction: Direction(r.IntN(3))})
	}
	for range nFlows {
		src, dst := w.pods[r.IntN(len(w.pods))], w.pods[r.IntN(len(w.pods))]
		if r.IntN(10) == 0 {
			dst = Peer{IP: netip.AddrFrom4([4]byte{203, 0, 113, byte(r.IntN(256))})}
		}
		w.flows = append(w.flows, Flow{Src: src, Dst: dst, Proto: ProtoTCP, Port: uint16(1000 + r.IntN(60))})
	}
	return w
}

// naive decides like the package documents, with no precompilation: every
// rule of the chain, filter.Match for every endpoint, every flow.
type naive struct {
	set     Set
	filters map[string]*filter.Filter
	parent  map[string]string
}

func newNaive(set Set) *naive {
	n := &naive{set: set, filters: map[string]*filter.Filter{}, parent: map[string]string{}}
	for _, s := range set.Scopes {
		n.filters["scope "+s.Name], _ = filter.Parse(s.Filter, inventory.Schema)
		n.parent[s.Name] = s.Parent
	}
	for _, v := range set.Versions {
		for _, p := range v.Policies {
			for _, e := range []string{p.Consumer, p.Provider} {
				if ep, err := ParseEndpoint(e); err == nil && ep.Kind == EndpointFilter {
					n.filters[e] = ep.Filter
				}
			}
		}
	}
	return n
}

func (n *naive) record(p Peer) filter.Record {
	if p.Workload != nil {
		return inventory.Record{W: p.Workload}
	}
	return ipRecord{p.IP.String()}
}

func (n *naive) member(scope string, p Peer) bool {
	for s := scope; s != ""; s = n.parent[s] {
		if !n.filters["scope "+s].Match(n.record(p)) {
			return false
		}
	}
	return true
}

// deciding: descend from the top through the first member child by name.
func (n *naive) deciding(p Peer) string {
	cur := ""
	for {
		var kids []string
		for _, s := range n.set.Scopes {
			if s.Parent == cur {
				kids = append(kids, s.Name)
			}
		}
		sort.Strings(kids)
		next := ""
		for _, k := range kids {
			if n.member(k, p) {
				next = k
				break
			}
		}
		if next == "" {
			return cur
		}
		cur = next
	}
}

func (n *naive) matches(e string, p Peer) bool {
	ep, _ := ParseEndpoint(e)
	switch ep.Kind {
	case EndpointAny:
		return true
	case EndpointCIDR:
		return ep.Prefix.Contains(p.IP)
	case EndpointScope:
		return n.member(ep.Scope, p)
	}
	return n.filters[e].Match(n.record(p))
}

func (n *naive) side(d string, side Direction, f *Flow) Action {
	var path []string
	for s := d; s != ""; s = n.parent[s] {
		path = append([]string{s}, path...)
	}
	pick := func(class Class, scopes []string) (Action, bool) {
		for _, s := range scopes {
			v := n.set.Versions[s]
			if v == nil {
				continue
			}
			ps := append([]Policy(nil), v.Policies...)
			sort.SliceStable(ps, func(i, j int) bool { return ps[i].EffectivePriority() < ps[j].EffectivePriority() })
			for _, p := range ps {
				if p.Class != class || !p.Direction.has(side) || !n.matches(p.Consumer, f.Src) || !n.matches(p.Provider, f.Dst) {
					continue
				}
				for _, ps := range p.Ports {
					r, _ := ParsePort(ps)
					if r.Matches(f.Proto, f.Port) {
						return p.Action, true
					}
				}
			}
		}
		return NoAction, false
	}
	if a, ok := pick(Absolute, path); ok {
		return a
	}
	rev := append([]string(nil), path...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	if a, ok := pick(Default, rev); ok {
		return a
	}
	for _, s := range n.set.Scopes {
		if s.Name == d {
			return s.CatchAll
		}
	}
	return NoAction
}

func (n *naive) decide(f *Flow) (eg, in Action) {
	if d := n.deciding(f.Src); d != "" {
		eg = n.side(d, Egress, f)
	}
	if d := n.deciding(f.Dst); d != "" {
		in = n.side(d, Ingress, f)
	}
	return eg, in
}

// TestEvaluatorAgreesWithNaive checks the precompiled evaluator against the
// reference evaluator on random worlds.
func TestEvaluatorAgreesWithNaive(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		w := newBenchWorld(300, 3000, seed)
		ev, err := Compile(w.set)
		if err != nil {
			t.Fatal(err)
		}
		nv := newNaive(w.set)
		s := ev.NewSession()
		for i := range w.flows {
			f := &w.flows[i]
			d := s.Evaluate(f)
			eg, in := nv.decide(f)
			if d.Egress.Action != eg || d.Ingress.Action != in {
				t.Fatalf("seed %d flow %d %v→%v:%d: evaluator %v/%v (%s / %s), naive %v/%v", seed, i, f.Src.IP, f.Dst.IP, f.Port,
					d.Egress.Action, d.Ingress.Action, d.Egress.Rule, d.Ingress.Rule, eg, in)
			}
		}
	}
}

// BenchmarkEvaluate is the evaluator's throughput: 2,000 intents over a
// 3-level tree, flows between 2,000 pods (and external addresses).
func BenchmarkEvaluate(b *testing.B) {
	w := newBenchWorld(2000, 1<<16, 7)
	ev, err := Compile(w.set)
	if err != nil {
		b.Fatal(err)
	}
	s := ev.NewSession()
	for i := range w.flows { // warm the caches as a long analysis would
		s.Evaluate(&w.flows[i])
	}
	b.ReportAllocs()
	runtime.GC() // the setup's garbage is not the benchmark's
	b.ResetTimer()
	cpu := cpuTime()
	for i := 0; i < b.N; i++ {
		s.Evaluate(&w.flows[i&(1<<16-1)])
	}
	reportCPU(b, cpu)
}

// cpuTime is the process's CPU time (user + system): on a shared machine
// it measures the work, where wall time measures the neighbours too.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports verdicts per second of wall time and per CPU-second
// (one core fully busy), and CPU ns per verdict.
func reportCPU(b *testing.B, since time.Duration) {
	cpu := cpuTime() - since
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verdicts/s")
	b.ReportMetric(float64(b.N)/cpu.Seconds(), "verdicts/cpu-s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkEvaluateNaive is the floor: every flow × every rule with
// filter.Match, on the same world.
func BenchmarkEvaluateNaive(b *testing.B) {
	w := newBenchWorld(2000, 1<<12, 7)
	nv := newNaive(w.set)
	runtime.GC() // the setup's garbage is not the benchmark's
	b.ResetTimer()
	cpu := cpuTime()
	for i := 0; i < b.N; i++ {
		nv.decide(&w.flows[i&(1<<12-1)])
	}
	reportCPU(b, cpu)
}
