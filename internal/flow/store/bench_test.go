package store

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
)

// gen makes a cluster-like stream of flows: 5,000 pods in 50 namespaces
// behind 500 services, plus external peers, one flow per conversation (or
// per second) with 2 observation points, some related.
type gen struct {
	rnd    *rand.Rand
	pods   []flow.Endpoint
	svcs   []flow.Endpoint
	exts   []flow.Endpoint
	points [][]flow.ObservationPoint
	convs  []conv
	n      uint64
}

// conv is a conversation: flows repeat them (every 15 s in conversation
// mode, every second in detailed mode).
type conv struct {
	src, dst *flow.Endpoint
	dport    uint16
	points   []flow.ObservationPoint
	related  bool
}

func newGen(seed uint64) *gen {
	g := &gen{rnd: rand.New(rand.NewPCG(seed, 1))}
	for i := range 5000 {
		ns := fmt.Sprintf("ns-%d", i%50)
		app := fmt.Sprintf("app-%d", i%500)
		g.pods = append(g.pods, flow.Endpoint{
			IP: fmt.Sprintf("10.244.%d.%d", i/250, i%250+1), Workload: "c/pod/" + ns + "/pod-" + strconv.Itoa(i),
			Kind: "pod", Name: "pod-" + strconv.Itoa(i), Namespace: ns, Node: fmt.Sprintf("node-%d", i%20),
			Labels: map[string]string{"app": app, "tier": []string{"web", "api", "db"}[i%3], "pod-template-hash": strconv.Itoa(i % 997)},
			Owner:  &inventory.Owner{Kind: "Deployment", Name: app},
		})
	}
	for i := range 500 {
		g.svcs = append(g.svcs, flow.Endpoint{IP: fmt.Sprintf("10.96.%d.%d", i/250, i%250+1), Workload: "c/service/x/svc-" + strconv.Itoa(i),
			Kind: "service", Name: "svc-" + strconv.Itoa(i), Namespace: fmt.Sprintf("ns-%d", i%50), Service: fmt.Sprintf("ns-%d/svc-%d", i%50, i)})
	}
	for n := range 20 {
		for v := range 10 {
			g.points = append(g.points, []flow.ObservationPoint{
				{Node: fmt.Sprintf("node-%d", n), Interface: fmt.Sprintf("veth%d", v), Kind: "pod"},
				{Node: fmt.Sprintf("node-%d", (n+1)%20), Interface: "eth0", Kind: "node"},
			})
		}
	}
	for i := range 2000 {
		g.exts = append(g.exts, flow.Endpoint{IP: fmt.Sprintf("203.0.%d.%d", i/250, i%250+1)})
	}
	r := g.rnd
	for range 100_000 {
		c := conv{src: &g.pods[r.IntN(len(g.pods))], dport: ports[r.IntN(len(ports))], points: g.points[r.IntN(len(g.points))]}
		switch x := r.IntN(10); {
		case x < 6:
			c.dst = &g.pods[r.IntN(len(g.pods))]
		case x < 9:
			c.dst, c.related = &g.svcs[r.IntN(len(g.svcs))], true
		default:
			c.dst = &g.exts[r.IntN(len(g.exts))]
		}
		g.convs = append(g.convs, c)
	}
	return g
}

var ports = []uint16{80, 443, 8080, 5432, 6379, 53, 9090, 3306}

func (g *gen) flow(f *flow.Flow, at time.Time) {
	r := g.rnd
	g.n++
	// Skewed: a tenth of the conversations make most flows.
	c := &g.convs[r.IntN(len(g.convs))]
	if r.IntN(2) == 0 {
		c = &g.convs[r.IntN(len(g.convs)/10)]
	}
	*f = flow.Flow{
		ID: flow.MakeID(at, g.n), Mode: flow.ConversationMode, Proto: "tcp",
		Src: *c.src, Dst: *c.dst, Start: at, End: at.Add(time.Duration(r.IntN(15000)) * time.Millisecond),
		FwdPackets: uint64(r.IntN(1000)), FwdBytes: uint64(r.IntN(1 << 20)), RevPackets: uint64(r.IntN(1000)), RevBytes: uint64(r.IntN(1 << 20)),
		Conns: uint64(1 + r.IntN(20)), Flags: []string{flow.FlagSYN, flow.FlagSYNACK, flow.FlagFIN}, Replied: r.IntN(20) != 0,
		Points: c.points,
	}
	f.Dst.Port = c.dport
	if c.related {
		f.Related = []flow.Related{{ID: flow.MakeID(at, g.n+1<<40), Reason: flow.ReasonClusterIP}}
	}
	if r.IntN(4) == 0 {
		f.Mode = flow.DetailedMode
		f.Src.Port = uint16(32768 + r.IntN(28000))
	}
}

// cpuTime is the process's user+system CPU time: the machine is shared,
// so wall-clock rates understate what 2 free cores do.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAppend measures durable ingest: batches of 10,000 flows, each
// batch fsynced, as the service writes them. Each batch is generated into
// a reused buffer with the timer stopped, and CPU time is counted only
// during Append: what is measured is the store, whose heap holds one
// batch of flows as the service's does (a pool of 200,000 pre-made flows,
// used before 2026-11-25, made every GC cycle scan ≈ 190 MB of pointers
// that a real ingest does not have).
func BenchmarkAppend(b *testing.B) {
	s, err := Open(b.TempDir(), Options{NoSync: os.Getenv("FLOWSTORE_BENCH_NOSYNC") != ""})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	g := newGen(1)
	const batch = 10_000
	buf := make([]flow.Flow, batch)
	start := time.Now().Add(-6 * time.Hour)
	var cpu time.Duration
	runtime.GC()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		b.StopTimer()
		for i := range n {
			g.flow(&buf[i], start.Add(time.Duration(done+i)*5*time.Millisecond))
		}
		b.StartTimer()
		c0 := cpuTime()
		if err := s.Append(buf[:n], nil); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - c0
		done += n
	}
	b.StopTimer()
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/flow")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
	b.ReportMetric(float64(s.Stats().Bytes)/float64(b.N), "disk-B/flow")
}

// BenchmarkSearch10M stores FLOWSTORE_BENCH_FLOWS flows (default 10 M) over
// 24 h, then runs a mix of searches and reports latency percentiles.
// Run with -benchtime=1x: the setup dominates.
func BenchmarkSearch10M(b *testing.B) {
	total := 10_000_000
	if v := os.Getenv("FLOWSTORE_BENCH_FLOWS"); v != "" {
		total, _ = strconv.Atoi(v)
	}
	dir := b.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	g := newGen(2)
	span := 24 * time.Hour
	t1 := time.Now().Truncate(time.Hour)
	t0 := t1.Add(-span)
	step := span / time.Duration(total)
	batch := make([]flow.Flow, 10000)
	var appendTime time.Duration
	for done := 0; done < total; {
		n := min(len(batch), total-done)
		for i := range n {
			g.flow(&batch[i], t0.Add(time.Duration(done+i)*step))
		}
		st := time.Now()
		if err := s.Append(batch[:n], nil); err != nil {
			b.Fatal(err)
		}
		appendTime += time.Since(st)
		done += n
	}
	stats := s.Stats()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.Logf("stored %d flows in %d segments, %.0f MB on disk, heap %.0f MB; append %.0f flows/s",
		stats.Flows, stats.Segments, float64(stats.Bytes)/1e6, float64(ms.HeapAlloc)/1e6, float64(total)/appendTime.Seconds())
	s.Close()
	st := time.Now()
	if s, err = Open(dir, Options{}); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.Logf("reopened in %v", time.Since(st))

	queries := queryMix(b, t0, t1)
	b.ResetTimer()
	var lat, cpus []time.Duration
	for range b.N {
		for _, q := range queries {
			for range 5 {
				st, c0 := time.Now(), cpuTime()
				if _, err := s.Search(q.q); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(st))
				cpus = append(cpus, cpuTime()-c0)
			}
		}
	}
	b.StopTimer()
	for _, q := range queries {
		st, c0 := time.Now(), cpuTime()
		fs, _ := s.Search(q.q)
		b.Logf("%-32s %4d flows  wall %-14v cpu %v", q.name, len(fs), time.Since(st), cpuTime()-c0)
	}
	st = time.Now()
	top, _ := s.Top(queries[len(queries)-1].q, "src.namespace", 10)
	b.Logf("top by src.namespace over all: %v (%d groups)", time.Since(st), len(top))
	slices.Sort(lat)
	slices.Sort(cpus)
	p := func(d []time.Duration, q float64) float64 {
		return float64(d[int(q*float64(len(d)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(p(lat, 0.5), "p50-ms")
	b.ReportMetric(p(lat, 0.99), "p99-ms")
	b.ReportMetric(p(cpus, 0.5), "p50-cpu-ms")
	b.ReportMetric(p(cpus, 0.99), "p99-cpu-ms")
	b.ReportMetric(float64(stats.Flows), "flows")
}

// namedQuery is one query of the search benchmark's mix.
type namedQuery struct {
	name string
	q    flow.Query
}

// queryMix is the search benchmark's query mix over [t0, t1] (the
// equivalence test of cold segments runs it too).
func queryMix(tb testing.TB, t0, t1 time.Time) []namedQuery {
	all := func(f string, limit int) flow.Query {
		q, err := flow.NewQuery(f, t0.UnixNano(), t1.UnixNano(), limit)
		if err != nil {
			tb.Fatal(err)
		}
		return q
	}
	mid := t0.Add(t1.Sub(t0) / 2)
	hour := all("", 1000)
	hour.From, hour.To = mid.UnixNano(), mid.Add(time.Hour).UnixNano()
	return []namedQuery{
		{"namespace", all(`src.namespace = "ns-7"`, 100)},
		{"ns+port", all(`src.namespace = "ns-7" and dst.port = 5432`, 100)},
		{"pod pair (rare, full scan)", all(`src.name = "pod-123" and dst.name = "pod-4567"`, 100)},
		{"label+attr", all(`src.label.app = "app-3" and replied = false and dst.kind = service`, 1000)},
		{"cidr", all(`dst.ip in 203.0.0.0/24 and related exists`, 100)},
		{"egress not replied, full scan", all(`dst.ip in 203.0.7.0/24 and replied = false and src.namespace = ns-3`, 1000)},
		{"src.port (per port value)", all(`src.port = 40000`, 100)},
		{"bytes (per flow, full scan)", all(`fwd.bytes > 1048000 and rev.bytes > 1048000`, 100)},
		{"1 h, no filter", hour},
		{"everything, limit 100", all("", 100)},
	}
}
