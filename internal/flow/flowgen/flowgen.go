// Package flowgen generates a cluster-like stream of flows and the query
// mix the flow store's benchmarks (and the DuckDB comparison in
// bench/duckdb) run over it.
package flowgen

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
)

// Gen makes a cluster-like stream of flows: 5,000 pods in 50 namespaces
// behind 500 services, plus external peers, one flow per conversation (or
// per second) with 2 observation points, some related.
type Gen struct {
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

func New(seed uint64) *Gen {
	g := &Gen{rnd: rand.New(rand.NewPCG(seed, 1))}
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

// Flow fills f with the next flow, starting at at.
func (g *Gen) Flow(f *flow.Flow, at time.Time) {
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

// Query is one query of the search benchmark's mix: a filter over a time
// range, newest first, at most Limit flows.
type Query struct {
	Name     string
	Filter   string
	From, To time.Time
	Limit    int
}

// QueryMix is the search benchmark's query mix over [t0, t1] (the
// equivalence test of cold segments and the DuckDB comparison run it
// too).
func QueryMix(t0, t1 time.Time) []Query {
	all := func(f string, limit int) Query { return Query{Filter: f, From: t0, To: t1, Limit: limit} }
	mid := t0.Add(t1.Sub(t0) / 2)
	hour := all("", 1000)
	hour.From, hour.To = mid, mid.Add(time.Hour)
	named := func(name string, q Query) Query { q.Name = name; return q }
	return []Query{
		named("namespace", all(`src.namespace = "ns-7"`, 100)),
		named("ns+port", all(`src.namespace = "ns-7" and dst.port = 5432`, 100)),
		named("pod pair (rare, full scan)", all(`src.name = "pod-123" and dst.name = "pod-4567"`, 100)),
		named("label+attr", all(`src.label.app = "app-3" and replied = false and dst.kind = service`, 1000)),
		named("cidr", all(`dst.ip in 203.0.0.0/24 and related exists`, 100)),
		named("egress not replied, full scan", all(`dst.ip in 203.0.7.0/24 and replied = false and src.namespace = ns-3`, 1000)),
		named("src.port (per port value)", all(`src.port = 40000`, 100)),
		named("bytes (per flow, full scan)", all(`fwd.bytes > 1048000 and rev.bytes > 1048000`, 100)),
		named("1 h, no filter", hour),
		named("everything, limit 100", all("", 100)),
	}
}
