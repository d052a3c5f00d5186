package flow

import (
	"fmt"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/inventory"
)

var t0 = time.Date(2025, 11, 25, 10, 0, 0, 0, time.UTC)

// Addresses of the lab used by the reference cases.
const (
	pod1, pod2, pod3 = "10.244.1.10", "10.244.1.11", "10.244.2.20" // pod3 is on node2
	node1, node2     = "172.18.0.2", "172.18.0.3"
	bridge1          = "10.244.1.1"
	svcIP            = "10.96.0.10"
	ext              = "203.0.113.7"
)

type obsMaker struct {
	seq map[string]uint64
}

func (m *obsMaker) obs(mode, node, iface, kind string, tu Tuple, start time.Time, dur time.Duration) Observation {
	if m.seq == nil {
		m.seq = map[string]uint64{}
	}
	agent := "agent-" + node
	m.seq[agent]++
	p := ObservationPoint{Node: node, Interface: iface, Kind: kind}
	if kind == "pod" {
		p.Pod = "default/" + iface
	}
	return Observation{
		Agent: agent, Seq: m.seq[agent], Mode: mode, Point: p, Tuple: tu,
		Start: start, End: start.Add(dur),
		FwdPackets: 10, FwdBytes: 1000, RevPackets: 8, RevBytes: 5000,
		Flags: []string{FlagSYN, FlagSYNACK, FlagFIN}, Conns: 1,
	}
}

func tcp(src string, sport uint16, dst string, dport uint16) Tuple {
	return Tuple{Proto: "tcp", SrcIP: src, SrcPort: sport, DstIP: dst, DstPort: dport}
}

func run(p *Pipeline, obs []Observation, nats []NAT) []Flow {
	for _, n := range nats {
		p.AddNAT(n, t0)
	}
	for i := range obs {
		p.Add(&obs[i], t0)
	}
	return p.Flush(t0, true).Flows
}

func find(t *testing.T, fs []Flow, src, dst string, dport uint16) Flow {
	t.Helper()
	for _, f := range fs {
		if f.Src.IP == src && f.Dst.IP == dst && f.Dst.Port == dport {
			return f
		}
	}
	t.Fatalf("no flow %s → %s:%d in %s", src, dst, dport, dump(fs))
	return Flow{}
}

func dump(fs []Flow) string {
	s := ""
	for _, f := range fs {
		s += fmt.Sprintf("\n  %s %s %s:%d→%s:%d points=%d related=%v", f.ID, f.Proto, f.Src.IP, f.Src.Port, f.Dst.IP, f.Dst.Port, len(f.Points), f.Related)
	}
	return s
}

func wantRelated(t *testing.T, fs []Flow, a, b Flow, reason string) {
	t.Helper()
	has := func(x, y Flow) bool {
		for _, r := range x.Related {
			if r.ID == y.ID && r.Reason == reason {
				return true
			}
		}
		return false
	}
	if !has(a, b) || !has(b, a) {
		t.Fatalf("want %s ↔ %s related by %s:%s", a.ID, b.ID, reason, dump(fs))
	}
}

func forModes(t *testing.T, fn func(t *testing.T, mode string, sport uint16)) {
	t.Run("conversation", func(t *testing.T) { fn(t, ConversationMode, 0) })
	t.Run("detailed", func(t *testing.T) { fn(t, DetailedMode, 47514) })
}

// Reference: intra-node pod→pod seen at both veths is one flow.
func TestIntraNodePodToPod(t *testing.T) {
	forModes(t, func(t *testing.T, mode string, sport uint16) {
		var m obsMaker
		tu := tcp(pod1, sport, pod2, 8080)
		fs := run(NewPipeline(time.Minute, nil), []Observation{
			m.obs(mode, "node1", "veth1", "pod", tu, t0, time.Second),
			m.obs(mode, "node1", "veth2", "pod", tu, t0.Add(time.Millisecond), time.Second),
		}, nil)
		if len(fs) != 1 {
			t.Fatalf("want 1 flow, got %d:%s", len(fs), dump(fs))
		}
		f := fs[0]
		if len(f.Points) != 2 || f.FwdPackets != 10 || f.RevBytes != 5000 || !f.Replied || len(f.Flags) != 3 {
			t.Fatalf("merged flow wrong: %+v", f)
		}
	})
}

// Reference: inter-node pod→pod with direct routing is one flow, however
// many points on both nodes saw it.
func TestInterNodeDirect(t *testing.T) {
	forModes(t, func(t *testing.T, mode string, sport uint16) {
		var m obsMaker
		tu := tcp(pod1, sport, pod3, 8080)
		fs := run(NewPipeline(time.Minute, nil), []Observation{
			m.obs(mode, "node1", "veth1", "pod", tu, t0, time.Second),
			m.obs(mode, "node1", "eth0", "node", tu, t0, time.Second),
			// node2's clock and report window differ a little.
			m.obs(mode, "node2", "eth0", "node", tu, t0.Add(300*time.Millisecond), time.Second),
			m.obs(mode, "node2", "veth3", "pod", tu, t0.Add(300*time.Millisecond), time.Second),
		}, nil)
		if len(fs) != 1 || len(fs[0].Points) != 4 {
			t.Fatalf("want 1 flow seen at 4 points:%s", dump(fs))
		}
	})
}

// Detailed mode keeps one record per second while active, at every point.
func TestDetailedPerSecondRecords(t *testing.T) {
	var m obsMaker
	tu := tcp(pod1, 40000, pod3, 8080)
	var obs []Observation
	for s := 0; s < 3; s++ {
		at := t0.Add(time.Duration(s) * time.Second)
		obs = append(obs,
			m.obs(DetailedMode, "node1", "veth1", "pod", tu, at, 900*time.Millisecond),
			m.obs(DetailedMode, "node2", "veth3", "pod", tu, at.Add(400*time.Millisecond), 900*time.Millisecond))
	}
	fs := run(NewPipeline(time.Minute, nil), obs, nil)
	if len(fs) != 3 {
		t.Fatalf("want 3 per-second flows:%s", dump(fs))
	}
	for _, f := range fs {
		if len(f.Points) != 2 {
			t.Fatalf("each second seen at both nodes:%s", dump(fs))
		}
	}
}

// Reference: VXLAN gives the pod flow plus the UDP node1→node2:4789 flow
// that carried it, related both ways; IPIP likewise with its own reason.
func TestOverlay(t *testing.T) {
	for _, tun := range []struct{ typ, reason string }{{"vxlan", ReasonVXLAN}, {"ipip", ReasonIPIP}} {
		t.Run(tun.typ, func(t *testing.T) {
			forModes(t, func(t *testing.T, mode string, sport uint16) {
				var m obsMaker
				inner := tcp(pod1, sport, pod3, 8080)
				outer := Tuple{Proto: "udp", SrcIP: node1, SrcPort: 51234, DstIP: node2, DstPort: 4789}
				if tun.typ == "ipip" {
					// Reported as a TCP flow node1 → node2 (reference material).
					outer = tcp(node1, sport, node2, 8080)
				}
				if mode == ConversationMode {
					outer.SrcPort = 0
				}
				o1 := m.obs(mode, "node1", "eth0", "node", outer, t0, time.Second)
				o1.Tunnel = &Tunnel{Type: tun.typ, VNI: 1, Inner: []Tuple{inner}}
				o2 := m.obs(mode, "node2", "eth0", "node", outer, t0.Add(100*time.Millisecond), time.Second)
				o2.Tunnel = &Tunnel{Type: tun.typ, VNI: 1, Inner: []Tuple{inner}}
				fs := run(NewPipeline(time.Minute, nil), []Observation{
					m.obs(mode, "node1", "veth1", "pod", inner, t0, time.Second),
					m.obs(mode, "node1", "vxlan0", "node", inner, t0, time.Second),
					o1, o2,
					m.obs(mode, "node2", "vxlan0", "node", inner, t0.Add(100*time.Millisecond), time.Second),
					m.obs(mode, "node2", "veth3", "pod", inner, t0.Add(100*time.Millisecond), time.Second),
				}, nil)
				if len(fs) != 2 {
					t.Fatalf("want pod flow + tunnel flow:%s", dump(fs))
				}
				pf, tf := find(t, fs, pod1, pod3, 8080), find(t, fs, node1, node2, outer.DstPort)
				if len(pf.Points) != 4 || len(tf.Points) != 2 || tf.Tunnel != tun.typ {
					t.Fatalf("points wrong:%s", dump(fs))
				}
				wantRelated(t, fs, pf, tf, tun.reason)
			})
		})
	}
}

// Reference: ClusterIP, intra- and inter-node: pod1→svcIP:port at the
// client's interface and pod1→pod2:targetPort, related.
func TestClusterIP(t *testing.T) {
	for _, dst := range []struct {
		name, ip, node, iface string
	}{{"intra", pod2, "node1", "veth2"}, {"inter", pod3, "node2", "veth3"}} {
		t.Run(dst.name, func(t *testing.T) {
			forModes(t, func(t *testing.T, mode string, sport uint16) {
				var m obsMaker
				pre, post := tcp(pod1, sport, svcIP, 80), tcp(pod1, sport, dst.ip, 8080)
				obs := []Observation{
					m.obs(mode, "node1", "veth1", "pod", pre, t0, time.Second),
					m.obs(mode, dst.node, dst.iface, "pod", post, t0, time.Second),
				}
				if dst.name == "inter" {
					obs = append(obs, m.obs(mode, "node1", "eth0", "node", post, t0, time.Second))
				}
				fs := run(NewPipeline(time.Minute, nil), obs, []NAT{{
					Node: "node1", ConnID: 7,
					Original: tcp(pod1, 47514, svcIP, 80),
					Reply:    tcp(dst.ip, 8080, pod1, 47514),
				}})
				if len(fs) != 2 {
					t.Fatalf("want 2 flows:%s", dump(fs))
				}
				wantRelated(t, fs, find(t, fs, pod1, svcIP, 80), find(t, fs, pod1, dst.ip, 8080), ReasonClusterIP)
			})
		})
	}
}

// Reference: NodePort: ext→nodeIP:nodePort at the node interface and
// nodeIP (SNAT, the bridge address for a local endpoint) → pod:podPort.
func TestNodePort(t *testing.T) {
	forModes(t, func(t *testing.T, mode string, sport uint16) {
		var m obsMaker
		np := max(sport, 40000) // conntrack always has ports
		fs := run(NewPipeline(time.Minute, nil), []Observation{
			m.obs(mode, "node1", "eth0", "node", tcp(ext, sport, node1, 30080), t0, time.Second),
			m.obs(mode, "node1", "veth2", "pod", tcp(bridge1, sport+1, pod2, 8080), t0, time.Second),
		}, []NAT{{
			Node: "node1", ConnID: 9,
			Original: tcp(ext, np, node1, 30080),
			Reply:    tcp(pod2, 8080, bridge1, np+1),
		}})
		wantRelated(t, fs, find(t, fs, ext, node1, 30080), find(t, fs, bridge1, pod2, 8080), ReasonNodePort)
	})
}

// Reference: pod→external: podIP→ext at the pod interface and nodeIP→ext at
// the node interface, related.
func TestEgress(t *testing.T) {
	forModes(t, func(t *testing.T, mode string, sport uint16) {
		var m obsMaker
		fs := run(NewPipeline(time.Minute, nil), []Observation{
			m.obs(mode, "node1", "veth1", "pod", tcp(pod1, sport, ext, 443), t0, time.Second),
			m.obs(mode, "node1", "eth0", "node", tcp(node1, sport, ext, 443), t0, time.Second),
		}, []NAT{{
			Node: "node1", ConnID: 11,
			Original: tcp(pod1, 47514, ext, 443),
			Reply:    tcp(ext, 443, node1, 47514),
		}})
		wantRelated(t, fs, find(t, fs, pod1, ext, 443), find(t, fs, node1, ext, 443), ReasonEgress)
	})
}

// Flows are emitted once their window has closed, not before.
func TestWindow(t *testing.T) {
	var m obsMaker
	p := NewPipeline(30*time.Second, nil)
	a := m.obs(ConversationMode, "node1", "veth1", "pod", tcp(pod1, 0, pod2, 80), t0, 15*time.Second)
	b := m.obs(ConversationMode, "node1", "veth2", "pod", tcp(pod1, 0, pod2, 80), t0.Add(2*time.Second), 15*time.Second)
	p.Add(&a, t0)
	if em := p.Flush(t0.Add(10*time.Second), false); len(em.Flows) != 0 {
		t.Fatalf("emitted before the window closed")
	}
	p.Add(&b, t0.Add(20*time.Second))
	if em := p.Flush(t0.Add(40*time.Second), false); len(em.Flows) != 0 {
		t.Fatalf("a late point must keep the flow open")
	}
	em := p.Flush(t0.Add(50*time.Second), false)
	if len(em.Flows) != 1 || len(em.Flows[0].Points) != 2 || !em.Obs.Has(a.Agent, a.Seq) || !em.Obs.Has(b.Agent, b.Seq) {
		t.Fatalf("want one flow from both records: %+v", em)
	}
	if p.Pending() != 0 {
		t.Fatalf("pending left")
	}
}

// fakeInventory is a Resolver over a list of workloads with lifetimes.
type fakeInventory []*inventory.Workload

func (inv fakeInventory) WorkloadAt(ip string, t time.Time) (*inventory.Workload, bool) {
	for _, w := range inv {
		for _, a := range w.IPs {
			if a == ip && w.Alive(t) {
				return w, true
			}
		}
	}
	return nil, false
}

func (inv fakeInventory) ServiceFor(ip string, port uint16, proto string, t time.Time) (*inventory.Workload, bool) {
	for _, w := range inv {
		if w.Kind != inventory.KindService || !w.Alive(t) {
			continue
		}
		for _, sp := range w.Ports {
			if w.ClusterIP == ip && sp.Port == int32(port) {
				return w, true
			}
		}
		for _, e := range w.Endpoints {
			for _, ep := range e.Ports {
				if e.IP == ip && ep == int32(port) {
					return w, true
				}
			}
		}
	}
	return nil, false
}

func testInventory() fakeInventory {
	deleted := t0.Add(time.Hour)
	return fakeInventory{
		{ID: "c/pod/default/client", Kind: inventory.KindPod, Namespace: "default", Name: "client", IPs: []string{pod1},
			Labels: map[string]string{"app": "client"}, Owner: &inventory.Owner{Kind: "Deployment", Name: "client"}, Node: "node1"},
		// pod2's IP is reused after "old" is deleted.
		{ID: "c/pod/shop/old", Kind: inventory.KindPod, Namespace: "shop", Name: "old", IPs: []string{pod2},
			Labels: map[string]string{"app": "old"}, Created: t0.Add(-time.Hour), Deleted: &deleted},
		{ID: "c/pod/shop/new", Kind: inventory.KindPod, Namespace: "shop", Name: "new", IPs: []string{pod2},
			Labels: map[string]string{"app": "new"}, Created: deleted.Add(time.Second)},
		{ID: "c/service/shop/web", Kind: inventory.KindService, Namespace: "shop", Name: "web", IPs: []string{svcIP},
			ClusterIP: svcIP, Ports: []inventory.ServicePort{{Protocol: "TCP", Port: 80}},
			Endpoints: []inventory.Endpoint{{IP: pod2, Ports: []int32{8080}}}, Created: t0.Add(-time.Hour)},
		{ID: "c/node//node1", Kind: inventory.KindNode, Name: "node1", IPs: []string{node1}},
	}
}

// Enrichment happens at the flow's own time: an IP reused by a new pod
// after the old one was deleted attributes old flows to the old pod.
func TestEnrichmentAtFlowTime(t *testing.T) {
	var m obsMaker
	p := NewPipeline(time.Minute, testInventory())
	before := m.obs(ConversationMode, "node1", "veth1", "pod", tcp(pod1, 0, pod2, 8080), t0, time.Second)
	after := m.obs(ConversationMode, "node1", "veth1", "pod", tcp(pod1, 0, pod2, 8080), t0.Add(2*time.Hour), time.Second)
	fs := run(p, []Observation{before, after}, nil)
	if len(fs) != 2 {
		t.Fatalf("want 2 flows:%s", dump(fs))
	}
	old, cur := fs[0], fs[1]
	if old.Dst.Name != "old" || old.Dst.Labels["app"] != "old" || cur.Dst.Name != "new" {
		t.Fatalf("attributed to the pod of the wrong time: %+v / %+v", old.Dst, cur.Dst)
	}
	if old.Src.Name != "client" || old.Src.Owner.Name != "client" || old.Src.Labels["app"] != "client" || old.Src.Namespace != "default" {
		t.Fatalf("src not enriched: %+v", old.Src)
	}
	if old.Dst.Service != "shop/web" {
		t.Fatalf("service: %q", old.Dst.Service)
	}
}

func TestSplitConjuncts(t *testing.T) {
	for src, want := range map[string][]Level{
		`src.namespace = a and dst.name = "x and y" and replied = true`:     {LevelSrc, LevelDst, LevelAttr},
		`src.namespace = a and dst.port = 80 or replied = true`:             {LevelPairAttr},
		`(src.namespace = a or dst.port = 80) and not src.port = 1`:         {LevelPair, LevelSrcPort},
		`src.port > 1024 or bytes > 10`:                                     {LevelRecord},
		`src.label.app = x and dst.ip in 10.0.0.0/8 and flags contains SYN`: {LevelSrc, LevelDst, LevelAttr},
	} {
		q, err := NewQuery(src, 0, 1, 10)
		if err != nil {
			t.Fatal(err)
		}
		var got []Level
		for _, c := range q.Conjuncts {
			got = append(got, c.Level)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: levels %v, want %v", src, got, want)
		}
	}
}

// A long connection's NAT mapping, reported once, keeps relating its
// flows as long as they keep coming.
func TestNATMappingOutlivesItsTTLWhileUsed(t *testing.T) {
	var m obsMaker
	p := NewPipeline(10*time.Second, nil)
	p.AddNAT(NAT{Node: "node1", Original: tcp(pod1, 40000, svcIP, 80), Reply: tcp(pod2, 8080, pod1, 40000)}, t0)
	var related int
	for s := 0; s < 20; s++ { // 20 × 15 s = 5 min, beyond the 80 s TTL
		at := t0.Add(time.Duration(s) * 15 * time.Second)
		a := m.obs(ConversationMode, "node1", "veth1", "pod", tcp(pod1, 0, svcIP, 80), at, 15*time.Second)
		b := m.obs(ConversationMode, "node1", "veth2", "pod", tcp(pod1, 0, pod2, 8080), at, 15*time.Second)
		p.Add(&a, at)
		p.Add(&b, at)
		for _, f := range p.Flush(at.Add(11*time.Second), false).Flows {
			if len(f.Related) == 1 {
				related++
			}
		}
	}
	if related != 40 {
		t.Fatalf("want every flow related, got %d of 40", related)
	}
}
